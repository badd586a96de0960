"""``findsimilar integrate``: "Find similar photos" in file managers and image apps.

The files in ``plugins/`` (package data ``findsimilar.plugins``) are templates: ``install``
copies them to where each program looks, with ``@FINDSIMILAR@`` replaced by the absolute
command of the running findsimilar (quoted for the file's language), and a first line
"Installed by findsimilar ... checksum ..." so that ``uninstall`` only ever removes files
this command wrote and ``status`` can tell a file the user edited. Thunar has no folder
of actions, so our action is spliced into ``uca.xml`` as text: the user's own actions
keep every byte. Stdlib and click only: this stays a light command.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

import click

from .service import daemon_command

__all__ = ["INTEGRATIONS", "IntegrationError", "MARKER", "PLACEHOLDER", "UCA_ID",
           "install", "integrate_group", "plugin_root", "status", "uninstall"]

PLACEHOLDER = "@FINDSIMILAR@"
MARKER = "Installed by findsimilar"
UCA_ID = "findsimilar-find-similar-photos"
LUARC_LINE = 'require "contrib/findsimilar"'
_MARKER_RE = re.compile(r"^(#|--) Installed by findsimilar .*checksum ([0-9a-f]{8})\)")
# What uca.xml / luarc hold when this command created them; uninstall deletes them again
# only if that is all that is left (Thunar rewriting the file drops the comment).
_UCA_CREATED = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                b"<!-- Created by `findsimilar integrate install thunar` -->\n<actions>\n")
_LUARC_CREATED = "-- Created by `findsimilar integrate install darktable`\n"


class IntegrationError(Exception):
    """One integration could not be installed or removed; the others go on."""


# --- where things are -----------------------------------------------------------------

def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var, "")
    return Path(value) if os.path.isabs(value) else Path.home() / fallback


def data_home() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share")


def config_home() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def plugin_root() -> Path:
    """Returns the folder of integration templates: ``$FINDSIMILAR_PLUGINS_DIR``, else
    the packaged ``findsimilar.plugins``."""
    override = os.environ.get("FINDSIMILAR_PLUGINS_DIR")
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
    extra: str = ""  # "thunar" (uca.xml), "luarc" (darktable), "desktop-db"
    libs: tuple[str, ...] = ()  # globs of a needed host plugin library


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
        Target("geeqie/findsimilar.desktop",
               lambda: data_home() / "geeqie/applications/findsimilar.desktop"),),
        hint="Geeqie lists it under Plugins"),
)}


def uca_path() -> Path:
    return config_home() / "Thunar/uca.xml"


def luarc_path() -> Path:
    return config_home() / "darktable/luarc"


def available(integration: Integration) -> bool:
    """Whether this build ships the integration's templates."""
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
    """COMMAND for a key file value that GLib splits with shell rules (Nemo's Exec=)."""
    return shlex.join(command).replace("\\", "\\\\")


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


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode('utf-8', 'surrogateescape')):08x}"


def with_marker(name: str, source: str, body: str) -> str:
    """BODY with the marker line first (after a ``#!`` line)."""
    comment = "--" if source.endswith(".lua") else "#"
    line = (f"{comment} {MARKER} (`findsimilar integrate install {name}`, checksum "
            f"{_checksum(body)}); `findsimilar integrate uninstall {name}` removes it.\n")
    if body.startswith("#!"):
        first, _, rest = body.partition("\n")
        return f"{first}\n{line}{rest}"
    return line + body


