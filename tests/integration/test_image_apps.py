"""The darktable and Geeqie integrations (plugins/darktable, plugins/geeqie).

The darktable script runs in a real Lua 5.4 (darktable's Lua) against a fake darktable
API (fake_darktable.lua) and calls the real findsimilar CLI on a real index, so what
is checked is what a user would see: which images end up selected and the toast.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from findsimilar.daemon.indexing.scanner import IMAGE_EXTENSIONS, RAW_EXTENSIONS

from ..conftest import REPO, shared

PLUGINS = REPO / "plugins"
DARKTABLE_SCRIPT = PLUGINS / "darktable" / "findsimilar.lua"
GEEQIE_ENTRY = PLUGINS / "geeqie" / "findsimilar.desktop"
FAKE_DIR = Path(__file__).resolve().parent
PLACEHOLDER = "@FINDSIMILAR@"

LUA = shutil.which("lua5.4")
LUAC = shutil.which("luac5.4")
DESKTOP_FILE_VALIDATE = shutil.which("desktop-file-validate")
FINDSIMILAR = Path(sys.executable).with_name("findsimilar")

needs_lua = pytest.mark.skipif(LUA is None or LUAC is None,
                               reason="Debian `lua5.4` is not installed (apt-get install lua5.4)")
needs_validate = pytest.mark.skipif(
    DESKTOP_FILE_VALIDATE is None,
    reason="`desktop-file-validate` is not installed (apt-get install desktop-file-utils)")


# --- helpers -------------------------------------------------------------------------------

def lua_str(value: str | Path) -> str:
    """A Lua string literal holding exactly these bytes."""
    data = os.fsencode(str(value))
    safe = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 /._-"
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in data) + '"'


def install_script(luadir: Path, command: str) -> Path:
    """Install the script as `findsimilar integrate` does: lua/contrib, placeholder replaced."""
    target = luadir / "contrib" / "findsimilar.lua"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(DARKTABLE_SCRIPT.read_text().replace(PLACEHOLDER, command))
    return target


def run_lua(tmp: Path, luadir: Path, body: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> dict:
    """Run BODY after loading the fake darktable and put the script on darktable's
    package.path; BODY ends with fake.report(...). Returns the report."""
    runner = tmp / "runner.lua"
    runner.write_text(
        f"package.path = {lua_str(FAKE_DIR)} .. '/?.lua;' .. {lua_str(luadir)} .. '/?.lua;'"
        " .. package.path\n"
        'local fake = require "fake_darktable"\n' + body + "\n")
    proc = subprocess.run([LUA, str(runner)], capture_output=True, timeout=timeout, cwd=tmp,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout.decode().splitlines()[-1])


def images_lua(images: dict[str, Path], extra: dict[str, str] | None = None) -> str:
    """Lua lines defining one fake library image per name: `local NAME = fake.image(...)`."""
    lines = []
    for name, path in images.items():
        fields = (extra or {}).get(name, "")
        lines.append(f"local {name} = fake.image({lua_str(path.parent)}, {lua_str(path.name)}"
                     f"{', ' + fields if fields else ''})")
    return "\n".join(lines)


def recorder(path: Path, log: Path, delay: float = 0.0) -> Path:
    """A stand-in findsimilar that writes its arguments (NUL-separated) to LOG."""
    path.write_text(f"#!/bin/sh\nsleep {delay}\nprintf '%s\\0' \"$@\" > '{log}.tmp'\n"
                    f"mv '{log}.tmp' '{log}'\n")
    path.chmod(0o755)
    return path


def wait_for(path: Path, seconds: float = 10) -> bytes:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.05)
    return path.read_bytes()


# --- a real index --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Real photos indexed by the real CLI; some of them make up the darktable library.

    Folder and file names carry spaces, single and double quotes, non-ASCII letters and
    a newline, all of which must survive the shell and the JSON between the two."""
    root = tmp_path_factory.mktemp("image apps") / "Photos 'n' more"
    cat = shared("skimage/chelsea.png")
    files = {
        "query": root / "it's ünïcode" / "cat's photo ü.png",
        "copy": root / "copies" / 'exact "copy".png',
        "small": root / "copies" / "small cat.jpg",
        "newline": root / "copies" / "line\nbreak.png",
        "backup": root / "backup" / "cat backup.png",     # never imported into darktable
        "coffee": root / "coffee.png",
        "butterfly": root / "butterfly.jpg",
        "fruits": root / "fruits.jpg",
    }
    for f in files.values():
        f.parent.mkdir(parents=True, exist_ok=True)
    for name in ("query", "copy", "newline", "backup"):
        shutil.copy(cat, files[name])
    with Image.open(cat) as im:
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(files["small"], quality=85)
    shutil.copy(shared("skimage/coffee.png"), files["coffee"])
    shutil.copy(shared("opencv/butterfly.jpg"), files["butterfly"])
    shutil.copy(shared("opencv/fruits.jpg"), files["fruits"])

    data = root.parent / "data"
    env = {"FINDSIMILAR_DATA_DIR": str(data), "FINDSIMILAR_NO_DAEMON": "1",
           "XDG_CACHE_HOME": str(root.parent / "cache")}
    subprocess.run([str(FINDSIMILAR), "index", "--quiet", str(root)], check=True,
                   env={**os.environ, **env}, capture_output=True, timeout=300)
    return {"files": files, "env": env, "root": root}


