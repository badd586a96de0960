"""The integrations' templates: where each file goes and how the @FINDSIMILAR@
placeholder is filled for each file type (the marker line and the writing are the one
installer's, :mod:`.installer`)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from findsimilar import config
from findsimilar.cli.install.installer import PLACEHOLDER

__all__ = ["INTEGRATIONS", "LUARC_CREATED", "LUARC_LINE", "UCA_CREATED",
           "UCA_ID", "Integration", "IntegrationError", "Target", "available", "config_home",
           "data_home", "luarc_path", "plugin_root", "render", "uca_path"]

UCA_ID = "findsimilar-find-similar-photos"
LUARC_LINE = 'require "contrib/findsimilar"'
# What uca.xml / luarc hold when this command created them; uninstall deletes them again
# only if that is all that is left (Thunar rewriting the file drops the comment).
UCA_CREATED = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                b"<!-- Created by `findsimilar integrate install thunar` -->\n<actions>\n")
LUARC_CREATED = "-- Created by `findsimilar integrate install darktable`\n"


class IntegrationError(Exception):
    """One integration could not be installed or removed; the others go on."""


# --- where things are -----------------------------------------------------------------

def data_home() -> Path:
    return config.data_home()


def config_home() -> Path:
    return config.config_home()


def plugin_root() -> Path:
    """Returns the folder of integration templates: ``$FINDSIMILAR_PLUGINS_DIR``, else
    the packaged ``findsimilar.plugins``."""
    override = config.setting("plugins_dir")
    if override:
        return Path(override)
    import importlib.resources

    return Path(str(importlib.resources.files("findsimilar.plugins")))


@dataclass(frozen=True)
class Target:
    """One template and where it goes."""

    source: str  # relative to plugin_root()
    dest: Callable[[], Path]
    executable: bool = False


@dataclass(frozen=True)
class Integration:
    name: str
    title: str
    apps: tuple[str, ...]  # executables whose presence means the program is installed
    files: tuple[Target, ...] = ()
    hint: str = ""  # what to do after installing
    extra: str = ""  # "thunar" (uca.xml), "luarc" (darktable), "desktop-db", "man"
    libs: tuple[str, ...] = ()  # globs of a needed host plugin library
    # Where earlier findsimilar releases put a file the host never read there: install
    # and uninstall remove such a file if it is ours (it carries the marker line).
    former: tuple[Callable[[], Path], ...] = ()


_SCRIPT = "findsimilar-open"
INTEGRATIONS: dict[str, Integration] = {i.name: i for i in (
    Integration("nautilus", "Nautilus (nautilus-python extension)", ("nautilus",), (
        Target("nautilus/findsimilar_nautilus.py",
               lambda: data_home() / "nautilus-python/extensions/findsimilar_nautilus.py"),),
        hint="restart Nautilus to load it: nautilus -q",
        libs=("/usr/lib*/nautilus/extensions-*/libnautilus-python.so",
              "/usr/lib/*/nautilus/extensions-*/libnautilus-python.so")),
    Integration("nautilus-script", "Nautilus (Scripts menu)", ("nautilus",), (
        Target(_SCRIPT, lambda: data_home() / "nautilus/scripts/Find similar photos", True),),
        hint="right-click > Scripts > Find similar photos"),
    Integration("dolphin", "Dolphin (KIO service menu)", ("dolphin",), (
        Target("dolphin/findsimilar.desktop",
               lambda: data_home() / "kio/servicemenus/findsimilar.desktop", True),)),
    Integration("thunar", "Thunar (custom action in uca.xml)", ("thunar", "Thunar"),
                hint="restart Thunar to load it: thunar -q", extra="thunar"),
    Integration("nemo", "Nemo (action)", ("nemo",), (
        Target("nemo/findsimilar.nemo_action",
               lambda: data_home() / "nemo/actions/findsimilar.nemo_action"),)),
    Integration("caja", "Caja (caja-python extension)", ("caja",), (
        Target("caja/findsimilar_caja.py",
               lambda: data_home() / "caja-python/extensions/findsimilar_caja.py"),),
        hint="restart Caja to load it: caja -q",
        libs=("/usr/lib*/caja/extensions-*/libcaja-python.so",
              "/usr/lib/*/caja/extensions-*/libcaja-python.so")),
    Integration("caja-script", "Caja (Scripts menu)", ("caja",), (
        Target(_SCRIPT, lambda: config_home() / "caja/scripts/Find similar photos", True),),
        hint="right-click > Scripts > Find similar photos"),
    Integration("desktop", "Open With (desktop entry for image viewers)", (), (
        Target("desktop/findsimilar.desktop",
               lambda: data_home() / "applications/findsimilar.desktop"),),
        hint="image apps list it under Open With", extra="desktop-db"),
    Integration("darktable", "darktable (Lua script)", ("darktable",), (
        Target("darktable/findsimilar.lua",
               lambda: config_home() / "darktable/lua/contrib/findsimilar.lua"),),
        hint="restart darktable; the buttons are in the 'selected images' module",
        extra="luarc"),
    Integration("geeqie", "Geeqie (plugin)", ("geeqie",), (
        # Geeqie's own plugin folder is in its config dir (editors.cc reads
        # $XDG_CONFIG_HOME/geeqie/applications, never $XDG_DATA_HOME/geeqie).
        Target("geeqie/findsimilar.desktop",
               lambda: config_home() / "geeqie/applications/findsimilar.desktop"),),
        former=(lambda: data_home() / "geeqie/applications/findsimilar.desktop",),
        hint="Geeqie lists it under Plugins"),
    Integration("man", "Man pages (man findsimilar)", ("man",), extra="man",
                hint="man finds them when ~/.local/bin is on PATH; else add "
                     "$XDG_DATA_HOME/man (~/.local/share/man) to MANPATH"),
)}


def uca_path() -> Path:
    return config_home() / "Thunar/uca.xml"


def luarc_path() -> Path:
    return config_home() / "darktable/luarc"


def available(integration: Integration) -> bool:
    """Whether this build ships the integration's templates (man pages are written from
    the commands: always)."""
    if integration.extra == "man":
        return True
    root = plugin_root()
    sources = [t.source for t in integration.files] or ["thunar/findsimilar-action.xml"]
    return all((root / s).is_file() for s in sources)


# --- rendering templates --------------------------------------------------------------

def _desktop_exec(command: list[str]) -> str:
    """COMMAND as the start of a desktop entry's Exec= value (spec: quoting, then the
    key file's own backslash escape; a literal % is %%)."""
    words = []
    for word in command:
        word = word.replace("%", "%%")
        if re.search(r"""[\s"'\\><~|&;$*?#()`]""", word):
            word = '"' + re.sub(r'(["`$\\])', r"\\\1", word) + '"'
        words.append(word.replace("\\", "\\\\"))
    return " ".join(words)


