"""File-manager and image-app integrations: `findsimilar integrate` and the plugins/ files.

Real tools where they exist: `desktop-file-validate` checks the installed desktop entries,
`xmllint` the merged uca.xml, `luac -p` the darktable script; the Nautilus/Caja scripts
run for real under /bin/sh. Only what cannot run here is stood in for: the `gi` modules
of nautilus-python / caja-python (fake modules in sys.modules), and the file managers
themselves (their documented expansion of %F is replayed). Every launch goes to a fake
`findsimilar` (at a path with a space and an accent, as the install-time path) that
records its argv NUL-separated. HOME and the XDG folders point into tmp_path throughout.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from findsimilar.cli.commands.integrate import integrate_group
from findsimilar.cli.install.integration_files import INTEGRATIONS, UCA_ID
from findsimilar.daemon.indexing.scanner import IMAGE_EXTENSIONS
from tests.conftest import own_home

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
DESKTOP_FILE_VALIDATE = shutil.which("desktop-file-validate")
XMLLINT = shutil.which("xmllint")
LUAC = shutil.which("luac")
# Names a file manager must hand over intact: spaces, accents, a newline, quotes, $.
AWKWARD_NAMES = ["holiday photo.jpg", "café été 日本.png", "two\nlines.jpg",
                 "it's \"quoted\" $HOME `x`.webp"]
# Dolphin's service menu is KDE's extension of the desktop entry format: the freedesktop
# validator calls MimeType= and Actions= Application-only, and that is all it may say.
KDE_SERVICE_MENU_ERRORS = {
    'error: key "MimeType" is present in group "Desktop Entry", but the type is "Service" '
    'while this key is only valid for type "Application"',
    'error: key "Actions" is present in group "Desktop Entry", but the type is "Service" '
    'while this key is only valid for type "Application"',
}
USER_UCA = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<actions>\n"
    "<action>\n"
    "\t<icon>utilities-terminal</icon>\n"
    "\t<name>Open Terminal Here</name>\n"
    "\t<submenu></submenu>\n"
    "\t<unique-id>1591191823744178-1</unique-id>\n"
    "\t<command>exo-open --working-directory %f --launch TerminalEmulator</command>\n"
    "\t<description>Example for a custom action</description>\n"
    "\t<range></range>\n"
    "\t<patterns>*</patterns>\n"
    "\t<startup-notify/>\n"
    "\t<directories/>\n"
    "</action>\n"
    "<!-- my own comment -->\n"
    "<action>\n"
    "\t<icon>image-x-generic</icon>\n"
    "\t<name>Résumé &amp; shrink</name>\n"
    "\t<unique-id>1700000000000000-2</unique-id>\n"
    "\t<command>convert %f -resize 50% &quot;%n.small.jpg&quot;</command>\n"
    "\t<description></description>\n"
    "\t<patterns>*.jpg;*.png</patterns>\n"
    "\t<image-files/>\n"
    "</action>\n"
    "</actions>\n").encode()


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME and the XDG folders in tmp_path: never the real home."""
    home = own_home(tmp_path, monkeypatch, data_home=".local/share", xdg_all=True)
    monkeypatch.delenv("FINDSIMILAR_PLUGINS_DIR", raising=False)
    for var in ("NAUTILUS_SCRIPT_SELECTED_FILE_PATHS", "CAJA_SCRIPT_SELECTED_FILE_PATHS",
                "NEMO_SCRIPT_SELECTED_FILE_PATHS"):
        monkeypatch.delenv(var, raising=False)
    return home


def data_home() -> Path:
    return Path(os.environ["XDG_DATA_HOME"])


def config_home() -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"])


