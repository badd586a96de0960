"""The Nautilus and Caja extensions inside the real file managers, headless (issue 16, item 5).

Each host runs once per module in a :class:`~tests.integration.hosts.HostSession` (Xvfb,
a private D-Bus session bus, a private HOME), its window open on real photos (one of
them named with a quote, spaces and non-ASCII), a text file and a subfolder. The
extension is installed the way a user installs it (``findsimilar integrate install
nautilus`` / ``caja``, as a subprocess), with ``--command`` naming a recorder (at a path
with a space and an accent) that stands in for findsimilar and writes down its argv: the
command the host runs is the one install wrote.

The host's own Python extension loader (nautilus-python, caja-python) loads our extension
and, beside it, the probe ``host_probes/probe_nautilus_caja.py``: once the host has read
the folder (the files' MIME types are known), the probe takes the host's FileInfo objects
(``NautilusVFSFile`` / ``CajaVFSFile``), asks the extension the host loaded for its menu
items (with the host's own window, for Caja) and activates them. In Caja (GTK 3, a menu
bar) the probe then goes through the host's own UI: Edit > Select All in a window on a
folder of two photos, after which Caja itself calls the extension with its selection and
lists our item, and the Scripts menu lists the installed script; both are clicked.

Not proved: a right-click menu a person opens (no pointer headless); in Nautilus 43
(GTK 4, no menu bar) the probe makes the call the host makes then, and for its Scripts
menu only that Nautilus itself made the folder the script is installed in.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import copy_photos
from tests.integration.hosts import HostSession, host_session, host_version, needs_host, tail

PROBE = Path(__file__).parent / "host_probes" / "probe_nautilus_caja.py"
LABEL = "Find similar photos"
HARD_NAME = "it's a \"café\" 日本.jpg"  # a quote, spaces, non-ASCII
LIB = "/usr/lib/x86_64-linux-gnu"
Record = Callable[[str, object], None]  # pytest's record_property
NEEDS_NAUTILUS = needs_host("nautilus", f"{LIB}/nautilus/extensions-4/libnautilus-python.so",
                            package="nautilus python3-nautilus")
NEEDS_CAJA = needs_host("caja", f"{LIB}/caja/extensions-2.0/libcaja-python.so",
                        package="caja python3-caja")


@dataclass(frozen=True)
class HostSpec:
    name: str
    argv: list[str]  # the folder to show is appended
    debug_env: str  # the loader's debug variable (its log names every extension loaded)
    python_package: str
    script_folder: str  # where the host reads its Scripts menu, relative to HOME
    # Caja: a window on a folder of only photos (and one on the others), and its own
    # Edit > Select All and menu bar are used; Nautilus 43 (GTK 4) shows one folder.
    use_menus: bool = False

    def extension_folder(self, session: HostSession) -> Path:
        return session.data_home / f"{self.name}-python" / "extensions"


NAUTILUS = HostSpec("nautilus", ["nautilus", "--new-window"], "NAUTILUS_PYTHON_DEBUG",
                    "python3-nautilus", ".local/share/nautilus/scripts")
# Caja would also draw the desktop (as root too, headless); --no-desktop keeps it a
# file manager with its windows.
CAJA = HostSpec("caja", ["caja", "--no-desktop"], "CAJA_PYTHON_DEBUG", "python3-caja",
                ".config/caja/scripts", use_menus=True)


@dataclass
class HostRun:
    """What one host run showed: the probe's JSON, the recorded launches, the host."""

    spec: HostSpec
    version: str
    files: dict[str, str]  # role -> path
    result: dict[str, object]
    launches: list[list[str]]
    recorder: Path
    installed: Path
    alive: bool
    zombies: list[str]
    script_folder_made_by_host: bool
    script: Path
    log: Path


