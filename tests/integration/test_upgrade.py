"""Upgrades without a gap (issue 17): a store made by the previous release's default model
(efficientnet-lite0-gem/v1), then a daemon configured with another one (Lite2, installed
by setup.sh and CI) re-extracts the library in the background while the old index keeps
answering, resumes after a kill, and swaps; a downgrade swaps at once; an upgrade whose
model cannot load leaves the old index answering and is retried; a daemon of this
release with no model configured upgrades the store to the new default (gem512), pausing
while the disk is full.

One data dir for the module, real daemons one after the other, the real models, real
photos (the shared set plus generated ones: enough chunks to stop one half-way).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from findsimilar.config import DEFAULT_EXTRACTOR
from findsimilar.daemon.model.spec import model_spec

from ..conftest import PHOTO_SET, copy_photos, small_tmpfs
from .daemon_harness import DaemonProcess, daemon_env, make_photos, wait_until

# The store is made by the previous release's default model; this release's default
# (gem512) and Lite2 are the new models it upgrades to.
LITE0_NAME = "efficientnet-lite0-gem"
LITE0 = LITE0_NAME + "/v1"
NEW_DEFAULT = model_spec(DEFAULT_EXTRACTOR).id
LITE2_NAME = "efficientnet-lite2-gem"
LITE2 = LITE2_NAME + "/v1"
QUERY = "fruits.jpg"  # an indexed photo: its ranking of the whole library is compared
OUTSIDE = "baboon.jpg"  # a copy outside the library: it goes through the model


class Library:
    """The module's data dir, photos, and the answers of the old index."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data = base / "data"
        self.photos = base / "photos"
        self.outside = base / "outside"
        self.sock_dir = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
        self.daemons: list[DaemonProcess] = []
        self.before: list[tuple[str, float]] = []  # QUERY's ranking by the Lite0 index

    def daemon(self, data: Path | None = None, **env: str) -> DaemonProcess:
        """A daemon on the library's data dir, or ``data`` (not started); stopped at the
        end."""
        sock, data = self.sock_dir / "d.sock", data or self.data
        d = DaemonProcess(data, sock, self.base / f"daemon-{len(self.daemons)}.log",
                          env=daemon_env(data, sock, FINDSIMILAR_PRECHECK_AFTER="0", **env))
        self.daemons.append(d)
        return d

    def ranking(self, d: DaemonProcess) -> list[tuple[str, float]]:
        """QUERY's matches, every photo of the library, with scores."""
        return [(m["path"], round(m["score"], 4))
                for m in d.search(self.photos / QUERY, k=1000)]

    def outside_match(self, d: DaemonProcess) -> dict[str, Any]:
        return d.search(self.outside / OUTSIDE, k=1)[0]

    def vectors_of(self, extractor: str, data: Path | None = None) -> int:
        conn = sqlite3.connect(f"file:{(data or self.data) / 'store.db'}?mode=ro", uri=True)
        try:
            return conn.execute("select count(*) from features where extractor = ?",
                                [extractor]).fetchone()[0]
        finally:
            conn.close()


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    """A store made with the previous release's default model (as a user upgrading has
    one): 12 real photos and 20 generated ones, indexed by a daemon that then stopped."""
    lib = Library(tmp_path_factory.mktemp("upgrade"))
    copy_photos(lib.photos, PHOTO_SET)
    make_photos(lib.photos, 20, seed=17, size=(640, 480))
    copy_photos(lib.outside, [p for p in PHOTO_SET if p.endswith(OUTSIDE)])
    d = lib.daemon(FINDSIMILAR_EXTRACTOR=LITE0_NAME).start()
    try:
        assert d.call("index", paths=[str(lib.photos)])["new"] == 32
        assert d.status()["model"] == LITE0
        lib.before = lib.ranking(d)
        assert len(lib.before) == 31
        assert d.terminate() == 0
        shutil.copytree(lib.data, lib.base / "lite0-data")  # (for the full disk)
        yield lib
    finally:
        for daemon in lib.daemons:
            daemon.cleanup()
            print(f"--- {daemon.log_path.name}\n{daemon.log()}")
        shutil.rmtree(lib.sock_dir, ignore_errors=True)


def upgrade(d: DaemonProcess) -> dict[str, Any] | None:
    return d.status()["upgrade"]


