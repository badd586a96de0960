"""A daemon whose store or data dir cannot be written for a while (issue 12, cases 6 and
9): the work waits and is done afterwards, status says why, no traceback anywhere.

The store is locked the way a user locks it (the `sqlite3` shell in ``BEGIN IMMEDIATE``);
the data dir and the store are made read-only by their permissions, with the daemon
running as root *without* CAP_DAC_OVERRIDE (setpriv) when the tests run as root, so that
file modes apply to it as to any user.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import shared
from .daemon_harness import DaemonProcess, daemon_env, indexed_paths, make_photos, wait_until

SQLITE3 = shutil.which("sqlite3")
SETPRIV = shutil.which("setpriv")
ROOT = os.geteuid() == 0


def unprivileged(command: list[str]) -> list[str]:
    """``command`` without the capabilities that let root ignore file modes."""
    if ROOT:
        if not SETPRIV:
            pytest.skip("as root, file modes need setpriv to apply (util-linux)")
        return [SETPRIV, "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    return command


def daemon_command() -> list[str]:
    return unprivileged([sys.executable, "-m", "findsimilar", "daemon", "run"])


@pytest.mark.skipif(SQLITE3 is None, reason="needs the sqlite3 program (Debian: sqlite3)")
def test_photos_arriving_while_another_program_holds_the_store_lock_are_all_indexed(
        make_daemon, tmp_path):
    """Case 6: a `sqlite3` shell holds BEGIN IMMEDIATE for longer than SQLite's 30 s busy
    timeout while 50 photos arrive: none is lost, status says why meanwhile."""
    daemon = make_daemon().start()
    lib = tmp_path / "lib"
    lib.mkdir()
    daemon.call("watch_add", path=str(lib))
    daemon.barrier(tmp_path / "empty")
    locker = subprocess.Popen([SQLITE3, str(daemon.data_dir / "store.db")],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert locker.stdin is not None
        locker.stdin.write("BEGIN IMMEDIATE;\n")
        locker.stdin.flush()
        photos = make_photos(lib, 50, seed=61, size=(160, 120))

        info = wait_until(lambda: (lambda s: s if s["problem"] else None)(daemon.status()),
                          45, 0.5, "no problem shown while the store is locked")
        assert "locked by another program" in info["problem"]
        assert f"pid {locker.pid}, sqlite3" in info["problem"]
        assert info["state"] == "waiting" and info["queued"] >= 1
    finally:
        if locker.stdin is not None:
            locker.stdin.write("ROLLBACK;\n.quit\n")
            locker.stdin.close()
        locker.wait(10)

    wait_until(lambda: indexed_paths(daemon.data_dir) >= {str(p) for p in photos}, 60,
               message=lambda: f"{len(indexed_paths(daemon.data_dir))} of 50 indexed")
    info = daemon.wait_idle()
    assert info["problem"] is None and info["indexed"] == 50
    assert "Traceback" not in daemon.log()


def test_a_data_dir_reached_through_a_symlink_finds_its_daemon(tmp_path):
    """Case 9: the daemon runs for the real folder, the user's shell names a symlink."""
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)
    runtime = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    env = {k: v for k, v in daemon_env(real, None).items() if k != "FINDSIMILAR_SOCKET"}
    env["XDG_RUNTIME_DIR"] = str(runtime)
    d = DaemonProcess(real, runtime / "unused.sock", tmp_path / "d.log", env=env)
    try:
        d.spawn()
        cli = [sys.executable, "-m", "findsimilar", "daemon", "status", "--json"]
        wait_until(lambda: subprocess.run(cli, env=env, capture_output=True).returncode == 0,
                   60, 0.2, d.log)
        via_link = subprocess.run(cli, env={**env, "FINDSIMILAR_DATA_DIR": str(link)},
                                  capture_output=True, text=True, timeout=30)
        assert via_link.returncode == 0, via_link.stdout + via_link.stderr
        assert f'"pid": {d.pid}' in via_link.stdout
    finally:
        d.cleanup()
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture
def restore_modes(tmp_path: Path) -> Iterator[list[Path]]:
    """Paths whose modes a test takes away: given back at the end (pytest cleans up)."""
    changed: list[Path] = []
    yield changed
    for path in changed:
        if path.exists():
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_read_only_data_dir_and_store_are_problems_in_status_and_work_waits(
        make_daemon, tmp_path, restore_modes):
    """Case 9: a read-only data dir at the periodic save, at `daemon stop` and at a start
    that must repair the index; a read-only store.db while photos arrive."""
    daemon = make_daemon()
    daemon.spawn(daemon_command())
    daemon.wait_ready()
    lib = tmp_path / "lib"
    lib.mkdir()
    first = [Path(shutil.copyfile(shared(r), lib / Path(r).name))
             for r in ("opencv/fruits.jpg", "mate/Aqua.jpg")]
    daemon.call("watch_add", path=str(lib))
    wait_until(lambda: indexed_paths(daemon.data_dir) == {str(p) for p in first}, 60)

    data, store = daemon.data_dir, daemon.data_dir / "store.db"
    restore_modes += [data, store]
    data.chmod(0o555)  # the index cannot be saved any more (it is written beside)
    late = Path(shutil.copyfile(shared("skimage/coffee.png"), lib / "late.png"))
    wait_until(lambda: str(late) in indexed_paths(data), 30)  # the store still takes rows
    assert daemon.terminate() == 0
    assert "could not save the index" in daemon.log()

    [index_file] = data.glob("index-*.faiss")
    index_file.unlink()  # the next start must rebuild it, and cannot save it
    store.chmod(0o444)
    daemon.spawn(daemon_command())
    daemon.wait_ready()
    info = wait_until(lambda: (lambda s: s if s["problem"] else None)(daemon.status()), 30,
                      0.2, daemon.log)
    assert f"cannot write in the data dir {data}" in info["problem"]
    assert info["indexed"] == 3 and info["vectors"] == 3
    assert str(late) in {m["path"] for m in daemon.search(shared("skimage/coffee.png"))}

    later = Path(shutil.copyfile(shared("opencv/building.jpg"), lib / "later.jpg"))
    info = wait_until(lambda: (lambda s: s if "cannot be written" in (s["problem"] or "")
                               else None)(daemon.status()), 30, 0.2, daemon.log)
    assert info["state"] == "waiting" and info["queued"] >= 1
    assert str(later) not in indexed_paths(data)

    store.chmod(0o644)
    data.chmod(0o755)
    wait_until(lambda: str(later) in indexed_paths(data), 30, 0.2, daemon.log)
    wait_until(lambda: daemon.status()["problem"] is None, 40, 0.5, daemon.log)
    assert index_file.exists()  # saved once it could be
    assert daemon.terminate() == 0
    assert "Traceback" not in daemon.log()
    assert stat.S_IMODE(store.stat().st_mode) == 0o644