class Recorder:
    """An executable standing in for findsimilar: each start writes "script" when a
    file manager's script started it (else nothing), "$0" and its argv, NUL-separated,
    to a file of its own (written then renamed)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.path = folder / "find similär"
        self.folder = folder
        q = shlex.quote(str(folder))
        self.path.write_text("#!/bin/sh\n"
                             "via=${CAJA_SCRIPT_SELECTED_FILE_PATHS+script}\n"
                             f"printf '%s\\0' \"$via\" \"$0\" \"$@\" > {q}/launch.$$.tmp\n"
                             f"mv {q}/launch.$$.tmp {q}/launch.$$.argv\n")
        self.path.chmod(0o755)

    def launches(self, count: int, log: Path, timeout: float = 60.0) -> list[list[str]]:
        """The argvs of the first COUNT starts, once that many have happened."""
        deadline = time.monotonic() + timeout
        while len(found := sorted(self.folder.glob("launch.*.argv"))) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(found)} of {count} findsimilar launches within {timeout} s:"
                            f"\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        return [[os.fsdecode(a) for a in f.read_bytes().split(b"\0")[:-1]] for f in found]


def files_as_a_set(launch: list[str]) -> list[str]:
    """LAUNCH with the files after ``--`` sorted: a host passes its selection in its own
    order (Caja: by name)."""
    cut = launch.index("--") + 1 if "--" in launch else len(launch)
    return launch[:cut] + sorted(launch[cut:])


def integrate_install(session: HostSession, recorder: Path, *names: str) -> None:
    """``findsimilar integrate install NAMES --command RECORDER`` on the session's HOME."""
    proc = subprocess.run([sys.executable, "-m", "findsimilar", "integrate", "install",
                           "--command", str(recorder), *names], env=session.env(),
                          cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def make_files(photos: Path, others: Path) -> dict[str, str]:
    """Two photos in PHOTOS; a text file and a subfolder in OTHERS (which may be PHOTOS)."""
    photo, second = copy_photos(photos, ["opencv/butterfly.jpg", "skimage/coffee.png"])
    hard = photo.rename(photos / HARD_NAME)
    others.mkdir(exist_ok=True)
    (others / "notes.txt").write_text("not a photo\n")
    (others / "album").mkdir()
    return {"photo": str(hard), "second": str(second), "text": str(others / "notes.txt"),
            "folder": str(others / "album")}


def zombie_children(pid: int) -> list[str]:
    """The host's children that exited and were never reaped (``Z`` in /proc)."""
    zombies = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            zombies.append(stat.read_text().split(")")[0] + ")")
    return zombies


def package_version(package: str) -> str:
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return "?"
    proc = subprocess.run([dpkg, "-W", "-f", "${Version}", package], capture_output=True,
                          text=True, check=False)
    return proc.stdout.strip() or "?"


def run_host(spec: HostSpec, base: Path) -> HostRun:
    """Starts SPEC's host once with the extension and the probe; returns what it showed."""
    with host_session(base) as session:
        folders = [base / "photos", base / "others"] if spec.use_menus else [base / "photos"]
        files = make_files(folders[0], folders[-1])
        recorder = Recorder(base / "opt dir")
        script_folder = session.home / spec.script_folder
        # Caja's menus show the script; for Nautilus, the host makes the folder itself.
        integrate_install(session, recorder.path, spec.name,
                          *([f"{spec.name}-script"] if spec.use_menus else []))
        installed = spec.extension_folder(session) / f"findsimilar_{spec.name}.py"
        shutil.copy(PROBE, spec.extension_folder(session) / f"probe_{spec.name}.py")
        out, log = base / "probe.json", base / f"{spec.name}.log"
        cases = {"one photo": [files["photo"]], "two photos": [files["photo"], files["second"]],
                 "photo and text": [files["photo"], files["text"]],
                 "folder": [files["folder"]]}
        menu = {"window_title": "photos", "label": LABEL,
                "action": "FindSimilar::find_similar_photos"}
        (base / "cases.json").write_text(json.dumps({
            "out": str(out), "extension": f"findsimilar_{spec.name}", "cases": cases,
            "activate": ["one photo", "two photos"], **({"menu": menu} if spec.use_menus else {})}))
        assert spec.use_menus or not script_folder.exists()
        proc = session.launch([*spec.argv, *map(str, folders)], log,
                              FINDSIMILAR_PROBE_HOST=spec.name,
                              FINDSIMILAR_PROBE_CASES=str(base / "cases.json"),
                              GTK_A11Y="none",  # GTK 4's NO_AT_BRIDGE: no a11y bus
                              **{spec.debug_env: "misc"})
        result = json.loads(session.wait_for_file(out, proc, log, timeout=120))
        alive, zombies = proc.poll() is None, zombie_children(proc.pid)
        clicked = result.get("menu", {}).get("clicked", [])  # type: ignore[attr-defined]
        launches = recorder.launches(len(result.get("activated", [])) + len(clicked), log)
        made_by_host = script_folder.is_dir()
        if not spec.use_menus:  # the Scripts fallback goes where the host keeps scripts
            integrate_install(session, recorder.path, f"{spec.name}-script")
        version = (f"{host_version([spec.argv[0], '--version'], session.env())}, "
                   f"{spec.python_package} {package_version(spec.python_package)}")
        HostSession.stop(proc)
        return HostRun(spec, version, files, result, launches, recorder.path, installed,
                       alive, zombies, made_by_host, script_folder / "Find similar photos", log)


@pytest.fixture(scope="module")
def nautilus(tmp_path_factory: pytest.TempPathFactory) -> HostRun:
    return run_host(NAUTILUS, tmp_path_factory.mktemp("nautilus"))


@pytest.fixture(scope="module")
def caja(tmp_path_factory: pytest.TempPathFactory) -> HostRun:
    return run_host(CAJA, tmp_path_factory.mktemp("caja"))


# --- the checks, the same for both hosts -----------------------------------------------

def case(run: HostRun, name: str) -> dict[str, object]:
    assert run.result["error"] is None, f"{run.result['error']}\n{tail(run.log)}"
    return run.result["cases"][name]  # type: ignore[index]


def check_item_for_photos(run: HostRun, record: Record) -> None:
    record("host_version", run.version)
    print(f"exercised {run.version}")
    assert run.result["extension_file"] == str(run.installed)
    vfs_file = f"{run.spec.name.capitalize()}VFSFile"
    for name, mimes in (("one photo", ["image/jpeg"]), ("two photos", ["image/jpeg", "image/png"])):
        seen = case(run, name)
        assert seen["file_info_types"] == [vfs_file] * len(mimes)
        assert seen["mime_types"] == mimes
        assert [(i["label"], i["type"]) for i in seen["items"]] == [(LABEL, "MenuItem")], name


def check_no_item_for_others(run: HostRun, record: Record) -> None:
    record("host_version", run.version)
    # The host had read these files (real MIME types), so "no item" is the extension's say.
    mixed, folder = case(run, "photo and text"), case(run, "folder")
    assert mixed["mime_types"] == ["image/jpeg", "text/plain"]
    assert folder["mime_types"] == ["inode/directory"]
    assert mixed["items"] == [] and folder["items"] == []


def show_notify(run: HostRun, *paths: str, via: str = "") -> list[str]:
    return [via, str(run.recorder), "show", "--notify", "--", *paths]


def check_item_runs_show_notify(run: HostRun, record: Record) -> None:
    record("host_version", run.version)
    assert run.result["activated"] == ["one photo", "two photos"]
    photo, second = run.files["photo"], run.files["second"]
    expected = [show_notify(run, photo), show_notify(run, photo, second)]
    if run.spec.use_menus:  # and once more from Caja's own menu item
        expected.append(show_notify(run, photo, second))
    assert sorted(files_as_a_set(launch) for launch in run.launches if launch[0] == "") == \
        sorted(map(files_as_a_set, expected))
    # findsimilar runs detached: the host is still up and keeps no zombie child behind.
    assert run.alive and run.zombies == []


# --- Nautilus ----------------------------------------------------------------------------

@NEEDS_NAUTILUS
def test_nautilus_offers_the_item_for_one_or_two_photos(nautilus: HostRun,
                                                        record_property: Record) -> None:
    check_item_for_photos(nautilus, record_property)


@NEEDS_NAUTILUS
def test_nautilus_offers_nothing_for_a_photo_with_a_text_file_or_a_folder(
        nautilus: HostRun, record_property: Record) -> None:
    check_no_item_for_others(nautilus, record_property)


@NEEDS_NAUTILUS
def test_nautilus_item_runs_findsimilar_show_notify_with_the_exact_paths(
        nautilus: HostRun, record_property: Record) -> None:
    check_item_runs_show_notify(nautilus, record_property)


@NEEDS_NAUTILUS
def test_nautilus_script_is_installed_in_the_folder_nautilus_made_for_scripts(
        nautilus: HostRun, record_property: Record) -> None:
    record_property("host_version", nautilus.version)
    assert nautilus.script_folder_made_by_host, f"Nautilus made no {NAUTILUS.script_folder}"
    assert nautilus.script.is_file() and os.access(nautilus.script, os.X_OK)
    assert str(nautilus.recorder) in nautilus.script.read_text()


# --- Caja --------------------------------------------------------------------------------

@NEEDS_CAJA
def test_caja_offers_the_item_for_one_or_two_photos(caja: HostRun,
                                                    record_property: Record) -> None:
    check_item_for_photos(caja, record_property)
    assert caja.result["window"] == "CajaNavigationWindow"  # Caja's own window was passed


@NEEDS_CAJA
def test_caja_offers_nothing_for_a_photo_with_a_text_file_or_a_folder(
        caja: HostRun, record_property: Record) -> None:
    check_no_item_for_others(caja, record_property)


@NEEDS_CAJA
def test_caja_item_runs_findsimilar_show_notify_with_the_exact_paths(
        caja: HostRun, record_property: Record) -> None:
    check_item_runs_show_notify(caja, record_property)


@NEEDS_CAJA
def test_caja_menu_bar_shows_the_item_for_selected_photos_and_it_runs_show_notify(
        caja: HostRun, record_property: Record) -> None:
    """Caja itself, after Edit > Select All on a folder of two photos, asks the extension
    for its items and puts ours in its menu bar; clicking it runs findsimilar."""
    record_property("host_version", caja.version)
    menu_error = caja.result["menu"]["error"]  # type: ignore[index]
    assert menu_error is None, f"{menu_error}\n{tail(caja.log)}"
    clicked = caja.result["menu"]["clicked"]  # type: ignore[index]
    ours = [c for c in clicked if c["action"] == "FindSimilar::find_similar_photos"]
    assert ours == [{"action": "FindSimilar::find_similar_photos", "label": LABEL,
                     "sensitive": True}]
    two = files_as_a_set(show_notify(caja, caja.files["photo"], caja.files["second"]))
    launched = [files_as_a_set(launch) for launch in caja.launches]
    assert [launch for launch in launched if launch == two] == [two, two]  # menu + direct


@NEEDS_CAJA
def test_caja_scripts_menu_lists_the_script_and_it_runs_show_notify_for_the_selection(
        caja: HostRun, record_property: Record) -> None:
    record_property("host_version", caja.version)
    menu_error = caja.result["menu"]["error"]  # type: ignore[index]
    assert menu_error is None, f"{menu_error}\n{tail(caja.log)}"
    assert caja.script.is_file()
    scripts = [c for c in caja.result["menu"]["clicked"]  # type: ignore[index]
               if c["action"] != "FindSimilar::find_similar_photos"]
    assert [(c["label"], c["sensitive"]) for c in scripts] == [(LABEL, True)], scripts
    assert [files_as_a_set(launch) for launch in caja.launches if launch[0] == "script"] == [
        files_as_a_set(show_notify(caja, caja.files["photo"], caja.files["second"],
                                   via="script"))]
