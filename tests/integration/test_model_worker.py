"""The daemon that stays up all day is light: the model runs in a worker process that
ends when idle (FINDSIMILAR_MODEL_IDLE), and a worker that crashes or hangs on a file is
replaced, that file failed with the reason, the daemon untouched (issue 13, part 1).

Real faults on the real worker: SIGKILL (a segfault or the OOM killer would do the same)
and SIGSTOP (a decoder stuck for ever) while it decodes a known file — a 144 MP PNG that
takes half a second or more to decode, dropped into a watched folder — once it decodes
that file and nothing else; new photos dropped in then wait for the same worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import SHARED, shared
from ..hostile_corpus import pixel_flood_png
from .daemon_harness import DaemonProcess, make_photos, module_daemon, store_rows, wait_until

IDLE = 5  # FINDSIMILAR_MODEL_IDLE
TIMEOUT = 6  # FINDSIMILAR_MODEL_TIMEOUT
RSS_GOAL_MB = 150


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """A daemon with the shared photos indexed and an empty watched folder ``inbox``."""
    base = tmp_path_factory.mktemp("worker")
    # No background duplicate checks: they would start a worker of their own accord, and
    # the tests count the worker's starts.
    with module_daemon(base, FINDSIMILAR_MODEL_IDLE=str(IDLE),
                       FINDSIMILAR_MODEL_TIMEOUT=str(TIMEOUT),
                       FINDSIMILAR_PRECHECK_AFTER="0") as d:
        summary = d.call("index", paths=[str(SHARED)])
        assert summary["extracted"] > 50, summary
        inbox = base / "inbox"
        inbox.mkdir()
        d.call("watch_add", path=str(inbox), excludes=[])
        d.wait_idle()
        d.inbox = inbox  # type: ignore[attr-defined]
        d.outside = base / "outside"  # type: ignore[attr-defined]
        yield d


def worker(d: DaemonProcess) -> dict:
    return d.status()["worker"]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def row(d: DaemonProcess, path: Path) -> dict | None:
    return store_rows(d.data_dir).get(str(path))


def new_photos(d: DaemonProcess, count: int, seed: int) -> list[Path]:
    """Photos no store has seen, made outside the watched folder (so they can be
    searched for from there) and copied in at once."""
    made = make_photos(d.outside, count, seed=seed)  # type: ignore[attr-defined]
    return [Path(shutil.copy(p, d.inbox / p.name)) for p in made]  # type: ignore[attr-defined]


def found(d: DaemonProcess, photo: Path) -> str:
    """The best match of the outside copy of ``photo`` (not indexed: the model runs)."""
    return d.search(d.outside / photo.name, k=1)[0]["path"]  # type: ignore[attr-defined]


def test_a_quiet_daemon_maps_no_torch_and_answers_indexed_photos_without_a_worker(
        daemon: DaemonProcess, tmp_path: Path):
    first = worker(daemon)
    assert first["starts"] >= 1  # the shared photos went through a worker
    wait_until(lambda: not worker(daemon)["running"], IDLE + 15)
    time.sleep(10 - IDLE)  # ~10 quiet seconds in all
    pid = daemon.status()["daemon"]["pid"]
    assert pid == daemon.pid
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "libtorch" not in maps and "cv2" not in maps
    print(f"quiet daemon RSS: {rss_mb(pid):.0f} MB")
    assert rss_mb(pid) <= RSS_GOAL_MB

    # `findsimilar PHOTO` on an indexed photo answers from the stored vector.
    photo = shared("opencv/fruits.jpg")
    out = subprocess.run([sys.executable, "-m", "findsimilar", "-k", "3", str(photo)],
                         env=daemon.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 3 and str(photo) not in out.stdout
    after = worker(daemon)
    assert not after["running"] and after["starts"] == first["starts"]

    # A new photo in the watched folder starts a worker, and is indexed and searchable.
    [new] = new_photos(daemon, 1, seed=1)
    wait_until(lambda: (r := row(daemon, new)) and r["status"] == "ok", 60)
    assert found(daemon, new) == str(new)
    assert worker(daemon)["starts"] == first["starts"] + 1


def decoding(d: DaemonProcess, path: Path) -> int:
    """Wait until the worker decodes ``path`` and nothing else, freeze it there (SIGSTOP)
    and return its pid."""
    def alone() -> int | None:
        w = worker(d)
        return w["pid"] if w["running"] and w["working_on"] == [str(path)] else None

    pid = wait_until(alone, 60, 0.02, lambda: str(worker(d)))
    os.kill(pid, signal.SIGSTOP)
    time.sleep(0.5)  # what it said before it stopped has been read
    assert worker(d)["working_on"] == [str(path)], "it had finished before the SIGSTOP"
    return pid


def drop(d: DaemonProcess, name: str, seed: int) -> tuple[Path, int, list[Path]]:
    """A big PNG written into the watched folder; once the worker decodes it, alone, the
    worker is frozen there (SIGSTOP) and two new photos are written in after it (they wait
    for the same worker). Returns the PNG, the frozen worker's pid and the photos.

    The PNG goes first and alone: written with the photos, it would be decoded beside
    them and could be nearly done by the time it was alone (0.5 s to decode here)."""
    big = d.inbox / name  # type: ignore[attr-defined]
    big.write_bytes(pixel_flood_png(12_000, 12_000, seed=seed))
    pid = decoding(d, big)
    return big, pid, new_photos(d, 2, seed)


def test_a_worker_killed_on_a_file_is_replaced_and_only_that_file_fails(
        daemon: DaemonProcess):
    before = worker(daemon)
    big, pid, good = drop(daemon, "flood-killed.png", seed=2)
    os.kill(pid, signal.SIGKILL)

    failed = wait_until(lambda: (r := row(daemon, big)) and r["status"] == "failed" and r, 60)
    assert "killed (SIGKILL" in failed["error"] and "replaced" in failed["error"]
    wait_until(lambda: all((r := row(daemon, p)) and r["status"] == "ok" for p in good), 60)
    assert daemon.alive() and daemon.call("ping")
    w = worker(daemon)
    assert w["replaced"] == before["replaced"] + 1 and w["pid"] != pid
    assert [found(daemon, p) for p in good] == [str(p) for p in good]


def test_a_worker_hanging_on_a_file_is_replaced_and_only_that_file_fails(
        daemon: DaemonProcess):
    before = worker(daemon)
    big, pid, good = drop(daemon, "flood-stuck.png", seed=3)  # stopped, and left so:
    # the daemon must notice

    failed = wait_until(lambda: (r := row(daemon, big)) and r["status"] == "failed" and r,
                        TIMEOUT + 30)
    assert f"took more than {TIMEOUT} s" in failed["error"], failed["error"]
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    wait_until(lambda: all((r := row(daemon, p)) and r["status"] == "ok" for p in good), 60)
    assert daemon.alive()
    assert worker(daemon)["replaced"] == before["replaced"] + 1
    assert [found(daemon, p) for p in good] == [str(p) for p in good]