def answers_while_upgrading(lib: Library, d: DaemonProcess, *, until: str,
                            ) -> list[tuple[str, list[tuple[str, float]], dict]]:
    """Search (an indexed photo's whole ranking, a new photo's best match) again and
    again until the upgrade's state is ``until`` ("killed": until it has committed some
    chunks, not all): (the upgrade's state just before, the ranking, the best match) for
    each round."""
    seen = []
    deadline = time.monotonic() + 240
    while True:
        state = upgrade(d)
        assert state is not None
        if state["state"] == until or (until == "killed" and 0 < state["done"] < state["total"]
                                       and state["extracted"]):
            return seen
        assert state["state"] != "failed", state
        seen.append((state["state"], lib.ranking(d), lib.outside_match(d)))
        assert time.monotonic() < deadline, f"the upgrade did not get to {until}: {state}"


def assert_old_index_answers(lib: Library, seen: list) -> None:
    for _, ranking, best in seen:
        assert ranking == lib.before  # complete (every photo) and the Lite0 index's order
        assert best["path"] == str(lib.photos / OUTSIDE) and best["score"] > 0.99


def test_a_new_model_is_extracted_in_the_background_and_a_killed_run_resumes(
        library: Library):
    lib = library
    d = lib.daemon(FINDSIMILAR_EXTRACTOR=LITE2_NAME).start()
    first = d.status()
    assert first["model"] == LITE0  # the old index answers from the start
    assert first["upgrade"]["from"] == LITE0 and first["upgrade"]["to"] == LITE2
    seen = answers_while_upgrading(lib, d, until="killed")
    assert_old_index_answers(lib, seen)
    pid = upgrade(d)["worker_pid"]  # the new model's own worker, yielding the CPU
    assert pid and pid != d.status()["worker"]["pid"]
    assert os.getpriority(os.PRIO_PROCESS, pid) == 19
    d.kill()  # mid-upgrade: some chunks committed, not all
    kept = lib.vectors_of(LITE2)
    assert 0 < kept < 32

    # Without a daemon, a search answers from the complete (old) index, and says so.
    env = daemon_env(lib.data, lib.sock_dir / "none.sock", FINDSIMILAR_EXTRACTOR=LITE2_NAME)
    out = subprocess.run([sys.executable, "-m", "findsimilar", "search", "--no-daemon",
                          "--json", "-k", "1000", str(lib.photos / QUERY)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "not complete yet" in out.stderr and LITE0 in out.stderr
    ranking = [(r["path"], round(r["score"], 4)) for r in json.loads(out.stdout)["results"]]
    assert ranking == lib.before
    status = subprocess.run([sys.executable, "-m", "findsimilar", "status", "--no-daemon",
                             "--json"], env=env, capture_output=True, text=True, timeout=120)
    pending = json.loads(status.stdout)["upgrade"]
    assert (pending["state"], pending["done"], pending["total"]) == ("pending", kept, 32)

    # Restarted, it goes on from there; a photo that arrives meanwhile gets both vectors.
    d = lib.daemon(FINDSIMILAR_EXTRACTOR=LITE2_NAME).start()
    assert d.status()["upgrade"]["done"] >= kept
    [new] = make_photos(lib.outside, 1, seed=99, prefix="new")
    arrived = Path(shutil.copy(new, lib.photos / new.name))
    d.call("index", paths=[str(arrived)], wait=False)
    # Its worker dies (as under the OOM killer): replaced, the upgrade goes on.
    pid = wait_until(lambda: (u := upgrade(d))["state"] == "extracting" and u["worker_pid"],
                     120, 0.02, d.log)
    os.kill(pid, signal.SIGKILL)
    seen = answers_while_upgrading(lib, d, until="done")
    assert [s for s in seen if s[0] in ("waiting", "extracting")], "no search during it"
    assert f"model worker (pid {pid}) was killed" in d.log()
    status = d.status()
    assert status["model"] == LITE2 and status["upgrade"]["failures"] == 0
    # Nothing extracted twice; a picture the dead worker was reading alone is read
    # again by the indexer after the swap.
    assert status["upgrade"]["extracted"] + status["upgrade"]["skipped"] == 33 - kept
    wait_until(lambda: d.status()["vectors"] == 33, 120, 0.2, d.log)
    after = lib.ranking(d)
    assert len(after) == 32 and dict(after).keys() == dict(lib.before).keys() | {str(arrived)}
    old = dict(lib.before)
    assert any(abs(old[p] - s) > 0.01 for p, s in after if p in old)  # Lite2's own scores
    for _, ranking, best in seen:  # each answer whole, from one index or the other
        assert ranking == after or [r for r in ranking if r[0] != str(arrived)] == lib.before
        assert best["path"] == str(lib.photos / OUTSIDE) and best["score"] > 0.99
    assert d.search(new, k=1)[0]["path"] == str(arrived)
    assert lib.outside_match(d)["score"] > 0.99
    # The old model's index file went at the swap (5 KB a photo with v1); its vectors stay.
    assert [p.name for p in lib.data.glob("index-*.faiss")] == [
        "index-efficientnet-lite2-gem_v1.faiss"]
    assert lib.vectors_of(LITE0) == 33
    assert d.terminate() == 0


def test_a_downgrade_swaps_at_once(library: Library):
    lib = library
    d = lib.daemon(FINDSIMILAR_EXTRACTOR=LITE0_NAME).start()  # its vectors are all there
    status = d.status()
    assert status["model"] == LITE0 and status["upgrade"] is None
    assert status["vectors"] == 33
    # Its index, deleted at the swap away from it, is built from its stored vectors: no
    # repair, no problem, and saved at once.
    assert status["problem"] is None and "rebuilt the index" not in d.log()
    assert (lib.data / "index-efficientnet-lite0-gem_v1.faiss").exists()
    assert [r for r in lib.ranking(d) if not Path(r[0]).name.startswith("new")] == lib.before
    assert d.status()["worker"]["starts"] == 0  # nothing went through a model
    assert d.terminate() == 0


def test_a_failed_upgrade_keeps_the_old_index_and_is_tried_again(library: Library):
    lib = library
    weights = lib.base / "not-weights.pth"
    weights.write_bytes(b"not a state dict")
    d = lib.daemon(FINDSIMILAR_EXTRACTOR="resnet50-gem",
                   FINDSIMILAR_RESNET50_WEIGHTS=str(weights),
                   FINDSIMILAR_UPGRADE_RETRY="1").start()
    wait_until(lambda: (upgrade(d) or {}).get("failures", 0) >= 2, 120, 0.2,
               lambda: f"{upgrade(d)}\n{d.log()}")
    status = d.status()
    assert status["model"] == LITE0 and status["upgrade"]["state"] in (
        "failed", "waiting", "extracting")
    assert "the model could not be loaded" in status["upgrade"]["error"]
    assert [r for r in lib.ranking(d) if not Path(r[0]).name.startswith("new")] == lib.before
    assert "the upgrade to resnet50-gem" in d.log()
    text = subprocess.run([sys.executable, "-m", "findsimilar", "status"], env=d.env,
                          capture_output=True, text=True, timeout=60).stdout
    assert "upgrade:    to resnet50-gem" in text
    assert d.terminate() == 0


@pytest.fixture
def small_disk(library: Library) -> Iterator[tuple[Path, Callable[[str], None]]]:
    """A tmpfs holding a copy of the Lite0 store with ~100 KB to spare (as root; skipped
    otherwise): (its data dir, a function that resizes it)."""
    mount = library.base / "disk"
    with small_tmpfs(mount, "8m") as resize:
        data = Path(shutil.copytree(library.base / "lite0-data", mount / "data"))
        st = os.statvfs(mount)
        resize(f"{(st.f_blocks - st.f_bfree) * st.f_frsize // 1024 + 100}k")
        yield data, resize


def test_a_full_disk_pauses_the_upgrade_and_it_goes_on_once_space_is_freed(
        library: Library, small_disk: tuple[Path, Callable[[str], None]]):
    lib, (data, resize) = library, small_disk
    # No extractor configured: this release's default, the upgrade every user of the
    # previous release gets.
    d = lib.daemon(data, FINDSIMILAR_UPGRADE_RETRY="1")
    d.start()
    status = wait_until(lambda: (s := d.status())["upgrade"]["failures"] and s, 180, 0.2,
                        lambda: f"{d.status()}\n{d.log()}")
    assert "full" in status["upgrade"]["error"] and "is full" in status["problem"]
    assert status["upgrade"]["to"] == NEW_DEFAULT
    assert status["model"] == LITE0 and 0 <= lib.vectors_of(NEW_DEFAULT, data) < 32
    ranking = [(m["path"], round(m["score"], 4))
               for m in d.search(lib.photos / QUERY, k=1000)]
    assert ranking == lib.before  # the old index answers throughout

    resize("64m")  # space is freed: the upgrade goes on by itself
    wait_until(lambda: d.status()["upgrade"]["state"] == "done", 180, 0.2,
               lambda: f"{d.status()}\n{d.log()}")
    status = d.status()
    assert status["model"] == NEW_DEFAULT and status["vectors"] == 32
    assert status["problem"] is None and "Traceback" not in d.log()
    # Edited copies still find their originals through the new index.
    assert d.search(lib.outside / OUTSIDE, k=1)[0]["path"] == str(lib.photos / OUTSIDE)
    assert d.terminate() == 0
