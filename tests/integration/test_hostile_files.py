"""A real daemon watching a folder of hostile files: damaged pictures, bombs, FIFOs, a
device node, symlink loops, unreadable files, names that are not UTF-8, and a tree of
100k empty files. It stays up, records each bad file with its reason, indexes the good
photos beside them, and keeps its memory bounded.

When the tests run as root (as in CI) the daemon runs without CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH (setpriv), so that an unreadable file really is unreadable to it.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import copy_photos, shared
from ..hostile_corpus import INDEXED, hostile_files, make_empty_tree, make_special_files
from .daemon_harness import DaemonProcess, daemon_env, indexed_paths, store_rows, wait_until

GOOD = ["opencv/butterfly.jpg", "skimage/coffee.png", "mate/Storm.jpg", "sklearn/china.jpg"]
SPECIAL_PHOTO = "opencv/baboon.jpg"  # the content of the special files that hold a photo
LATE = ["skimage/astronaut.png", "opencv/messi5.jpg"]  # photos that arrive later
RSS_BOUND_MB = 1536
UNPRIVILEGED = os.geteuid() != 0 or shutil.which("setpriv") is not None


def vm_hwm_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon that file permissions apply to, even when the tests run as root."""
    sock_dir = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    data = tmp_path / "data"
    d = DaemonProcess(data, sock_dir / "d.sock", tmp_path / "daemon.log",
                      env=daemon_env(data, sock_dir / "d.sock"))
    command = [sys.executable, "-m", "findsimilar", "daemon", "run"]
    if os.geteuid() == 0 and shutil.which("setpriv"):
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    d.spawn(command)
    d.wait_ready()
    yield d
    d.cleanup()
    print(f"--- daemon log\n{d.log()}")
    shutil.rmtree(sock_dir, ignore_errors=True)


def rows_for(daemon: DaemonProcess, names: list[str], folder: Path) -> dict[str, Any] | None:
    """The store rows of ``names`` in ``folder``, once every one of them has a row."""
    rows = store_rows(daemon.data_dir)
    wanted = {n: rows.get(f"{folder}/{n}") for n in names}
    return wanted if all(wanted.values()) else None


def test_a_folder_of_hostile_files_is_indexed_with_every_failure_recorded_and_memory_bounded(
        daemon: DaemonProcess, tmp_path: Path):
    watched = tmp_path / "photos"
    good = copy_photos(watched / "good", GOOD)
    daemon.call("watch_add", path=str(watched), excludes=[])
    wait_until(lambda: len(indexed_paths(daemon.data_dir)) == len(GOOD), 60)
    before_mb = vm_hwm_mb(daemon.pid)

    # Drop the corpus in: damaged files are written in place; special ones appear at once.
    cases = hostile_files(shared("opencv/fruits.jpg"))
    for case in cases:
        (watched / case.name).write_bytes(case.data)
    staging = tmp_path / "staging"
    staging.mkdir()
    specials = make_special_files(staging, shared(SPECIAL_PHOTO))
    for entry in os.listdir(staging):
        os.rename(staging / entry, watched / entry)
    try:
        recorded = [c.name for c in cases] + [s.stored_as for s in specials if s.stored_as]
        rows = wait_until(lambda: rows_for(daemon, recorded, watched), 120,
                          message=lambda: f"rows: {sorted(store_rows(daemon.data_dir))}")
        status = daemon.wait_idle(60)
        peak_mb = vm_hwm_mb(daemon.pid)
        # The pictures are decoded in the model worker: its peak is bounded too.
        worker = status["worker"]
        worker_peak_mb = vm_hwm_mb(worker["pid"]) if worker["running"] else 0.0
        print(f"daemon VmHWM: {before_mb:.0f} MB before the hostile corpus, "
              f"{peak_mb:.0f} MB after; model worker VmHWM {worker_peak_mb:.0f} MB "
              f"({worker['replaced']} replaced)")

        assert daemon.alive() and daemon.call("ping")
        for case in cases:
            row = rows[case.name]
            if case.reason == INDEXED:
                assert (row["status"], row["error"]) == ("ok", None), case.name
            else:
                assert row["status"] == "failed", case.name
                assert re.search(case.reason, row["error"]), (case.name, row["error"])
        every_row = store_rows(daemon.data_dir)
        for special in specials:
            if special.outcome == "ignored" and (UNPRIVILEGED or "locked" not in special.name):
                assert f"{watched}/{special.name}" not in every_row, special.name
            elif special.outcome == "indexed":
                assert rows[special.stored_as]["status"] == "ok", special.name
            elif UNPRIVILEGED or special.name != "locked.jpg":
                row = rows[special.stored_as]
                assert row["status"] == "failed", special.name
                assert re.search(special.reason, row["error"]), (special.name, row["error"])
        failed = {p for p, r in every_row.items() if r["status"] == "failed"}
        assert status["failed"] == len(failed)
        assert {f["path"] for f in status["recent_failures"]} <= failed
        assert all(f["error"] for f in status["recent_failures"])
        for rel, photo in zip(GOOD, good, strict=True):
            hit = daemon.search(shared(rel), k=3)[0]
            assert hit["path"] == str(photo) and hit["score"] > 0.99
        assert peak_mb < RSS_BOUND_MB
        assert worker["running"] and worker["replaced"] == 0
        assert worker_peak_mb < RSS_BOUND_MB

        # The watcher still follows the folder after all that.
        late = copy_photos(watched, LATE[:1])[0]
        wait_until(lambda: str(late) in indexed_paths(daemon.data_dir), 30)

        # A full rescan finds nothing new and retries nothing that did not change.
        summary = daemon.call("index", paths=[str(watched)])
        assert (summary["new"], summary["changed"], summary["removed"]) == (0, 0, 0), summary
        assert summary["still_failing"] == len(failed)
        if UNPRIVILEGED:
            assert {"path": f"{watched}/locked-folder", "reason": "Permission denied"} in \
                summary["failed"]
    finally:
        (watched / "locked-folder").chmod(0o755)


