"""The Nautilus and Caja extensions inside the real file managers, headless (issue 16, item 5).

Each host runs once per module in a :class:`~tests.integration.hosts.HostSession` (Xvfb,
a private D-Bus session bus, a private HOME), its window open on a folder of real photos,
a text file and a subfolder. The extension is installed the way a user installs it
(``findsimilar integrate install nautilus`` / ``caja``, as a subprocess), with
``--command`` naming a recorder (at a path with a space and an accent) that stands in for
findsimilar and writes down its argv: the command the host runs is the one install wrote.

The host's own Python extension loader (nautilus-python, caja-python) loads our extension
and, beside it, the probe ``host_probes/probe_nautilus_caja.py``: once the host has read
the folder (the files' MIME types are known), the probe builds the host's FileInfo objects
(``NautilusVFSFile`` / ``CajaVFSFile``), asks the extension the host loaded for its menu
items (with the host's own window, for Caja), activates the items, and writes what it saw
as JSON. What is not proved here: that the item shows in a right-click menu a person
opens (no pointer headless); the probe makes the call the host makes then.
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

    def extension_folder(self, session: HostSession) -> Path:
        return session.data_home / f"{self.name}-python" / "extensions"


NAUTILUS = HostSpec("nautilus", ["nautilus", "--new-window"], "NAUTILUS_PYTHON_DEBUG",
                    "python3-nautilus", ".local/share/nautilus/scripts")
# Caja would also draw the desktop (as root too, headless); --no-desktop keeps it a
# file manager with one window.
CAJA = HostSpec("caja", ["caja", "--no-desktop"], "CAJA_PYTHON_DEBUG", "python3-caja",
                ".config/caja/scripts")


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
    """An executable standing in for findsimilar: each start writes "$0" and its argv,
    NUL-separated, to a file of its own (written then renamed)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True)
        self.path = folder / "find similär"
        self.folder = folder
        q = shlex.quote(str(folder))
        self.path.write_text("#!/bin/sh\n"
                             f"printf '%s\\0' \"$0\" \"$@\" > {q}/launch.$$.tmp\n"
                             f"mv {q}/launch.$$.tmp {q}/launch.$$.argv\n")
        self.path.chmod(0o755)

    def launches(self, count: int, log: Path, timeout: float = 20.0) -> list[list[str]]:
        """The argvs of the first COUNT starts, once that many have happened."""
        deadline = time.monotonic() + timeout
        while len(found := sorted(self.folder.glob("launch.*.argv"))) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(found)} of {count} findsimilar launches within {timeout} s:"
                            f"\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.05)
        return [[os.fsdecode(a) for a in f.read_bytes().split(b"\0")[:-1]] for f in found]


def integrate_install(session: HostSession, recorder: Path, *names: str) -> None:
    """``findsimilar integrate install NAMES --command RECORDER`` on the session's HOME."""
    proc = subprocess.run([sys.executable, "-m", "findsimilar", "integrate", "install",
                           "--command", str(recorder), *names], env=session.env(),
                          cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def make_files(folder: Path) -> dict[str, str]:
    photo, second = copy_photos(folder, ["opencv/butterfly.jpg", "skimage/coffee.png"])
    hard = photo.rename(folder / HARD_NAME)
    (folder / "notes.txt").write_text("not a photo\n")
    (folder / "album").mkdir()
    return {"photo": str(hard), "second": str(second), "text": str(folder / "notes.txt"),
            "folder": str(folder / "album")}


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
        files = make_files(base / "photos")
        recorder = Recorder(base / "opt dir")
        integrate_install(session, recorder.path, spec.name)
        installed = spec.extension_folder(session) / f"findsimilar_{spec.name}.py"
        shutil.copy(PROBE, spec.extension_folder(session) / f"probe_{spec.name}.py")
        out, log = base / "probe.json", base / f"{spec.name}.log"
        cases = {"one photo": [files["photo"]], "two photos": [files["photo"], files["second"]],
                 "photo and text": [files["photo"], files["text"]],
                 "folder": [files["folder"]]}
        (base / "cases.json").write_text(json.dumps({
            "out": str(out), "extension": f"findsimilar_{spec.name}", "cases": cases,
            "activate": ["one photo", "two photos"]}))
        script_folder = session.home / spec.script_folder
        assert not script_folder.exists()
        proc = session.launch([*spec.argv, str(base / "photos")], log,
                              FINDSIMILAR_PROBE_HOST=spec.name,
                              FINDSIMILAR_PROBE_CASES=str(base / "cases.json"),
                              **{spec.debug_env: "misc"})
        result = json.loads(session.wait_for_file(out, proc, log, timeout=60))
        alive, zombies = proc.poll() is None, zombie_children(proc.pid)
        launches = recorder.launches(len(result.get("activated", [])), log)
        made_by_host = script_folder.is_dir()
        # The Scripts fallback goes where the host keeps its scripts.
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


def check_item_runs_show_notify(run: HostRun, record: Record) -> None:
    record("host_version", run.version)
    assert run.result["activated"] == ["one photo", "two photos"]
    photo, second = run.files["photo"], run.files["second"]
    assert sorted(run.launches) == sorted([
        [str(run.recorder), "show", "--notify", "--", photo],
        [str(run.recorder), "show", "--notify", "--", photo, second]])
    # findsimilar runs detached: the host is still up and keeps no zombie child behind.
    assert run.alive and run.zombies == []


def check_script_goes_where_the_host_keeps_scripts(run: HostRun, record: Record) -> None:
    record("host_version", run.version)
    assert run.script_folder_made_by_host, f"{run.spec.name} made no {run.spec.script_folder}"
    assert run.script.is_file() and os.access(run.script, os.X_OK)
    assert str(run.recorder) in run.script.read_text()


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
    check_script_goes_where_the_host_keeps_scripts(nautilus, record_property)


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
def test_caja_script_is_installed_in_the_folder_caja_made_for_scripts(
        caja: HostRun, record_property: Record) -> None:
    check_script_goes_where_the_host_keeps_scripts(caja, record_property)