def library_lua(files: dict[str, Path], extra: dict[str, str] | None = None) -> str:
    """The fake library: every photo except the backup, plus a darktable duplicate
    (a second version) of the exact copy and a raw file whose JPEG sibling is `small`."""
    in_library = {k: v for k, v in files.items() if k != "backup"}
    raw = files["small"].with_name("IMG_0001.CR2")
    return "\n".join([
        images_lua(in_library, extra),
        f"local copy_v2 = fake.image({lua_str(files['copy'].parent)}, "
        f"{lua_str(files['copy'].name)}, {{duplicate_index = 1}})",
        f"local raw = fake.image({lua_str(raw.parent)}, {lua_str(raw.name)}, "
        f"{{render = {lua_str(files['small'])}}})",
        "fake.set_library({query, copy, small, newline, coffee, butterfly, fruits, copy_v2, raw})",
    ])


# --- darktable -----------------------------------------------------------------------------

@needs_lua
def test_darktable_script_compiles_as_shipped_and_as_installed(tmp_path: Path):
    installed = install_script(tmp_path, "/opt/find similar/bin/findsimilar")
    for script in (DARKTABLE_SCRIPT, installed):
        proc = subprocess.run([LUAC, "-p", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


@needs_lua
def test_find_similar_selects_the_library_copies_and_counts_the_others(
        library: dict, tmp_path: Path):
    files = library["files"]
    install_script(tmp_path, str(FINDSIMILAR))
    report = run_lua(tmp_path, tmp_path, library_lua(files) + """
local script = require "contrib/findsimilar"
fake.press("findsimilar_find", {query})
fake.report()
""", env=library["env"])
    assert report["errors"] == []
    # The exact copy (both darktable versions of it), the resized JPEG and the copy with
    # a newline in its name; not the query itself, not the unrelated photos, and not the
    # backup, which findsimilar knows but darktable does not.
    assert sorted(report["selected"]) == sorted(
        [str(files["copy"]), str(files["copy"]), str(files["small"]), str(files["newline"])])
    assert report["toasts"][-1] == (
        "findsimilar: 3 similar images selected (1 not in the darktable library)")
    assert report["exports"] == []  # PNG and JPEG are read as they are, not rendered


@needs_lua
def test_shortcut_works_on_the_hovered_image_without_film_rolls(library: dict, tmp_path: Path):
    files = library["files"]
    install_script(tmp_path, str(FINDSIMILAR))
    report = run_lua(tmp_path, tmp_path, library_lua(files) + """
fake.remove_films()  -- the script falls back to walking dt.database
local script = require "contrib/findsimilar"
fake.shortcut("findsimilar_find", {small})
fake.report()
""", env=library["env"])
    assert report["errors"] == []
    assert sorted(report["selected"]) == sorted(
        [str(files["query"]), str(files["copy"]), str(files["copy"]), str(files["newline"])])
    assert report["toasts"][-1] == (
        "findsimilar: 3 similar images selected (1 not in the darktable library)")


@needs_lua
def test_search_command_line_carries_the_preferences(library: dict, tmp_path: Path):
    log = tmp_path / "args"
    install_script(tmp_path, str(recorder(tmp_path / "findsimilar", log)))
    report = run_lua(tmp_path, tmp_path, library_lua(library["files"]) + """
fake.prefs["findsimilar/top"] = 7
fake.prefs["findsimilar/min_score"] = 0.85
local script = require "contrib/findsimilar"
fake.press("findsimilar_find", {query})
fake.report()
""")
    assert wait_for(log).split(b"\0")[:-1] == [
        b"search", b"--json", b"-k", b"7", b"--min-score", b"0.8500", b"--",
        os.fsencode(library["files"]["query"])]
    # It printed nothing: an answer that is not one is an error, not "nothing found".
    assert report["toasts"][-1] == "findsimilar: no answer from findsimilar search"


@needs_lua
def test_the_default_minimum_score_is_the_models_own_floor(library: dict, tmp_path: Path):
    # The script cannot know the model, whose scores set the floor (0.60 for v1, lower for
    # gem512): left at its default, the preference asks the CLI for `auto`.
    log = tmp_path / "args"
    install_script(tmp_path, str(recorder(tmp_path / "findsimilar", log)))
    run_lua(tmp_path, tmp_path, library_lua(library["files"]) + """
local script = require "contrib/findsimilar"
fake.press("findsimilar_find", {query})
fake.report()
""")
    assert wait_for(log).split(b"\0")[:-1] == [
        b"search", b"--json", b"-k", b"20", b"--min-score", b"auto", b"--",
        os.fsencode(library["files"]["query"])]


@needs_lua
def test_raw_file_is_rendered_by_darktable_and_its_jpeg_sibling_is_found(
        library: dict, tmp_path: Path):
    files = library["files"]
    install_script(tmp_path, str(FINDSIMILAR))
    report = run_lua(tmp_path, tmp_path, library_lua(files) + """
local script = require "contrib/findsimilar"
fake.press("findsimilar_find", {raw})
fake.report()
""", env=library["env"])
    assert report["errors"] == []
    [export] = report["exports"]
    assert export["image"] == "IMG_0001.CR2"
    assert export["filename"].startswith(library["env"]["XDG_CACHE_HOME"] + "/findsimilar/")
    assert (export["max_width"], export["max_height"]) == (1024, 1024)
    # The rendering is not indexed, so every indexed copy of the cat counts, the JPEG too.
    assert set(report["selected"]) == {str(files[k]) for k in ("query", "copy", "small",
                                                               "newline")}
    assert report["toasts"][-1] == (
        "findsimilar: 4 similar images selected (1 not in the darktable library)")


@needs_lua
def test_cli_error_becomes_a_toast_and_keeps_the_selection(library: dict, tmp_path: Path):
    files = library["files"]
    install_script(tmp_path, str(FINDSIMILAR))
    env = {**library["env"], "FINDSIMILAR_DATA_DIR": str(tmp_path / "empty")}
    report = run_lua(tmp_path, tmp_path, library_lua(files) + """
local script = require "contrib/findsimilar"
fake.dt.gui.selection({coffee})
fake.press("findsimilar_find", {query})
fake.report()
""", env=env)
    message = "findsimilar: the index is empty: run `findsimilar index FOLDER` first"
    assert report["errors"] == [message]
    assert report["toasts"][-1] == message
    assert report["selected"] == [str(files["coffee"])]


@needs_lua
def test_missing_findsimilar_is_reported_with_the_fix(library: dict, tmp_path: Path):
    install_script(tmp_path, "/nowhere/findsimilar")
    report = run_lua(tmp_path, tmp_path, library_lua(library["files"]) + """
local script = require "contrib/findsimilar"
fake.press("findsimilar_find", {query})
fake.report()
""")
    assert len(report["errors"]) == 1
    assert "not found" in report["toasts"][-1]
    assert "findsimilar integrate install darktable" in report["toasts"][-1]
    assert report["selected"] == []


@needs_lua
@pytest.mark.parametrize("install_as", ["path with spaces", "argv prefix"])
def test_results_page_runs_show_in_the_background_with_the_file(
        library: dict, tmp_path: Path, install_as: str):
    log = tmp_path / "args"
    (tmp_path / "my tools").mkdir()
    fake_exe = recorder(tmp_path / "my tools" / "findsimilar", log, delay=1.5)
    command = str(fake_exe) if install_as == "path with spaces" else f"/bin/sh '{fake_exe}'"
    install_script(tmp_path, command)
    started = time.monotonic()
    report = run_lua(tmp_path, tmp_path, library_lua(library["files"]) + """
local script = require "contrib/findsimilar"
fake.press("findsimilar_show", {query})
fake.report()
""")
    assert time.monotonic() - started < 1.4, "darktable waited for the results page"
    assert report["toasts"] == ["findsimilar: opening the results page…"]
    args = wait_for(log).split(b"\0")[:-1]
    assert args == [b"show", b"--notify", b"--", os.fsencode(library["files"]["query"])]


@needs_lua
def test_lua_error_in_a_callback_is_logged_not_raised(tmp_path: Path):
    install_script(tmp_path, "/bin/false")
    report = run_lua(tmp_path, tmp_path, """
local broken = fake.image("/photos", "a.jpg")
fake.set_library({broken})
broken.path = nil   -- darktable would never, but the script must not take darktable down
local script = require "contrib/findsimilar"
fake.press("findsimilar_find", {broken})
fake.report()
""")
    assert report["toasts"] == ["findsimilar: internal error (see darktable's log)"]
    assert "stack traceback" in report["errors"][0]


@needs_lua
def test_nothing_selected_asks_for_an_image(tmp_path: Path):
    install_script(tmp_path, "/bin/false")
    report = run_lua(tmp_path, tmp_path, """
local script = require "contrib/findsimilar"
fake.press("findsimilar_find", {})
fake.shortcut("findsimilar_show", {})
fake.report()
""")
    assert report["toasts"] == ["findsimilar: select an image first"] * 2


@needs_lua
def test_buttons_shortcuts_and_preferences_are_registered_and_destroyed(tmp_path: Path):
    install_script(tmp_path, "/bin/false")
    report = run_lua(tmp_path, tmp_path, """
local script = require "contrib/findsimilar"
local before = {}
for k, v in pairs(fake.actions) do before[#before + 1] = k .. "=" .. v.label end
for k, v in pairs(fake.events) do before[#before + 1] = k end
for k, v in pairs(fake.pref_defaults) do before[#before + 1] = k .. "=" .. tostring(v.default) end
table.sort(before)
script.destroy()
fake.report(before)
""")
    assert report["extra"] == [
        "findsimilar/min_score=0.6", "findsimilar/top=20",
        "findsimilar_find/shortcut", "findsimilar_find=find similar",
        "findsimilar_show/shortcut", "findsimilar_show=findsimilar results page"]
    assert report["actions"] in ([], {}) and report["events"] in ([], {})


@needs_lua
def test_old_darktable_gets_a_message_instead_of_a_broken_script(tmp_path: Path):
    install_script(tmp_path, "/bin/false")
    report = run_lua(tmp_path, tmp_path, """
fake.set_api(6, 0, "6.0.0")
local script = require "contrib/findsimilar"
fake.report()
""")
    assert report["actions"] in ([], {}) and report["events"] in ([], {})
    assert "darktable 3.6 or newer" in report["toasts"][0]
    assert "6.0.0" in report["errors"][0]


JSON_STRINGS = ['plain', 'a "quoted" word', "back\\slash", "new\nline\r\ttab",
                "\x00\x01\x1f control", "ünïcode ß", "emoji 😀 and 𝄞", "/slash/",
                "it's", "\u2028 line separator", ""]


@needs_lua
def test_json_decoder_reads_what_python_writes(tmp_path: Path):
    lines = []
    for s in JSON_STRINGS:
        for ascii_only in (True, False):
            doc = json.dumps({"query": s, "results": [{"path": s, "score": 0.5}]},
                             ensure_ascii=ascii_only)
            lines.append(doc)
    # A non-UTF-8 byte in a path, as Python writes it: a lone surrogate \udcXX.
    lines.append('{"results": [{"path": "caf\\udce9.jpg", "score": 1e-3}]}')
    src = tmp_path / "docs.txt"
    src.write_bytes(b"\n".join(line.encode() for line in lines))
    install_script(tmp_path, "/bin/false")
    report = run_lua(tmp_path, tmp_path, f"""
local json = require("contrib/findsimilar").internals.json
local out = {{}}
for line in io.lines({lua_str(src)}) do
  local doc = assert(json.decode(line))
  local hex = doc.results[1].path:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  out[#out + 1] = hex .. " " .. doc.results[1].score
end
fake.report(out)
""")
    expected = [s.encode().hex() + " 0.5" for s in JSON_STRINGS for _ in (0, 1)]
    assert report["extra"] == expected + [b"caf\xe9.jpg".hex() + " 0.001"]


@needs_lua
def test_json_decoder_parses_values_and_rejects_malformed_text(tmp_path: Path):
    install_script(tmp_path, "/bin/false")
    report = run_lua(tmp_path, tmp_path, r"""
local json = require("contrib/findsimilar").internals.json
local good = json.decode(' {"a": [1, -2.5e2, 0, true, false, null, {}, []], '
                         .. '"b": "\\u00e9\\ud83d\\ude00"} ')
local bad = {}
for _, text in ipairs({'{"a": 1', '{"a" 1}', '"\\x"', '"\\ud83d"x', '[1,]', '01', '{"a": 1} x',
                       '"tab\there"', '"\\u12"', 'nul', '', '-', '1.'}) do
  local value, err = json.decode(text)
  bad[#bad + 1] = (value == nil and type(err) == "string") and "rejected" or "accepted " .. text
end
fake.report({a = good.a[2], n = #good.a, t = good.a[4], null = good.a[6] == json.null,
             b = good.b, bad = bad})
""")
    extra = report["extra"]
    assert (extra["a"], extra["n"], extra["t"], extra["null"]) == (-250.0, 8, True, True)
    assert extra["b"] == "é😀"
    assert extra["bad"] == ["rejected"] * 13


@needs_lua
def test_shell_quote_survives_any_file_name(tmp_path: Path):
    names = ["plain", "with space", "it's", "a'b'c", '"double"', "$HOME `id` \\ ; & |",
             "new\nline", "ünïcode", "-dash", "*?[glob]"]
    src = tmp_path / "names.txt"
    src.write_bytes(b"\0".join(n.encode() for n in names))
    install_script(tmp_path, "/bin/false")
    report = run_lua(tmp_path, tmp_path, f"""
local sq = require("contrib/findsimilar").internals.shell_quote
local run = require("contrib/findsimilar").internals.run
local data = io.open({lua_str(src)}, "rb"):read("a")
local words = {{}}
for name in (data .. "\\0"):gmatch("(.-)\\0") do words[#words + 1] = sq(name) end
local out, err, code = run("printf '%s\\\\0' " .. table.concat(words, " "))
fake.report({{out = out, code = code}})
""")
    assert report["extra"]["code"] == 0
    assert report["extra"]["out"].split("\0")[:-1] == names


def test_darktable_script_reads_the_extensions_findsimilar_indexes():
    text = DARKTABLE_SCRIPT.read_text()
    block = text.split("for ext in ([[", 1)[1].split("]]", 1)[0]
    # raw files are searched as darktable renders them (with the user's edits)
    assert {"." + e for e in block.split()} == set(IMAGE_EXTENSIONS - RAW_EXTENSIONS)


# --- Geeqie --------------------------------------------------------------------------------

def geeqie_entry(command: str) -> configparser.SectionProxy:
    parser = configparser.RawConfigParser(delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read_string(GEEQIE_ENTRY.read_text().replace(PLACEHOLDER, command))
    return parser["Desktop Entry"]


@needs_validate
@pytest.mark.parametrize("command", ["/home/me/.local/bin/findsimilar",
                                     '"/home/me/my apps/findsimilar"'])
def test_geeqie_entry_is_a_valid_desktop_file(tmp_path: Path, command: str):
    entry = tmp_path / "findsimilar.desktop"
    entry.write_text(GEEQIE_ENTRY.read_text().replace(PLACEHOLDER, command))
    proc = subprocess.run([DESKTOP_FILE_VALIDATE, str(entry)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Hints (X-Geeqie is not a main menu category: on purpose) are fine; nothing worse.
    problems = [line for line in (proc.stdout + proc.stderr).splitlines()
                if ": hint: " not in line]
    assert problems == []


def test_geeqie_entry_is_a_geeqie_plugin_for_every_format_findsimilar_reads():
    entry = geeqie_entry("/usr/bin/findsimilar")
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Find similar photos"
    assert entry["Exec"] == "/usr/bin/findsimilar show --notify -- %F"
    assert "X-Geeqie" in entry["Categories"].split(";")
    assert entry["OnlyShowIn"].split(";") == ["X-Geeqie", ""]
    # No menu path: Geeqie 2 puts plugins under Plugins, older ones under Edit.
    assert "X-Geeqie-Menu-Path" not in entry
    assert (entry["Hidden"], entry["NoDisplay"], entry["Terminal"]) == ("false",) * 3
    extensions = set(entry["X-Geeqie-File-Extensions"].split(";"))
    assert extensions == set(IMAGE_EXTENSIONS)
    assert {"image/jpeg", "image/png", "image/heic", "image/avif"} <= set(
        entry["MimeType"].split(";"))


def test_geeqie_command_line_passes_odd_file_names_intact(tmp_path: Path):
    """Geeqie replaces %F with single-quoted paths and runs Exec with /bin/sh -c
    (editors.cc: append_quoted, editor_command_one); do the same with a stand-in."""
    log = tmp_path / "args"
    (tmp_path / "my apps").mkdir()
    exe = recorder(tmp_path / "my apps" / "findsimilar", log)
    files = ["/photos/it's here/ü 1.jpg", "/photos/two words.png", "/p/$x `y`.jpg"]
    quoted = " ".join("'" + f.replace("'", "'\\''") + "'" for f in files)
    exec_line = geeqie_entry(f'"{exe}"')["Exec"].replace("%F", quoted)
    subprocess.run(["/bin/sh", "-c", exec_line], check=True, timeout=30)
    assert wait_for(log).split(b"\0")[:-1] == [b"show", b"--notify", b"--",
                                                *map(str.encode, files)]


@pytest.mark.parametrize("plugin", [DARKTABLE_SCRIPT, GEEQIE_ENTRY], ids=lambda p: p.name)
def test_the_command_placeholder_appears_once_where_the_command_goes(plugin: Path):
    # `findsimilar integrate` replaces every occurrence: one in a comment would be replaced too.
    assert plugin.read_text().count(PLACEHOLDER) == 1