def test_names_that_are_not_utf8_are_indexed_renamed_and_deleted_like_any_other(
        daemon: DaemonProcess, tmp_path: Path):
    watched = tmp_path / "photos"
    good = copy_photos(watched, GOOD[:2])
    daemon.call("watch_add", path=str(watched), excludes=[])
    wait_until(lambda: len(indexed_paths(daemon.data_dir)) == 2, 60)
    raw = os.fsencode(watched)

    # In one burst: a photo under a Latin-1 name, a folder with such a name holding a
    # photo, and a photo with a fine name: each is indexed under its exact name.
    bad_file = os.fsdecode(raw + b"/caf\xe9.jpg")
    shutil.copy(shared(LATE[0]), bad_file)
    bad_folder = os.fsdecode(raw + b"/\xe9t\xe9")
    os.mkdir(bad_folder)
    inside = os.path.join(bad_folder, "inside.jpg")
    shutil.copy(shared(GOOD[2]), inside)
    shutil.copy(shared(LATE[1]), watched / "fine.jpg")
    wanted = {bad_file, inside, f"{watched}/fine.jpg", *map(str, good)}
    rows = wait_until(lambda: (r := store_rows(daemon.data_dir)) and set(r) == wanted and all(
        v["status"] == "ok" for v in r.values()) and r, 60,
        message=lambda: str(store_rows(daemon.data_dir)))
    assert daemon.search(shared(LATE[0]), k=1)[0]["path"] == bad_file  # its exact name

    # Renamed to a fine name and back to a bad one, moved with its folder, deleted: the
    # rows follow, by their exact names, with no model call for a rename.
    os.rename(bad_file, watched / "renamed.jpg")
    renamed_bad = os.fsdecode(raw + b"/\xff.jpg")
    os.rename(watched / Path(GOOD[0]).name, renamed_bad)
    moved_folder = os.fsdecode(raw + b"/\xe9t\xe9 2")
    os.rename(bad_folder, moved_folder)

    def settled() -> dict[str, Any] | None:
        r = store_rows(daemon.data_dir)
        return r if set(r) == {f"{watched}/renamed.jpg", renamed_bad, str(good[1]),
                               f"{watched}/fine.jpg", os.path.join(moved_folder,
                                                                   "inside.jpg")} else None

    rows = wait_until(settled, 60, message=lambda: str(sorted(store_rows(daemon.data_dir))))
    assert all(r["status"] == "ok" for r in rows.values())
    assert daemon.search(shared(GOOD[0]), k=1)[0]["path"] == renamed_bad
    shutil.rmtree(moved_folder)
    os.unlink(renamed_bad)
    wait_until(lambda: set(store_rows(daemon.data_dir)) == {
        f"{watched}/renamed.jpg", str(good[1]), f"{watched}/fine.jpg"}, 60)


@pytest.mark.slow
def test_a_10_level_tree_of_100k_empty_files_is_recorded_in_bounded_time_and_memory(
        daemon: DaemonProcess, tmp_path: Path):
    tree = tmp_path / "tree"
    started = time.monotonic()
    folders = make_empty_tree(tree, 100_000, 10)
    made = time.monotonic() - started
    copy_photos(tree / "l0-0", GOOD[:1])
    before_mb = vm_hwm_mb(daemon.pid)

    started = time.monotonic()
    daemon.call("watch_add", path=str(tree), excludes=[])
    status = wait_until(lambda: (s := daemon.wait_idle(120))["files"] == 100_001 and s, 120)
    took = time.monotonic() - started
    peak_mb = vm_hwm_mb(daemon.pid)
    print(f"100k empty files in {folders} folders: made in {made:.1f} s, watched and "
          f"recorded in {took:.1f} s; daemon VmHWM {before_mb:.0f} -> {peak_mb:.0f} MB")

    assert (status["indexed"], status["failed"]) == (1, 100_000)
    assert status["recent_failures"][0]["error"] == "empty file (0 bytes)"
    assert [w["path"] for w in daemon.call("watch_list")] == [str(tree)]
    assert took < 90
    assert peak_mb < RSS_BOUND_MB