def _keyfile_shell(command: list[str]) -> str:
    """COMMAND for Nemo's Exec=: a key file value (backslash doubled) that Nemo splits
    with GLib's shell rules after expanding its %-tokens (a literal % is %%: a lone one
    ends Nemo's expansion, so %F would reach the command as it is)."""
    return shlex.join(command).replace("\\", "\\\\").replace("%", "%%")


def _python_list(command: list[str]) -> str:
    return ", ".join(repr(word) for word in command)


def _lua_long_string(command: list[str]) -> str:
    """What the darktable script expects in its ``[==[...]==]``: the executable's path,
    or an argv prefix already quoted for /bin/sh."""
    text = command[0] if len(command) == 1 else shlex.join(command)
    if "]==]" in text or "\n" in text:
        raise IntegrationError(f"cannot write this command into a Lua string: {text!r}")
    return text


def render(source: str, command: list[str]) -> str:
    """Returns template SOURCE with the placeholder replaced by COMMAND, quoted for the
    file's language. Raises ``IntegrationError`` if the template cannot be read."""
    try:
        text = (plugin_root() / source).read_text(encoding="utf-8")
    except OSError as exc:
        raise IntegrationError(f"template missing: {exc}") from None
    if source.endswith(".py"):
        return text.replace(f'"{PLACEHOLDER}"', _python_list(command))
    if source.endswith(".lua"):
        return text.replace(PLACEHOLDER, _lua_long_string(command))
    if source.endswith(".xml"):
        from xml.sax.saxutils import escape

        # Thunar pastes %F as shell-quoted paths and runs the line with /bin/sh -c.
        return text.replace(PLACEHOLDER, escape(shlex.join(command).replace("%", "%%")))
    if source.endswith(".nemo_action"):
        return text.replace(PLACEHOLDER, _keyfile_shell(command))
    if source.endswith(".desktop"):
        return text.replace(PLACEHOLDER, _desktop_exec(command))
    return text.replace(PLACEHOLDER, shlex.join(command))  # a shell script