class FakeFindsimilar:
    """An executable that records the argv it was started with (NUL-separated)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.path = folder / "find similär"
        self.record = folder / "argv.bin"
        self.path.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\0' \"$@\" > {shlex.quote(str(self.record))}.tmp\n"
            f"mv {shlex.quote(str(self.record))}.tmp {shlex.quote(str(self.record))}\n")
        self.path.chmod(0o755)

    def argv(self, timeout: float = 10.0) -> list[str]:
        """The recorded argv, once the (detached) launch has happened."""
        deadline = time.monotonic() + timeout
        while not self.record.exists():
            if time.monotonic() > deadline:
                pytest.fail(f"findsimilar was not started within {timeout} s")
            time.sleep(0.02)
        raw = self.record.read_bytes()
        self.record.unlink()
        return [os.fsdecode(a) for a in raw.split(b"\0")[:-1]]


@pytest.fixture
def fake(tmp_path: Path) -> FakeFindsimilar:
    return FakeFindsimilar(tmp_path / "opt dir")


@pytest.fixture
def photos(tmp_path: Path) -> list[str]:
    folder = tmp_path / "My Photos"
    folder.mkdir()
    paths = [folder / name for name in AWKWARD_NAMES]
    for path in paths:
        path.write_bytes(b"")
    return [str(p) for p in paths]


def integrate(*args: str, code: int | None = 0) -> Result:
    result = CliRunner().invoke(integrate_group, list(args), catch_exceptions=False)
    if code is not None:
        assert result.exit_code == code, result.output + result.stderr
    return result


def install(fake: FakeFindsimilar, *names: str, code: int | None = 0) -> Result:
    return integrate("install", "--command", str(fake.path), *names, code=code)


def status_json(fake: FakeFindsimilar) -> dict[str, dict[str, object]]:
    result = integrate("status", "--json", "--command", str(fake.path))
    return {r["name"]: r for r in json.loads(result.stdout)}


def show_argv(paths: list[str]) -> list[str]:
    return ["show", "--notify", "--", *paths]


def snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file (and symlink) under ROOTS with its content, and every folder."""
    files = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() or path.is_symlink():
                files[str(path)] = path.read_bytes() if path.is_file() else b"->"
            elif path.is_dir():
                files[str(path)] = b"<folder>"
    return files


# --- desktop entries: Open With, Dolphin, Geeqie, Nemo ----------------------------------

def exec_argv(value: str) -> list[str]:
    """A desktop entry's Exec= as the argv it means, by the spec: undo the key file's
    backslash escape, split at unquoted spaces, and inside double quotes a backslash
    escapes one of " ` $ \\ (Python's shlex would keep the backslash before $ and `)."""
    text = re.sub(r"\\(.)", lambda m: {"s": " ", "n": "\n", "t": "\t"}.get(m[1], m[1]),
                  value)
    words: list[str] = []
    word, quoted, i, started = "", False, 0, False
    while i < len(text):
        c = text[i]
        if quoted and c == "\\" and text[i + 1:i + 2] in ('"', "`", "$", "\\"):
            word, i = word + text[i + 1], i + 2
            continue
        if c == '"':
            quoted, started = not quoted, True
        elif c == " " and not quoted:
            if started:
                words.append(word)
            word, started = "", False
        else:
            word, started = word + c, True
        i += 1
    assert not quoted, f"unbalanced quotes in {value!r}"
    if started:
        words.append(word)
    return [w.replace("%%", "%") for w in words]


