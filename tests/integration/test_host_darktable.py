"""The darktable script (plugins/darktable/findsimilar.lua) in the real darktable (issue 16,
item 5), headless: Debian's darktable 4.2.1 (Lua API 9.0.0) on a real Xvfb display.

One darktable start serves the module. Photos are indexed by a real daemon; the script is
installed by the real `findsimilar integrate install darktable` into the session's
$XDG_CONFIG_HOME, and darktable loads it from its luarc as it does for a user. A probe
(``--luacmd``, run once the lighttable is up) imports the photos into an in-memory
library, selects a photo and fires the script's shortcut through ``dt.gui.action``, the
way darktable's shortcut machinery does, then reads darktable's own selection. The
"selected image[s]" buttons are plain GtkButtons in 4.2 with no action path
(src/libs/image.c, lua_register_action), so no shortcut reaches them; they are clicked
through the accessibility bus (AT-SPI, as a screen reader or an input tool does), which
makes GTK emit the button's "clicked". The results page: the real
`findsimilar show --notify` runs and hands its page to ``xdg-open``, a recorder here (no
browser is opened). darktable quits through its own "global/quit" action.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ..conftest import shared
from ..raw_files import write_dng
from .daemon_harness import module_daemon
from .hosts import (
    SYSTEM_PYTHON,
    HostSession,
    host_session,
    host_version,
    needs_host,
    tail,
)

FINDSIMILAR = Path(sys.executable).with_name("findsimilar")
# The accessibility bus (Debian at-spi2-core) and its introspection data for Debian's
# Python (gir1.2-atspi-2.0), to click a button.
AT_SPI = "/usr/libexec/at-spi-bus-launcher"
ATSPI_TYPELIB = str(next(Path("/usr/lib").glob("*/girepository-1.0/Atspi-2.0.typelib"),
                         "/usr/lib/girepository-1.0/Atspi-2.0.typelib"))
QUERY, COPY, SMALL = "cat.png", "cat's copy.png", "small cat.jpg"
UNRELATED = ["coffee.png", "butterfly.jpg"]
RAW, RAW_JPEG = "IMG_0042.DNG", "IMG_0042.JPG"
PHOTOS = [QUERY, COPY, SMALL, *UNRELATED, RAW, RAW_JPEG]

# Run by darktable (--luacmd) once the lighttable is up. Each step records what darktable
# shows as "key<TAB>value" lines (a selection: its file names, sorted, joined by "|"); a
# Lua error in a step is recorded, never lost. The file is written, then renamed.
PROBE = r"""
local dt = require "darktable"
local out = {}
local function put(key, value)
  out[#out + 1] = key .. "\t" .. (tostring(value):gsub("[\t\n]", " "))
end
local function selected()
  local names = {}
  for _, image in ipairs(dt.gui.selection()) do names[#names + 1] = image.filename end
  table.sort(names)
  return table.concat(names, "|")
end
-- Wait, yielding to darktable (the shortcut's callback runs on its Lua thread), until
-- CHANGED() holds or SECONDS pass.
local function wait(changed, seconds)
  for _ = 1, seconds * 10 do
    if changed() then return true end
    dt.control.sleep(100)
  end
  return changed()
end
local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local folder = os.getenv("FS_LIBDIR")
local images = {}
-- For STEP: select image NAME, fire the script's shortcut ACTION as darktable does, and wait for
-- DONE() (default: the selection changed).
local function fire(step, name, action, done)
  dt.gui.selection({images[name]})
  put(step .. ".before", selected())
  dt.gui.action("lua/findsimilar: " .. action, 0, "", "", 1.0)
  put(step .. ".done", wait(done or function() return selected() ~= name end, 60))
end

local steps = {
  {"loaded", function()
    put("version", dt.configuration.version)
    put("api", dt.configuration.api_version_string)
    local script = package.loaded["contrib/findsimilar"]
    put("script", type(script))
    put("script.name", type(script) == "table" and script.metadata and script.metadata.name)
    put("script.destroy", type(script) == "table" and type(script.destroy))
    local names = {}
    for key in pairs(debug.getuservalue(dt.gui.libs.image, 1).callbacks) do
      names[#names + 1] = key
    end
    table.sort(names)
    put("buttons", table.concat(names, "|"))
  end},
  {"import", function()
    for name in os.getenv("FS_PHOTOS"):gmatch("[^\n]+") do
      images[name] = dt.database.import(folder .. "/" .. name)
    end
    put("library", #dt.database)
  end},
  {"find", function()
    fire("find", "cat.png", "select similar images")
    put("find", selected())
  end},
  {"raw", function()
    fire("raw", "IMG_0042.DNG", "select similar images")
    put("raw", selected())
    put("rendered", exists(os.getenv("XDG_CACHE_HOME") .. "/findsimilar/darktable/query-"
                           .. images["IMG_0042.DNG"].id .. ".jpg"))
  end},
  {"button", function()
    -- the test clicks the "find similar" button once it sees FS_READY
    if os.getenv("FS_READY") == "" then return put("button", "not clicked") end
    dt.gui.selection({images["small cat.jpg"]})
    local f = assert(io.open(os.getenv("FS_READY"), "w"))
    f:close()
    put("button.done", wait(function() return selected() ~= "small cat.jpg" end, 60))
    put("button", selected())
  end},
  {"show", function()
    fire("show", "cat.png", "open the results page",
         function() return exists(os.getenv("FS_CALLS")) end)
  end},
}
for _, step in ipairs(steps) do
  local ok, err = xpcall(step[2], debug.traceback)
  put(step[1] .. ".error", ok and "" or err)
end
local ready = os.getenv("FS_READY")
if ready ~= "" and not exists(ready) then io.open(ready, "w"):close() end -- no one waits
local result = os.getenv("FS_RESULT")
local f = assert(io.open(result .. ".tmp", "w"))
f:write(table.concat(out, "\n"), "\n")
f:close()
os.rename(result .. ".tmp", result)
dt.gui.action("global/quit", 0, "", "", 1.0)
"""

# Run with Debian's Python (gi, Atspi): prints the labels of darktable's buttons that
# name findsimilar, then clicks the one labelled argv[1] as AT-SPI clients do.
CLICKER = r"""
import sys, time
import gi
gi.require_version("Atspi", "2.0")
from gi.repository import Atspi

def darktable():
    desktop = Atspi.get_desktop(0)
    for _ in range(100):
        for i in range(desktop.get_child_count()):
            app = desktop.get_child_at_index(i)
            if app is not None and (app.get_name() or "").lower() == "darktable":
                return app
        time.sleep(0.1)
    sys.exit("darktable is not on the accessibility bus")

rule = Atspi.MatchRule.new(
    Atspi.StateSet.new([]), Atspi.CollectionMatchType.ALL, {}, Atspi.CollectionMatchType.ALL,
    [Atspi.Role.PUSH_BUTTON], Atspi.CollectionMatchType.ANY, [], Atspi.CollectionMatchType.ALL,
    False)
buttons = Atspi.Collection.get_matches(darktable(), rule, Atspi.CollectionSortOrder.CANONICAL,
                                       0, True)
labels = {b.get_name(): b for b in buttons}
print("\n".join(sorted(n for n in labels if "similar" in n)))
if sys.argv[1] not in labels:
    sys.exit(f"no button {sys.argv[1]!r}")
if not Atspi.Action.do_action(labels[sys.argv[1]], 0):
    sys.exit("the click was refused")
"""


def make_library(folder: Path) -> None:
    """The cat, an exact copy and a resized JPEG of it, two unrelated photos, and a RAW+JPEG
    pair: a DNG with no embedded preview (only its Bayer data shows the picture) beside
    the camera JPEG of the same photo."""
    folder.mkdir()
    cat = shared("skimage/chelsea.png")
    shutil.copyfile(cat, folder / QUERY)
    shutil.copyfile(cat, folder / COPY)
    with Image.open(cat) as im:
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(folder / SMALL,
                                                                         quality=85)
    shutil.copyfile(shared("skimage/coffee.png"), folder / UNRELATED[0])
    shutil.copyfile(shared("opencv/butterfly.jpg"), folder / UNRELATED[1])
    fruits = shared("opencv/fruits.jpg")
    write_dng(folder / RAW, fruits, preview=None)
    with Image.open(fruits) as im:
        im.save(folder / RAW_JPEG, quality=90)


def recorder(folder: Path, name: str, log: Path) -> None:
    """An executable NAME in FOLDER that writes its arguments (one a line) to LOG."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > '{log}.tmp'\n"
                               f"mv '{log}.tmp' '{log}'\n")
    (folder / name).chmod(0o755)


class Run:
    """What one darktable run with the installed script showed."""

    def __init__(self, base: Path, version: str) -> None:
        self.version = version  # what `darktable --version` says
        self.log = base / "darktable.log"
        self.calls = base / "xdg-open.calls"
        self.facts: dict[str, str] = {}
        self.exit_code: int | None = None
        self.installed = ""
        self.luarc = ""
        self.click: subprocess.CompletedProcess[str] | None = None

    def __getitem__(self, key: str) -> str:
        assert key in self.facts, f"{self.version}: the probe recorded no {key!r}:\n" \
                                  f"{self.facts}\n{tail(self.log)}"
        return self.facts[key]

    def ok(self, step: str) -> None:
        assert self[f"{step}.error"] == "", f"{self.version}: {step}: {self[f'{step}.error']}"

    def selection(self, key: str) -> set[str]:
        return set(self[key].split("|")) - {""}

    def where(self) -> str:
        """The darktable that ran (as it names itself outside and inside) and its log."""
        return (f"{self.version} (dt.configuration.version {self.facts.get('version', '?')},"
                f" Lua API {self.facts.get('api', '?')})\n{tail(self.log)}")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    base = tmp_path_factory.mktemp("darktable")
    library = base / "Photos"
    make_library(library)
    version = host_version(["darktable", "--version"])
    result = Run(base, version)
    with module_daemon(base) as daemon, host_session(base) as session:
        summary = daemon.call("index", paths=[str(library)])
        assert summary["new"] == len(PHOTOS) and not summary["failed"], summary
        own = {"FINDSIMILAR_SOCKET": str(daemon.socket_path),
               "FINDSIMILAR_DATA_DIR": str(daemon.data_dir)}
        install = subprocess.run([str(FINDSIMILAR), "integrate", "install", "darktable"],
                                 env=session.env(**own), capture_output=True, text=True,
                                 timeout=60)
        assert install.returncode == 0, install.stderr
        config = session.config_home / "darktable"
        result.installed = (config / "lua/contrib/findsimilar.lua").read_text()
        result.luarc = (config / "luarc").read_text()
        recorder(base / "bin", "xdg-open", result.calls)
        probe = base / "probe.lua"
        probe.write_text(PROBE)
        answer, ready = base / "probe.out", base / "click-now"
        can_click = Path(AT_SPI).exists() and Path(ATSPI_TYPELIB).exists()
        proc = session.launch(
            ["darktable", "--configdir", str(config), "--cachedir", str(base / "dt-cache"),
             "--library", ":memory:",
             # no XMP files beside the photos: the folder stays as the daemon indexed it
             "--conf", "write_sidecar_files=never",
             "-d", "lua",  # Lua errors (a script that fails to load) go to the log
             "--luacmd", 'dofile(os.getenv("FS_PROBE"))'],
            result.log, **own, FS_PROBE=str(probe), FS_RESULT=str(answer),
            FS_LIBDIR=str(library), FS_PHOTOS="\n".join(PHOTOS), FS_CALLS=str(result.calls),
            FS_READY=str(ready) if can_click else "", NO_AT_BRIDGE="0",  # GTK's a11y on
            PATH=f"{base / 'bin'}{os.pathsep}{os.environ['PATH']}")
        try:
            if can_click:
                session.wait_for_file(ready, proc, result.log, timeout=240)
                result.click = subprocess.run(
                    [SYSTEM_PYTHON, "-c", CLICKER, "find similar"], capture_output=True,
                    text=True, timeout=120, env=session.env(NO_AT_BRIDGE="0"))
            text = session.wait_for_file(answer, proc, result.log, timeout=240)
            result.facts = dict(line.split("\t", 1) for line in text.splitlines() if line)
            with contextlib.suppress(subprocess.TimeoutExpired):
                result.exit_code = proc.wait(60)
        finally:
            HostSession.stop(proc)
            print(f"--- {version}: darktable log\n{tail(result.log, 80)}")
        yield result


@needs_host("darktable", package="darktable")
def test_darktable_loads_the_installed_script_from_luarc(run: Run) -> None:
    assert 'require "contrib/findsimilar"' in run.luarc
    assert f"[==[{FINDSIMILAR}]==]" in run.installed  # the placeholder became this CLI
    run.ok("loaded")
    assert run["version"] in run.version, run.where()  # the darktable that was asked
    assert run["script"] == "table", f"the script did not load in {run.where()}"
    assert "LUA ERROR" not in run.log.read_text(errors="replace"), run.where()
    assert (run["script.name"], run["script.destroy"]) == ("findsimilar", "function"), \
        run.where()
    # the two buttons of the "selected image[s]" module, in darktable's own table
    assert run["buttons"] == "findsimilar_find|findsimilar_show", run.where()
    run.ok("import")
    assert run["library"] == str(len(PHOTOS)), run.where()


@needs_host("darktable", package="darktable")
def test_find_similar_shortcut_selects_the_copies_in_the_library_and_nothing_else(
        run: Run) -> None:
    run.ok("find")
    assert run["find.before"] == QUERY
    assert run["find.done"] == "true", \
        f"the shortcut changed nothing in {run.where()}"
    # the query itself is not its own match; the unrelated photos and the pair stay out
    assert run.selection("find") == {COPY, SMALL}, run.where()


@needs_host("darktable", package="darktable")
def test_raw_file_is_rendered_by_darktable_and_both_files_of_its_pair_are_selected(
        run: Run) -> None:
    # The DNG has no preview: the query is darktable's own export of its Bayer data, and
    # it finds the camera JPEG of the same photo (one result: the pair).
    run.ok("raw")
    assert run["raw.before"] == RAW
    assert run["rendered"] == "true", f"darktable rendered no JPEG in {run.where()}"
    assert run.selection("raw") == {RAW, RAW_JPEG}, run.where()


@needs_host("darktable", AT_SPI, ATSPI_TYPELIB, package="darktable at-spi2-core gir1.2-atspi-2.0")
def test_find_similar_button_clicked_in_the_selected_images_module_selects_the_copies(
        run: Run) -> None:
    run.ok("button")
    assert run.click is not None
    assert run.click.returncode == 0, f"{run.click.stdout}{run.click.stderr}\n{run.where()}"
    # GTK shows both buttons; the click went to "find similar"
    assert run.click.stdout.split("\n")[:2] == ["find similar", "findsimilar results page"]
    assert run["button.done"] == "true", f"the click changed nothing in {run.where()}"
    assert run.selection("button") == {QUERY, COPY}, run.where()


@needs_host("darktable", package="darktable")
def test_results_page_shortcut_runs_findsimilar_show_and_opens_the_page(run: Run) -> None:
    run.ok("show")
    assert run["show.done"] == "true", f"no page was opened from {run.where()}"
    [page] = run.calls.read_text().splitlines()
    assert page.endswith("/index.html") and Path(page).is_file(), page
    html = Path(page).read_text()
    assert QUERY in html and COPY.replace("'", "&#x27;") in html, run.where()


@needs_host("darktable", package="darktable")
def test_darktable_quits_by_its_own_action_and_the_script_reported_no_error(run: Run) -> None:
    assert run.exit_code == 0, f"darktable exit code {run.exit_code} in {run.where()}"
    # with -d lua, the script's own failure reports (dt.print_error) are "LUA ERROR" lines
    assert "LUA ERROR" not in run.log.read_text(errors="replace"), run.where()
