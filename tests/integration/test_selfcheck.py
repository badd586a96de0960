"""The self-check, through a real daemon on real photos: it runs in idle time and shows in
`status`, skips photos gone or changed since they were indexed (also while it runs),
keeps its runs over a restart, runs when the index changes layout, yields to a query,
and reports a damaged index (vectors swapped between ids, which the index's repair at
start cannot see) as a problem."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

from ..conftest import PHOTO_SET, copy_photos
from .daemon_harness import (
    DaemonProcess,
    make_photos,
    module_daemon,
    saved_index_ids,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon that indexed PHOTO_SET (12 real photos, not watched: the daemon does not
    see them change) and runs a self-check after half a second of quiet (then once a
    day, or when the index changes layout)."""
    base = tmp_path_factory.mktemp("selfcheck")
    photos = copy_photos(base / "photos", PHOTO_SET)
    with module_daemon(base, FINDSIMILAR_SELFCHECK_AFTER="0.5",
                       FINDSIMILAR_SELFCHECK_EVERY="86400") as d:
        assert d.call("index", paths=[str(photos[0].parent)])["new"] == len(PHOTO_SET)
        yield d


def cli(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "findsimilar", *args], env=d.env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def last_run(d: DaemonProcess) -> dict[str, Any] | None:
    return d.status()["self_check"]["last"]


def test_a_self_check_runs_in_idle_time_and_shows_in_status(daemon: DaemonProcess) -> None:
    run = wait_until(lambda: last_run(daemon), 180, 0.2, daemon.log)
    assert (run["checked"], run["skipped"], run["k"]) == (12, 0, 10)
    assert run["rank1"] == run["top_k"] == 12, run
    assert run["problem"] is None
    assert run["index"]["vectors"] == 12 and run["index"]["layout"] == "exact"
    assert sum(kind["checked"] for kind in run["kinds"].values()) == 12
    text = cli(daemon, "status").stdout
    assert "self-check: 12/12 edited copies found at rank 1 (12 in the top 10), just now" \
        in text, text
    assert "problem" not in text
    check = json.loads(cli(daemon, "status", "--json").stdout)["self_check"]
    assert check["last"]["when"] == run["when"] and check["problem"] is None


def test_photos_gone_or_changed_since_they_were_indexed_are_skipped_not_missed(
        daemon: DaemonProcess) -> None:
    photos = daemon.data_dir.parent / "photos"
    (photos / "baboon.jpg").unlink()
    (photos / "fruits.jpg").write_bytes((photos / "chelsea.png").read_bytes())
    assert daemon.status()["indexed"] == 12  # (the daemon has not seen either)
    check = json.loads(cli(daemon, "daemon", "self-check", "--wait", "--json").stdout)
    run = check["last"]
    assert run["skipped_why"] == {"vanished": 1, "changed": 1}, run
    assert (run["checked"], run["rank1"], run["skipped"]) == (10, 10, 2)
    assert check["problem"] is None


def test_a_damaged_index_is_reported_as_a_problem(daemon: DaemonProcess) -> None:
    before = last_run(daemon)
    assert before is not None and before["problem"] is None
    assert daemon.terminate() == 0
    [index_file] = daemon.data_dir.glob("index-*.faiss")
    swap_vectors_between_ids(index_file)
    have, wanted, _ = saved_index_ids(daemon.data_dir)
    assert have == wanted  # the ids are all there: the repair at start sees nothing wrong
    daemon.start()
    assert last_run(daemon) == before  # the runs are kept in the store
    out = cli(daemon, "daemon", "self-check", "--wait").stdout
    assert "problem: match quality dropped: 0/10 edited copies found at rank 1" in out, out
    text = cli(daemon, "status").stdout
    assert "problem:    match quality dropped: 0/10 edited copies" in text, text
    assert "Match quality dropped" in daemon.log()
    assert str(index_file) in daemon.log()  # (what to delete to rebuild it)


def swap_vectors_between_ids(path: Path) -> None:
    """Give each id of the saved (exact) index the vector of the next one."""
    index = faiss.read_index(str(path))
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    vectors = index.index.reconstruct_n(0, index.ntotal)
    damaged = faiss.IndexIDMap2(faiss.IndexFlatIP(index.d))
    damaged.add_with_ids(np.roll(vectors, 1, axis=0), ids)
    faiss.write_index(damaged, str(path))


def test_an_index_in_a_new_layout_is_checked_at_once(daemon: DaemonProcess) -> None:
    """Past compress_above the index is rebuilt compressed: a self-check follows by itself
    (here too the damaged index file, deleted, was rebuilt from the store)."""
    assert daemon.terminate() == 0
    next(daemon.data_dir.glob("index-*.faiss")).unlink()
    daemon.env["FINDSIMILAR_COMPRESS_ABOVE"] = "60"
    daemon.start()
    made = make_photos(daemon.data_dir.parent / "made", 80, size=(400, 300))
    assert daemon.call("index", paths=[str(made[0].parent)])["new"] == 80
    run = wait_until(lambda: (r := last_run(daemon)) and r["index"]["layout"] == "compressed"
                     and r, 180, 0.2, daemon.log)
    assert (run["checked"], run["skipped"]) == (90, 2)
    assert run["problem"] is None, run


def test_a_run_yields_at_once_to_a_query(daemon: DaemonProcess) -> None:
    before = last_run(daemon)
    daemon.call("self_check")
    wait_until(lambda: daemon.status()["self_check"]["running"], 60, 0.02, daemon.log)
    daemon.search(daemon.data_dir.parent / "photos" / "coffee.png", k=1)
    wait_until(lambda: "self-check stopped for other work" in daemon.log(), 10, 0.02,
               daemon.log)
    run = wait_until(lambda: (r := last_run(daemon)) != before and r, 120, 0.2, daemon.log)
    assert run["checked"] == 90  # run again whole once the daemon was quiet again


def test_photos_deleted_while_a_run_goes_on_are_skipped_not_missed(
        daemon: DaemonProcess) -> None:
    before = last_run(daemon)
    daemon.call("self_check")
    wait_until(lambda: daemon.status()["self_check"]["running"], 60, 0.02, daemon.log)
    for photo in (daemon.data_dir.parent / "made").iterdir():
        photo.unlink()  # sampled at the run's start, most not yet checked
    run = wait_until(lambda: (r := last_run(daemon)) != before and r, 120, 0.2, daemon.log)
    assert run["sampled"] == 92 and run["skipped_why"]["vanished"] > 1, run
    assert run["checked"] + run["skipped"] == 92 and run["problem"] is None
