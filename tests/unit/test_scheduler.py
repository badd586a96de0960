"""The indexing thread's queue (daemon/service/scheduler.py): merging, the full-disk
pause, waiting for a locked store, stopping. A real Scheduler and thread, real SQLite;
the work is a recorder, since these are the queue's own rules (the real work runs in the
integration tests)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from findsimilar.daemon.indexing.indexer import IndexSummary
from findsimilar.daemon.indexing.watcher import Delete, Upsert
from findsimilar.daemon.service.scheduler import (
    ApplyEvents,
    IndexPaths,
    Precheck,
    Reconcile,
    Scheduler,
)
from findsimilar.daemon.storage.diskspace import DiskFull, DiskFullError
from findsimilar.daemon.storage.storeaccess import StoreAccess


class Recorder:
    """Stands in for Work: records what the tasks ask of it."""

    engine = None

    def __init__(self, store: Path) -> None:
        self.store = store
        self.calls: list[tuple[str, object]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def reconcile(self, paths: list[str] | None, rehash: bool) -> dict:
        self.entered.set()
        self.gate.wait(10)
        self.calls.append(("reconcile", paths))
        return {}

    def apply(self, ops: list) -> int:
        # A real write: fails with "database is locked" while another program holds it.
        conn = sqlite3.connect(self.store, timeout=0)
        try:
            with conn:
                conn.execute("insert into t values (?)", [len(ops)])
        finally:
            conn.close()
        self.calls.append(("apply", list(ops)))
        return len(ops)

    def index(self, paths: list[str], state: str, rehash: bool = False,
              skip: list[str] | None = None) -> IndexSummary:
        self.calls.append(("index", paths))
        return IndexSummary(new=len(paths))

    def precheck(self, generation: int) -> dict:
        self.calls.append(("precheck", generation))
        return {}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Scheduler, Recorder, threading.Event]]:
    store = tmp_path / "store.db"
    conn = sqlite3.connect(store)
    conn.execute("pragma journal_mode=wal")
    conn.execute("create table t (n)")
    conn.close()
    stopping = threading.Event()
    scheduler = Scheduler(store, DiskFull(tmp_path), StoreAccess(store), stopping,
                          on_damage=lambda error: None)
    work = Recorder(store)
    scheduler.start(work)  # type: ignore[arg-type]
    yield scheduler, work, stopping
    work.gate.set()
    assert scheduler.quit(timeout=20)


def test_file_events_queued_behind_each_other_are_applied_in_one_pass(setup):
    scheduler, work, _ = setup
    work.gate.clear()
    busy = scheduler.put(Reconcile())
    events = [scheduler.put(ApplyEvents([Upsert(f"/p/{i}.jpg")])) for i in range(3)]
    work.gate.set()
    busy.done.result(10)
    assert events[0].done.result(10) == 3
    assert work.calls == [("reconcile", None),
                          ("apply", [Upsert("/p/0.jpg"), Upsert("/p/1.jpg"), Upsert("/p/2.jpg")])]


def test_events_are_not_merged_across_another_kind_of_task(setup):
    scheduler, work, _ = setup
    work.gate.clear()
    first = scheduler.put(Reconcile(["/a"]))
    scheduler.put(ApplyEvents([Delete("/p/x.jpg")]))
    scheduler.put(Reconcile(["/b"]))
    last = scheduler.put(ApplyEvents([Delete("/p/y.jpg")]))
    work.gate.set()
    first.done.result(10)
    last.done.result(10)
    assert [c[0] for c in work.calls] == ["reconcile", "apply", "reconcile", "apply"]


def test_a_full_disk_skips_indexing_refuses_a_client_and_still_runs_the_precheck(setup):
    scheduler, work, _ = setup
    scheduler.disk.problem = "the disk holding /data is full"
    assert scheduler.put(Reconcile()).done.result(10) is None
    with pytest.raises(DiskFullError):
        scheduler.put(IndexPaths(["/p"])).done.result(10)
    scheduler.put(Precheck(7)).done.result(10)
    assert work.calls == [("precheck", 7)]


def test_a_task_that_finds_the_store_locked_waits_and_runs_again_losing_nothing(setup):
    scheduler, work, _ = setup
    locker = sqlite3.connect(work.store, timeout=0, isolation_level=None)
    locker.execute("begin immediate")
    events = scheduler.put(ApplyEvents([Upsert("/p/a.jpg"), Upsert("/p/b.jpg")]))
    deadline = time.monotonic() + 10
    while scheduler.progress.state != "waiting" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scheduler.progress.state == "waiting"
    assert scheduler.queued() == 2  # the held events still count
    assert "locked by another program" in (scheduler.access.problem or "")
    assert not events.done.done()
    locker.execute("rollback")
    locker.close()
    assert events.done.result(15) == 2
    assert scheduler.access.problem is None
    assert work.calls == [("apply", [Upsert("/p/a.jpg"), Upsert("/p/b.jpg")])]


def test_once_stopping_only_a_clients_index_still_runs(setup):
    scheduler, work, stopping = setup
    work.gate.clear()
    busy = scheduler.put(Reconcile())
    dropped = scheduler.put(ApplyEvents([Upsert("/p/a.jpg")]))
    wanted = scheduler.put(IndexPaths(["/p/b.jpg"]))
    assert work.entered.wait(10)  # the reconcile runs: it is finished, not dropped
    stopping.set()
    work.gate.set()
    busy.done.result(10)
    assert wanted.done.result(10)["new"] == 1
    assert dropped.done.cancelled()


def test_each_task_kind_says_how_it_behaves():
    assert (Reconcile.while_paused, ApplyEvents.while_paused, IndexPaths.while_paused,
            Precheck.while_paused) == ("skip", "skip", "refuse", "run")
    assert Reconcile.writes and ApplyEvents.writes and IndexPaths.writes
    assert not Precheck.writes  # neither waits for the store nor starts a generation


def test_queue_age_counts_from_when_the_oldest_unfinished_work_was_queued(setup):
    scheduler, work, _ = setup
    assert scheduler.waiting() == {"tasks": 0, "age_s": None}
    work.gate.clear()
    running = scheduler.put(Reconcile())
    assert work.entered.wait(10)
    scheduler.put(Precheck(1))  # the background duplicate check is not indexing work
    behind = scheduler.put(IndexPaths(["/p"]))
    running.queued_at -= 30  # as if queued half a minute ago
    waiting = scheduler.waiting()
    assert waiting["tasks"] == 2 and 30 <= waiting["age_s"] < 60
    work.gate.set()
    behind.done.result(10)
    deadline = time.monotonic() + 10
    while scheduler.waiting()["tasks"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scheduler.waiting() == {"tasks": 0, "age_s": None}