def _split_marker(text: str) -> tuple[str | None, str]:
    """Returns (checksum in the marker line or None, the text without that line)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines[:2]):
        match = _MARKER_RE.match(line)
        if match:
            return match.group(2), "".join(lines[:i] + lines[i + 1:])
    return None, text


# --- one installed file ---------------------------------------------------------------

def file_state(path: Path, expected: str | None) -> str:
    """Returns "missing", "foreign" (no marker: not ours), "modified" (ours, edited since),
    "outdated" (ours, but this findsimilar would write something else) or "installed"."""
    if not path.exists() and not path.is_symlink():
        return "missing"
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return "foreign"
    checksum, body = _split_marker(text)
    if checksum is None:
        return "foreign"
    if checksum != _checksum(body):
        return "modified"
    return "installed" if expected is None or body == expected else "outdated"


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Writes DATA to PATH through a temp file, fsync and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- Thunar: our <action> inside uca.xml ----------------------------------------------

@dataclass
class _Uca:
    """What the splice needs to know about a parsed uca.xml (byte offsets)."""

    root_end: int = -1  # where `</actions>` starts (or `<actions/>` itself)
    ours: list[tuple[int, int]] = field(default_factory=list)  # our <action>...</action>s
    command: str = ""  # our (last) action's <command>


def parse_uca(data: bytes) -> _Uca:
    """Locates our action in uca.xml DATA. Raises ``IntegrationError`` if it is not
    well-formed XML with an <actions> root."""
    parser = expat.ParserCreate()
    found, path, action_start, texts = _Uca(), [], 0, {}

    def start(tag: str, _attrs: dict[str, str]) -> None:
        nonlocal action_start
        if not path and tag != "actions":
            raise IntegrationError(f"the root element is <{tag}>, not <actions>")
        path.append(tag)
        if len(path) == 2 and tag == "action":
            action_start = parser.CurrentByteIndex
            texts.clear()

    def end(tag: str) -> None:
        index = parser.CurrentByteIndex
        if len(path) == 2 and tag == "action" and texts.get("unique-id", "").strip() == UCA_ID:
            found.ours.append((action_start, data.index(b">", index) + 1))
            found.command = texts.get("command", "")
        elif len(path) == 1:
            found.root_end = index
        path.pop()

    def chars(text: str) -> None:
        if len(path) == 3:
            texts[path[2]] = texts.get(path[2], "") + text

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise IntegrationError(f"it is not valid XML ({exc})") from None
    return found


def _uca_block(command: list[str]) -> bytes:
    text = render("thunar/findsimilar-action.xml", command)
    start = re.search(r"^<action>", text, re.MULTILINE)
    if start is None:
        raise IntegrationError("the Thunar action template has no <action> line")
    block = text[start.start():].rstrip() + "\n"
    # Character references keep it valid whatever encoding the file declares.
    return block.encode("ascii", "xmlcharrefreplace")


def _read_uca(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IntegrationError(f"cannot read {path}: {exc}") from None


def install_thunar(command: list[str]) -> str:
    path = uca_path()
    data = _read_uca(path)
    block = _uca_block(command)
    if data is None:
        write_atomic(path, _UCA_CREATED + block + b"</actions>\n")
        return f"created {path} with the action"
    try:
        uca = parse_uca(data)
    except IntegrationError as exc:
        raise IntegrationError(f"{path}: {exc}; not changing it") from None
    if uca.ours:
        (start, end), *copies = uca.ours
        new = data[:start] + block.rstrip(b"\n") + _without(data[end:], copies, end)
    elif data[uca.root_end:uca.root_end + 2] == b"</":
        lead = b"" if data[:uca.root_end].endswith(b"\n") else b"\n"
        new = data[:uca.root_end] + lead + block + data[uca.root_end:]
    else:  # <actions/>
        close = data.index(b">", uca.root_end) + 1
        new = data[:uca.root_end] + b"<actions>\n" + block + b"</actions>" + data[close:]
    if new == data:
        return f"the action in {path} is up to date"
    parse_uca(new)  # never write what we could not read back
    backup = path.with_name(path.name + ".findsimilar-backup")
    if not backup.exists() and not data.startswith(_UCA_CREATED):
        shutil.copy2(path, backup)  # the user's own file, as it was before we touched it
    write_atomic(path, new, path.stat().st_mode & 0o777)
    kept = f" (your original: {backup})" if backup.exists() else ""
    return f"{'updated' if uca.ours else 'added'} the action in {path}{kept}"


def _without(data: bytes, spans: list[tuple[int, int]], offset: int = 0) -> bytes:
    """DATA without SPANS (byte ranges shifted by OFFSET), each with its whole line when
    nothing else is on it, so no blank line is left behind."""
    for start, end in sorted(spans, reverse=True):
        start, end = start - offset, end - offset
        line_start = data.rfind(b"\n", 0, start) + 1
        if not data[line_start:start].strip() and data[end:end + 1] == b"\n":
            start, end = line_start, end + 1
        data = data[:start] + data[end:]
    return data


def uninstall_thunar() -> str:
    path = uca_path()
    data = _read_uca(path)
    if data is None:
        return f"nothing to remove: no {path}"
    try:
        uca = parse_uca(data)
    except IntegrationError as exc:
        raise IntegrationError(f"{path}: {exc}; not changing it") from None
    if not uca.ours:
        return f"nothing to remove: no findsimilar action in {path}"
    new = _without(data, uca.ours)
    if new == _UCA_CREATED + b"</actions>\n":
        path.unlink()
        return f"removed {path} (findsimilar had created it)"
    parse_uca(new)
    write_atomic(path, new, path.stat().st_mode & 0o777)
    return f"removed the action from {path}"


def thunar_state(command: list[str]) -> str:
    data = _read_uca(uca_path())
    if data is None:
        return "missing"
    try:
        uca = parse_uca(data)
    except IntegrationError:
        return "unreadable"
    if not uca.ours:
        return "missing"
    expected = parse_uca(b"<actions>" + _uca_block(command) + b"</actions>").command
    return "installed" if uca.command.strip() == expected.strip() else "outdated"


# --- darktable: the require line in luarc ---------------------------------------------

def _luarc_lines() -> list[str]:
    try:
        return luarc_path().read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return []


def add_luarc_line() -> str:
    path, lines = luarc_path(), _luarc_lines()
    if any(line.strip() == LUARC_LINE for line in lines):
        return f"{path} already loads the script"
    if not path.exists():
        lines = [_LUARC_CREATED]
    elif lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    write_atomic(path, "".join([*lines, LUARC_LINE + "\n"]).encode("utf-8"))
    return f"added `{LUARC_LINE}` to {path}"


def remove_luarc_line() -> str | None:
    path, lines = luarc_path(), _luarc_lines()
    kept = [line for line in lines if line.strip() != LUARC_LINE]
    if kept == lines:
        return None
    if kept in ([], [_LUARC_CREATED]):
        path.unlink()
        return f"removed {path} (findsimilar had created it)"
    write_atomic(path, "".join(kept).encode("utf-8"), path.stat().st_mode & 0o777)
    return f"removed `{LUARC_LINE}` from {path}"


# --- the desktop entry: refresh the MIME cache ----------------------------------------

def update_desktop_database(folder: Path) -> None:
    """Runs ``update-desktop-database`` on FOLDER if it is installed, so "Open With"
    lists the entry at once; drops a cache left with no entries (none is equivalent)."""
    exe = shutil.which("update-desktop-database")
    if exe is None or not folder.is_dir():
        return
    try:
        subprocess.run([exe, "-q", str(folder)], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return
    cache = folder / "mimeinfo.cache"
    try:
        if cache.read_text(encoding="utf-8", errors="replace").strip() == "[MIME Cache]":
            cache.unlink()
    except OSError:
        pass


# --- install / uninstall / status -----------------------------------------------------

def install(integration: Integration, command: list[str]) -> list[str]:
    """Installs INTEGRATION to run COMMAND. Returns what it did, one line per step.

    Raises ``IntegrationError`` (and writes nothing) when a file of the same name that
    findsimilar did not write is in the way, or a template is missing.
    """
    if not available(integration):
        raise IntegrationError("not available in this build (its files are not shipped)")
    if integration.extra == "thunar":
        return [install_thunar(command)]
    planned = [(t, t.dest(), render(t.source, command)) for t in integration.files]
    for _target, dest, _body in planned:
        if file_state(dest, None) == "foreign":
            raise IntegrationError(f"{dest} exists and was not written by findsimilar (no "
                                   f"'{MARKER}' line); leaving it alone")
    done = []
    for target, dest, body in planned:
        edited = file_state(dest, None) == "modified"
        text = with_marker(integration.name, target.source, body)
        write_atomic(dest, text.encode("utf-8", "surrogateescape"),
                     0o755 if target.executable else 0o644)
        done.append(f"wrote {dest}" + (" (replacing your edits to it)" if edited else ""))
    if integration.extra == "luarc":
        done.append(add_luarc_line())
    elif integration.extra == "desktop-db":
        update_desktop_database(planned[0][1].parent)
    return done


def uninstall(integration: Integration) -> list[str]:
    """Removes what ``install`` wrote for INTEGRATION. Returns what it did.

    Files without the marker line are not ours: they stay, and ``IntegrationError``
    says so after the rest is removed.
    """
    if integration.extra == "thunar":
        return [uninstall_thunar()]
    done, foreign = [], []
    for target in integration.files:
        dest = target.dest()
        state = file_state(dest, None)
        if state == "foreign":
            foreign.append(str(dest))
        elif state != "missing":
            dest.unlink()
            done.append(f"removed {dest}")
    if integration.extra == "luarc" and not foreign:
        done.extend(filter(None, [remove_luarc_line()]))
    elif integration.extra == "desktop-db" and done:
        update_desktop_database(integration.files[0].dest().parent)
    if foreign:
        raise IntegrationError(f"{', '.join(foreign)}: not written by findsimilar; "
                               f"left alone. {' '.join(done)}".strip())
    return done or ["nothing to remove"]


def status(integration: Integration, command: list[str]) -> dict[str, object]:
    """Returns the integration's state: "installed", "not installed", "outdated",
    "modified by user", "not ours" (someone else's file is in the way), "partly
    installed", "not available" or "uca.xml unreadable"; its paths; whether the program
    (and the plugin library it needs) is present."""
    ok = available(integration)
    if integration.extra == "thunar":
        states, paths = [thunar_state(command) if ok else "missing"], [str(uca_path())]
    else:
        states, paths = [], []
        for target in integration.files:
            expected = _expected(target, command) if ok else None
            states.append(file_state(target.dest(), expected))
            paths.append(str(target.dest()))
        if integration.extra == "luarc":
            loaded = any(line.strip() == LUARC_LINE for line in _luarc_lines())
            states.append("installed" if loaded else "missing")
            paths.append(str(luarc_path()))
    app = next((shutil.which(a) for a in integration.apps if shutil.which(a)), None)
    report: dict[str, object] = {
        "name": integration.name, "title": integration.title, "available": ok,
        "state": _overall(states, ok), "paths": paths,
        "app": app if integration.apps else None, "app_present": bool(app) or not integration.apps}
    if integration.libs:
        import glob

        report["plugin_library_present"] = any(glob.glob(g) for g in integration.libs)
    return report


def _expected(target: Target, command: list[str]) -> str | None:
    try:
        return render(target.source, command)
    except IntegrationError:
        return None


def _overall(states: list[str], available_here: bool) -> str:
    if "unreadable" in states:
        return "uca.xml unreadable"
    if "foreign" in states:
        return "not ours"
    if all(s == "missing" for s in states):
        return "not installed" if available_here else "not available"
    if "missing" in states:
        return "partly installed"
    if "modified" in states:
        return "modified by user"
    return "outdated" if "outdated" in states else "installed"


# --- commands --------------------------------------------------------------------------

def _chosen(names: tuple[str, ...], everything: bool) -> list[Integration]:
    if everything == bool(names):
        raise click.UsageError("name the integrations, or use --all (not both)")
    return list(INTEGRATIONS.values()) if everything else [INTEGRATIONS[n] for n in names]


_NAMES = click.argument("names", nargs=-1, type=click.Choice(list(INTEGRATIONS)),
                        metavar="[NAME]...")
_ALL = click.option("--all", "everything", is_flag=True, help="Every integration.")
_COMMAND = click.option("--command", "command_path", type=click.Path(dir_okay=False),
                        help="The findsimilar executable the menus run (default: this one).")


def _command(command_path: str | None) -> list[str]:
    return [os.path.abspath(command_path)] if command_path else daemon_command()


@click.group("integrate")
def integrate_group() -> None:
    """Add "Find similar photos" to file managers and image apps.

    Each integration runs `findsimilar show --notify -- FILE...` for the selected
    photos. Names: nautilus, nautilus-script, dolphin, thunar, nemo, caja,
    caja-script, desktop (Open With in image viewers), darktable, geeqie.

    \b
    Examples:
      findsimilar integrate status
      findsimilar integrate install nautilus desktop
      findsimilar integrate install --all
      findsimilar integrate uninstall --all
    """


@integrate_group.command("install")
@_NAMES
@_ALL
@_COMMAND
def install_cmd(names: tuple[str, ...], everything: bool, command_path: str | None) -> None:
    """Install integrations (files under $XDG_DATA_HOME and $XDG_CONFIG_HOME).

    The menus run this findsimilar by its absolute path (file managers do not see
    your virtualenv), so re-run this after moving or reinstalling it. Re-running
    rewrites the same files. A file of the same name that findsimilar did not write
    is left alone (and reported); --all skips what this build does not ship.

    \b
    Examples:
      findsimilar integrate install nautilus thunar
      findsimilar integrate install --all
    """
    command = _command(command_path)
    failed = 0
    for integration in _chosen(names, everything):
        if everything and not available(integration):
            click.echo(f"{integration.name}: skipped (not available in this build)")
            continue
        try:
            for line in install(integration, command):
                click.echo(f"{integration.name}: {line}")
        except (IntegrationError, OSError) as exc:
            failed += 1
            click.echo(f"findsimilar: {integration.name}: not installed: {exc}", err=True)
            continue
        if integration.hint:
            click.echo(f"{integration.name}: {integration.hint}")
    sys.exit(1 if failed else 0)


@integrate_group.command("uninstall")
@_NAMES
@_ALL
def uninstall_cmd(names: tuple[str, ...], everything: bool) -> None:
    """Remove what `integrate install` wrote; files it did not write stay.

    \b
    Examples:
      findsimilar integrate uninstall thunar
      findsimilar integrate uninstall --all
    """
    failed = 0
    for integration in _chosen(names, everything):
        try:
            for line in uninstall(integration):
                click.echo(f"{integration.name}: {line}")
        except (IntegrationError, OSError) as exc:
            failed += 1
            click.echo(f"findsimilar: {integration.name}: {exc}", err=True)
    sys.exit(1 if failed else 0)


@integrate_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="As JSON, one object per integration.")
@_COMMAND
def status_cmd(as_json: bool, command_path: str | None) -> None:
    """Show each integration: installed or not, and whether its program is present.

    "outdated" means install would now write something else (a newer template, or
    this findsimilar lives elsewhere): re-run install. "modified by user" means the
    file was edited after install wrote it.

    \b
    Examples:
      findsimilar integrate status
      findsimilar integrate status --json | jq '.[] | select(.app_present)'
    """
    reports = [status(i, _command(command_path)) for i in INTEGRATIONS.values()]
    if as_json:
        click.echo(json.dumps(reports, ensure_ascii=False))
        return
    for r in reports:
        app = ("" if r["app"] is None and r["app_present"] else
               f", {r['app']}" if r["app"] else ", program not found")
        if r.get("plugin_library_present") is False:
            app += " (plugin library not found)"
        click.echo(f"{r['name']:<16}{r['state']}{app}")
        if r["state"] != "not installed" and r["state"] != "not available":
            for p in r["paths"]:  # type: ignore[attr-defined]
                click.echo(f"{'':16}{p}")