def read_entry(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def validate(path: Path) -> list[str]:
    assert DESKTOP_FILE_VALIDATE, "no desktop-file-validate (apt install desktop-file-utils)"
    proc = subprocess.run([DESKTOP_FILE_VALIDATE, str(path)], capture_output=True, text=True)
    return [line.split(": ", 1)[1] for line in (proc.stdout + proc.stderr).splitlines()]


def test_open_with_entry_is_a_valid_desktop_file_that_launches_with_every_selected_photo(
        fake: FakeFindsimilar, photos: list[str]) -> None:
    install(fake, "desktop")
    entry = data_home() / "applications/findsimilar.desktop"
    assert validate(entry) == []  # no errors, no warnings, no hints
    section = read_entry(entry)["Desktop Entry"]
    assert section["Type"] == "Application" and section["Name"] == "Find similar photos"
    assert "image/*" not in section["MimeType"] and "image/heic;" in section["MimeType"]
    argv = exec_argv(section["Exec"])
    assert argv == [str(fake.path), "show", "--notify", "--", "%F"]
    # What a launcher does with %F: one argument per file, no shell in between.
    subprocess.run([*argv[:-1], *photos], check=True)
    assert fake.argv() == show_argv(photos)


MIME_GLOBS = Path("/usr/share/mime/globs2")


def desktop_mime_types(ext: str) -> list[str]:
    """The MIME types the freedesktop shared-mime-info database (what file managers and
    launchers use) gives a file name ending in EXT, heaviest glob first."""
    found = []
    for line in MIME_GLOBS.read_text().splitlines():
        if line.startswith("#"):
            continue
        weight, mime, glob = line.split(":")[:3]
        if glob.lower() == "*" + ext:
            found.append((int(weight), mime))
    return [mime for _, mime in sorted(found, reverse=True)]


@pytest.mark.skipif(not MIME_GLOBS.exists(), reason="no shared-mime-info database")
@pytest.mark.parametrize("entry", ["desktop/findsimilar.desktop", "geeqie/findsimilar.desktop"])
def test_entries_accept_every_format_findsimilar_reads_raw_files_too(entry: str) -> None:
    """A RAW file or a JPEG XL is offered "Find similar photos" like a JPEG is: each
    extension findsimilar indexes has, in the desktop's own MIME database, a type the
    entry lists (extensions the database does not know are Geeqie's by extension)."""
    listed = set(read_entry(PLUGINS / entry)["Desktop Entry"]["MimeType"].split(";"))
    unknown = {ext for ext in IMAGE_EXTENSIONS
               if desktop_mime_types(ext) and not set(desktop_mime_types(ext)) & listed}
    assert unknown == set()
    assert {"image/x-adobe-dng", "image/x-canon-cr2", "image/x-nikon-nef",
            "image/jxl"} <= listed


@pytest.mark.parametrize("command", [
    ["/opt/find similar/bin/findsimilar"],
    ["/home/u/100% \"real\" $HOME `x` back\\slash/findsimilar"],
    ["/usr/bin/python3", "-m", "findsimilar"],
])
def test_exec_lines_quote_any_install_path_so_it_comes_back_as_one_argument(
        command: list[str]) -> None:
    from findsimilar.cli.install.integration_files import render

    expected = [*command, "show", "--notify", "--", "%F"]

    def line(source: str, prefix: str) -> str:
        return next(x for x in render(source, command).splitlines() if x.startswith(prefix))

    for source in ("desktop/findsimilar.desktop", "dolphin/findsimilar.desktop"):
        assert exec_argv(line(source, "Exec=")[5:]) == expected
    # Nemo: the key file value, %% for % (Nemo's own tokens), GLib's shell-style split.
    nemo = line("nemo/findsimilar.nemo_action", "Exec=")[5:].replace("\\\\", "\\")
    assert [w.replace("%%", "%") for w in shlex.split(nemo)] == expected
    # Thunar: XML text, %% for %, then /bin/sh.
    block = render("thunar/findsimilar-action.xml", command)
    thunar = ET.fromstring(block[block.index("<action>"):]).findtext("command", "")
    assert [w.replace("%%", "%") for w in shlex.split(thunar)] == expected
    # The extensions: a Python list.
    python = line("nautilus/findsimilar_nautilus.py", "FINDSIMILAR")
    assert ast.literal_eval(python.split("=", 1)[1].strip()) == command
    # The script: run its `set --` line under /bin/sh.
    script = line("findsimilar-open", "set -- ") + '; printf "%s\\0" "$@"'
    out = subprocess.run(["/bin/sh", "-c", script, "sh", "%F"], capture_output=True,
                         check=True).stdout
    assert os.fsdecode(out).split("\0")[:-1] == expected


def test_dolphin_service_menu_is_executable_and_valid_apart_from_kde_keys(
        fake: FakeFindsimilar, photos: list[str]) -> None:
    install(fake, "dolphin")
    menu = data_home() / "kio/servicemenus/findsimilar.desktop"
    assert os.access(menu, os.X_OK)  # KF6 ignores service menus without the x bit
    assert set(validate(menu)) == KDE_SERVICE_MENU_ERRORS
    entry = read_entry(menu)
    assert entry["Desktop Entry"]["Type"] == "Service"
    assert entry["Desktop Entry"]["MimeType"] == "image/*;"
    assert entry["Desktop Entry"]["Actions"] == "findSimilar;"
    argv = exec_argv(entry["Desktop Action findSimilar"]["Exec"])
    assert argv == [str(fake.path), "show", "--notify", "--", "%F"]


def test_geeqie_plugin_installs_valid_with_the_command_filled_in(
        fake: FakeFindsimilar) -> None:
    if not (PLUGINS / "geeqie/findsimilar.desktop").exists():
        pytest.skip("plugins/geeqie is not in this build")
    install(fake, "geeqie")
    entry = config_home() / "geeqie/applications/findsimilar.desktop"
    assert [m for m in validate(entry) if m.startswith("error")] == []
    argv = exec_argv(read_entry(entry)["Desktop Entry"]["Exec"])
    assert argv[0] == str(fake.path) and argv[-1] == "%F"


def test_geeqie_plugin_where_earlier_releases_put_it_is_cleaned_up_if_ours(
        fake: FakeFindsimilar) -> None:
    """Releases before 0.2 installed the plugin under $XDG_DATA_HOME/geeqie, which
    Geeqie 2 never reads; install and uninstall take that copy away, a user's file stays."""
    install(fake, "geeqie")
    current = config_home() / "geeqie/applications/findsimilar.desktop"
    former = data_home() / "geeqie/applications/findsimilar.desktop"
    former.parent.mkdir(parents=True)
    shutil.copy(current, former)  # what the earlier release wrote: ours, marker and all
    result = install(fake, "geeqie")
    assert f"removed {former} (where an earlier findsimilar put it)" in result.output
    assert not former.exists() and current.exists()
    shutil.copy(current, former)
    integrate("uninstall", "geeqie")
    assert not former.exists() and not current.exists()
    former.write_text("[Desktop Entry]\nName=my own\n")  # not ours: left alone
    install(fake, "geeqie")
    integrate("uninstall", "geeqie")
    assert former.read_text() == "[Desktop Entry]\nName=my own\n"


def test_nemo_action_has_the_keys_nemo_needs_and_its_quoting_keeps_names_intact(
        fake: FakeFindsimilar, photos: list[str]) -> None:
    install(fake, "nemo")
    action = read_entry(data_home() / "nemo/actions/findsimilar.nemo_action")["Nemo Action"]
    assert action["Name"] == "Find similar photos"
    assert action["Selection"].lower() == "notnone"
    assert "image/*" in action["Mimetypes"].split(";")
    assert action["Quote"] == "double"
    # Nemo pastes each path in double quotes (Quote=double) and splits the line with
    # GLib's shell rules (g_spawn_command_line_async): replay that for plain names.
    plain = [p for p in photos if not any(c in p for c in "\"'$`\\")]
    line = action["Exec"].replace("\\\\", "\\").replace(
        "%F", " ".join(f'"{p}"' for p in plain))
    subprocess.run(shlex.split(line), check=True)
    assert fake.argv() == show_argv(plain)


# --- Thunar: uca.xml ------------------------------------------------------------------

def uca() -> Path:
    return config_home() / "Thunar/uca.xml"


def actions(path: Path) -> list[tuple[str, str]]:
    root = ET.parse(path).getroot()
    return [(a.findtext("unique-id", ""), a.findtext("name", "")) for a in root]


def xmllint_ok(path: Path) -> None:
    assert XMLLINT, "xmllint is missing (apt install libxml2-utils)"
    proc = subprocess.run([XMLLINT, "--noout", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_thunar_action_is_merged_after_the_users_actions_which_keep_every_byte(
        fake: FakeFindsimilar) -> None:
    uca().parent.mkdir(parents=True)
    uca().write_bytes(USER_UCA)
    install(fake, "thunar")
    merged = uca().read_bytes()
    xmllint_ok(uca())
    assert actions(uca()) == [("1591191823744178-1", "Open Terminal Here"),
                              ("1700000000000000-2", "Résumé & shrink"),
                              (UCA_ID, "Find similar photos")]
    end = USER_UCA.index(b"</actions>")
    assert merged.startswith(USER_UCA[:end]) and merged.endswith(b"</actions>\n")
    backup = uca().with_name("uca.xml.findsimilar-backup")
    assert backup.read_bytes() == USER_UCA

    install(fake, "thunar")  # again: still one action, file untouched
    assert uca().read_bytes() == merged
    assert [uid for uid, _ in actions(uca())].count(UCA_ID) == 1

    integrate("uninstall", "thunar")
    assert uca().read_bytes() == USER_UCA  # only ours removed, not even a blank line left
    assert backup.read_bytes() == USER_UCA


def test_thunar_command_runs_findsimilar_with_the_selected_files(
        fake: FakeFindsimilar, photos: list[str]) -> None:
    install(fake, "thunar")
    action = ET.parse(uca()).getroot().find("action")
    assert action is not None and action.find("image-files") is not None
    command = action.findtext("command", "")
    # Thunar: %F becomes the shell-quoted paths, %% a %, then /bin/sh -c runs the line.
    line = command.replace("%F", " ".join(shlex.quote(p) for p in photos))
    subprocess.run(["/bin/sh", "-c", line.replace("%%", "%")], check=True)
    assert fake.argv() == show_argv(photos)


def test_unparseable_uca_xml_is_refused_and_left_unchanged(fake: FakeFindsimilar) -> None:
    uca().parent.mkdir(parents=True)
    broken = USER_UCA.replace(b"</action>\n<!--", b"<!--", 1)
    uca().write_bytes(broken)
    result = install(fake, "thunar", code=1)
    assert "not valid XML" in result.stderr and "not changing it" in result.stderr
    assert uca().read_bytes() == broken
    assert not uca().with_name("uca.xml.findsimilar-backup").exists()
    assert "uca.xml unreadable" in integrate("status").output


def test_thunar_without_uca_xml_creates_it_and_uninstall_removes_it_again(
        fake: FakeFindsimilar) -> None:
    install(fake, "thunar")
    xmllint_ok(uca())
    assert actions(uca()) == [(UCA_ID, "Find similar photos")]
    integrate("uninstall", "thunar")
    assert not uca().exists()


# --- Nautilus / Caja extensions (fake gi) -----------------------------------------------

class FakeMenuItem:
    def __init__(self, **props: str) -> None:
        self.props = props
        self.handlers: list[tuple[Callable[..., None], tuple[object, ...]]] = []

    def connect(self, signal: str, handler: Callable[..., None], *data: object) -> None:
        assert signal == "activate"
        self.handlers.append((handler, data))

    def activate(self) -> None:
        for handler, data in self.handlers:
            handler(self, *data)


class FakeFileInfo:
    def __init__(self, path: str | None, mime: str) -> None:
        self.path, self.mime = path, mime

    def get_mime_type(self) -> str:
        return self.mime

    def get_location(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(get_path=lambda: self.path)


@pytest.fixture
def fake_gi(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`gi`, `gi.repository` with Nautilus, Caja and GObject, as the hosts provide them."""
    gi = types.ModuleType("gi")
    gi.require_version = lambda *_args: None  # type: ignore[attr-defined]
    repository = types.ModuleType("gi.repository")
    gobject = types.ModuleType("gi.repository.GObject")
    gobject.GObject = type("GObject", (), {})  # type: ignore[attr-defined]
    repository.GObject = gobject  # type: ignore[attr-defined]
    for host in ("Nautilus", "Caja"):
        module = types.ModuleType(f"gi.repository.{host}")
        module.MenuProvider = type("MenuProvider", (), {})  # type: ignore[attr-defined]
        module.MenuItem = FakeMenuItem  # type: ignore[attr-defined]
        setattr(repository, host, module)
        monkeypatch.setitem(sys.modules, f"gi.repository.{host}", module)
    gi.repository = repository  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gi", gi)
    monkeypatch.setitem(sys.modules, "gi.repository", repository)
    monkeypatch.setitem(sys.modules, "gi.repository.GObject", gobject)
    yield


def load_extension(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"ext_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXTENSIONS = [("nautilus", "nautilus-python/extensions/findsimilar_nautilus.py"),
              ("caja", "caja-python/extensions/findsimilar_caja.py")]


@pytest.mark.parametrize(("name", "installed"), EXTENSIONS)
def test_extension_offers_the_item_only_for_local_images_and_launches_exact_argv(
        fake_gi: None, fake: FakeFindsimilar, photos: list[str], name: str,
        installed: str) -> None:
    install(fake, name)
    menu = load_extension(data_home() / installed).FindSimilarMenu()
    images = [FakeFileInfo(p, "image/jpeg") for p in photos]
    assert menu.get_file_items([FakeFileInfo("/tmp/notes.txt", "text/plain")]) == []
    assert menu.get_file_items([*images, FakeFileInfo("/tmp/a.pdf", "application/pdf")]) == []
    assert menu.get_file_items([FakeFileInfo(None, "image/png")]) == []  # remote: no path
    assert menu.get_file_items([]) == []
    assert len(menu.get_file_items(images)) == 1
    window = object()
    (item,) = menu.get_file_items(window, images)  # the older (window, files) signature
    assert item.props["label"] == "Find similar photos"
    item.activate()
    assert fake.argv() == show_argv(photos)


def test_extension_returns_at_once_while_findsimilar_still_runs(
        fake_gi: None, tmp_path: Path, photos: list[str]) -> None:
    slow = FakeFindsimilar(tmp_path / "slow")
    text = slow.path.read_text().replace("#!/bin/sh\n", "#!/bin/sh\nsleep 3\n")
    slow.path.write_text(text)
    install(slow, "nautilus")
    menu = load_extension(data_home() / EXTENSIONS[0][1]).FindSimilarMenu()
    (item,) = menu.get_file_items(
        [FakeFileInfo(p, "image/png") for p in photos[:1]])
    started = time.monotonic()
    item.activate()
    assert time.monotonic() - started < 1.5  # the file manager is not kept waiting
    assert slow.argv() == show_argv(photos[:1])


# --- Nautilus / Caja scripts ----------------------------------------------------------

SCRIPTS = [("nautilus-script", "NAUTILUS_SCRIPT_SELECTED_FILE_PATHS"),
           ("caja-script", "CAJA_SCRIPT_SELECTED_FILE_PATHS")]


def script_path(name: str) -> Path:
    if name == "nautilus-script":
        return data_home() / "nautilus/scripts/Find similar photos"
    return config_home() / "caja/scripts/Find similar photos"


def run_script(name: str, args: list[str], env: dict[str, str], cwd: Path) -> int:
    base = {"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"]}
    return subprocess.run([str(script_path(name)), *args], env={**base, **env}, cwd=cwd,
                          timeout=30).returncode


@pytest.mark.parametrize(("name", "variable"), SCRIPTS)
def test_script_passes_the_selection_from_the_environment(
        fake: FakeFindsimilar, photos: list[str], tmp_path: Path, name: str,
        variable: str) -> None:
    install(fake, name)
    assert os.access(script_path(name), os.X_OK)
    plain = [p for p in photos if "\n" not in p]  # the variable is newline-separated
    assert run_script(name, [], {variable: "\n".join(plain) + "\n"}, tmp_path) == 0
    assert fake.argv() == show_argv(plain)


@pytest.mark.parametrize(("name", "variable"), SCRIPTS)
def test_script_prefers_arguments_which_keep_newlines_in_names(
        fake: FakeFindsimilar, photos: list[str], name: str, variable: str) -> None:
    install(fake, name)
    folder = Path(photos[0]).parent
    names = [Path(p).name for p in photos]  # relative to the folder, as the file manager runs it
    env = {variable: "\n".join(photos) + "\n"}
    assert run_script(name, names, env, folder) == 0
    assert fake.argv() == show_argv(photos)


def test_script_with_nothing_selected_does_not_launch(
        fake: FakeFindsimilar, tmp_path: Path) -> None:
    install(fake, "nautilus-script")
    assert run_script("nautilus-script", [], {}, tmp_path) == 1
    time.sleep(0.3)
    assert not fake.record.exists()


# --- darktable and Geeqie: templates from the other half of issue 5 ---------------------

@pytest.fixture
def plugin_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of plugins/ without darktable/ and geeqie/, used as the plugin root."""
    root = tmp_path / "plugins"
    shutil.copytree(PLUGINS, root, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(root / "darktable", ignore_errors=True)
    shutil.rmtree(root / "geeqie", ignore_errors=True)
    monkeypatch.setenv("FINDSIMILAR_PLUGINS_DIR", str(root))
    return root


def test_missing_darktable_and_geeqie_files_are_reported_not_fatal(
        plugin_copy: Path, fake: FakeFindsimilar) -> None:
    reports = status_json(fake)
    assert reports["darktable"]["state"] == reports["geeqie"]["state"] == "not available"
    result = install(fake, "darktable", code=1)
    assert "not available in this build" in result.stderr
    result = install(fake, "--all")  # skips them, installs the rest
    assert "darktable: skipped (not available in this build)" in result.output
    assert not (config_home() / "darktable").exists()


def test_darktable_script_is_installed_and_required_once_from_luarc(
        plugin_copy: Path, fake: FakeFindsimilar) -> None:
    (plugin_copy / "darktable").mkdir()
    (plugin_copy / "darktable/findsimilar.lua").write_text(
        'local FINDSIMILAR = [==[@FINDSIMILAR@]==]\nprint(FINDSIMILAR)\n')
    luarc = config_home() / "darktable/luarc"
    luarc.parent.mkdir(parents=True)
    user_luarc = 'require "tools/script_manager"\n-- mine'  # no final newline
    luarc.write_text(user_luarc)

    install(fake, "darktable")
    install(fake, "darktable")
    script = config_home() / "darktable/lua/contrib/findsimilar.lua"
    assert f"[==[{fake.path}]==]" in script.read_text()
    if LUAC:
        subprocess.run([LUAC, "-p", str(script)], check=True)
    lines = luarc.read_text().splitlines()
    assert lines == ['require "tools/script_manager"', "-- mine", 'require "contrib/findsimilar"']
    assert status_json(fake)["darktable"]["state"] == "installed"

    integrate("uninstall", "darktable")
    assert not script.exists()
    assert luarc.read_text() == user_luarc + "\n"  # only our line is gone


def test_real_darktable_script_installs_and_parses(fake: FakeFindsimilar) -> None:
    if not (PLUGINS / "darktable/findsimilar.lua").exists():
        pytest.skip("plugins/darktable is not in this build")
    install(fake, "darktable")
    script = config_home() / "darktable/lua/contrib/findsimilar.lua"
    assert f"[==[{fake.path}]==]" in script.read_text()
    if LUAC:
        subprocess.run([LUAC, "-p", str(script)], check=True)


# --- the whole command -----------------------------------------------------------------

def test_install_all_status_uninstall_all_leaves_the_folders_as_they_were(
        fake: FakeFindsimilar, home: Path) -> None:
    """Files and folders: those install created are gone again, those it found stay."""
    uca().parent.mkdir(parents=True)
    uca().write_bytes(USER_UCA)
    mine = data_home() / "nemo/actions/findsimilar.nemo_action"  # someone else's file
    mine.parent.mkdir(parents=True)
    mine.write_text("[Nemo Action]\nName=My own action\n")
    before = snapshot(home)

    result = install(fake, "--all", code=1)  # nemo could not be installed
    assert f"{mine} exists and was not written by findsimilar" in result.stderr
    assert mine.read_text() == "[Nemo Action]\nName=My own action\n"
    reports = status_json(fake)
    assert set(reports) == set(INTEGRATIONS)
    assert reports["nemo"]["state"] == "not ours"
    available = {n for n, r in reports.items() if r["available"]} - {"nemo"}
    assert {n for n, r in reports.items() if r["state"] == "installed"} == available
    assert all(isinstance(r["app_present"], bool) for r in reports.values())

    result = integrate("uninstall", "--all", code=1)  # nemo: not ours, left alone
    assert "not written by findsimilar; left alone" in result.stderr
    after = snapshot(home)
    backup = str(uca().with_name("uca.xml.findsimilar-backup"))
    assert after.pop(backup) == USER_UCA
    assert after == before


def test_uninstall_keeps_created_folders_that_hold_anything_else_or_were_made_again(
        fake: FakeFindsimilar, home: Path) -> None:
    (home / ".local/share/applications").mkdir(parents=True)  # there before: ours to keep
    install(fake, "nemo", "geeqie", "desktop", "dolphin")
    nemo = data_home() / "nemo/actions"
    (nemo / "mine.nemo_action").write_text("[Nemo Action]\n")  # the user's, beside ours
    geeqie = config_home() / "geeqie/applications"
    # Made again by the user (or an app): not the folder install made. (The old one is
    # moved aside, not deleted, so the new one cannot get its inode number back.)
    geeqie.rename(geeqie.with_name("applications.old"))
    geeqie.mkdir()

    result = integrate("uninstall", "nemo", "geeqie", "desktop")
    assert sorted(p.name for p in nemo.iterdir()) == ["mine.nemo_action"]
    assert geeqie.is_dir() and (data_home() / "applications").is_dir()
    assert f"removed the empty folder {geeqie}" not in result.stdout
    assert (data_home() / "kio/servicemenus/findsimilar.desktop").exists()  # still installed

    result = integrate("uninstall", "dolphin")
    assert f"removed the empty folder {data_home() / 'kio'}\n" in result.stdout
    assert not (data_home() / "kio").exists()
    integrate("uninstall", "--all")
    assert nemo.is_dir() and geeqie.is_dir() and (data_home() / "applications").is_dir()


def test_status_tells_edited_and_outdated_files_apart(fake: FakeFindsimilar,
                                                      tmp_path: Path) -> None:
    install(fake, "nemo", "dolphin")
    other = FakeFindsimilar(tmp_path / "elsewhere")
    install(other, "dolphin")  # a findsimilar at another path wrote this one
    action = data_home() / "nemo/actions/findsimilar.nemo_action"
    action.write_text(action.read_text().replace("Selection=notnone", "Selection=s"))
    reports = status_json(fake)
    assert reports["nemo"]["state"] == "modified by user"
    assert reports["dolphin"]["state"] == "outdated"  # status compares with this findsimilar
    assert reports["thunar"]["state"] == "not installed"
    integrate("uninstall", "nemo")  # still ours (marker line kept): removed
    assert not action.exists()


def test_every_integrate_command_is_documented() -> None:
    for name, command in {"integrate": integrate_group, **integrate_group.commands}.items():
        assert command.help and "Example" in command.help, name
    for name in integrate_group.commands:
        assert integrate(name, "--help").exit_code == 0


def test_a_name_or_all_is_required() -> None:
    assert integrate("install", code=2).exit_code == 2
    assert integrate("uninstall", "--all", "nemo", code=2).exit_code == 2
    assert integrate("install", "konqueror", code=2).exit_code == 2
