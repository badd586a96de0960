"""The store's connection policy: one writer shared by every thread (in turn), a
read-only reader per thread, and read-only opening that never writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from findsimilar.daemon.storage.store import Store
from findsimilar.daemon.storage.summary import read_summary
from findsimilar.errors import StoreError


def ok(path: str, content_hash: str) -> dict[str, object]:
    return {"path": path, "size": 1, "mtime_ns": 1, "inode": 1, "content_hash": content_hash,
            "status": "ok", "error": None}


@pytest.fixture
def store(tmp_path):
    # A lock held by a second connection would fail a write within 50 ms.
    opened = Store(tmp_path / "store.db", busy_timeout=0.05)
    yield opened
    opened.close()


def in_thread(fn):
    """Run ``fn`` on a new thread; returns (thread, outcome dict: "result" or "error")."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = fn()
        except Exception as exc:  # reported to the test, which asserts on it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_write_from_another_thread_waits_for_the_writer_instead_of_failing_as_locked(store):
    # With a connection of its own, the second write would meet SQLite's lock and give
    # up after the 50 ms busy timeout; through the one writer it waits its turn.
    with store.transaction():
        store.upsert_files([ok("/p/a.jpg", "h1")])
        thread, outcome = in_thread(lambda: store.add_root("/p", None, []))
        time.sleep(0.3)  # the other thread is blocked on the writer meanwhile
        assert thread.is_alive() and store.roots() == []
    thread.join(10)

    assert "error" not in outcome, outcome
    assert [r["path"] for r in store.roots()] == ["/p"]
    assert store.file("/p/a.jpg") is not None


def test_each_thread_reads_on_its_own_read_only_connection(store):
    store.upsert_files([ok("/p/a.jpg", "h1")])
    mine = store.db
    thread, outcome = in_thread(lambda: (store.db, store.file("/p/a.jpg")))
    thread.join(10)

    theirs, record = outcome["result"]
    assert mine is store.db and theirs is not mine
    assert record is not None and record.content_hash == "h1"
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        mine.execute("delete from files")
    assert store.file("/p/a.jpg") is not None


def test_reads_inside_a_transaction_see_its_own_uncommitted_writes(store):
    with store.transaction():
        store.upsert_files([ok("/p/a.jpg", "h1")])
        assert store.hash_in_use("h1")
        thread, outcome = in_thread(lambda: store.hash_in_use("h1"))
        thread.join(10)
        assert outcome["result"] is False  # other threads see only what is committed
    assert store.hash_in_use("h1")


def test_a_failed_transaction_leaves_the_writer_usable_from_any_thread(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.upsert_files([ok("/p/a.jpg", "h1")])
        raise RuntimeError("boom")
    thread, outcome = in_thread(lambda: store.set_setting("k", "v"))
    thread.join(10)

    assert "error" not in outcome and store.get_setting("k") == "v"
    assert store.file("/p/a.jpg") is None


def test_readers_of_threads_that_ended_are_closed_and_a_released_reader_is_gone(store):
    for _ in range(5):
        thread, _outcome = in_thread(lambda: store.counts())
        thread.join(10)
    store.counts()  # this thread's reader: opening it closes those of ended threads
    assert store._conns.reader_count == 1

    store.release_reader()
    assert store._conns.reader_count == 0
    assert store.counts()["files"] == 0  # a new reader is opened when needed


def store_file(folder: Path) -> tuple[bytes, int]:
    return (folder / "store.db").read_bytes(), (folder / "store.db").stat().st_mtime_ns


def test_reading_the_summary_writes_nothing_and_shares_the_stores_counts(tmp_path):
    data = tmp_path / "data"
    store = Store(data / "store.db")
    store.upsert_files([ok("/p/a.jpg", "h1"), ok("/p/b.jpg", "h1"),
                        {**ok("/p/c.jpg", "h2"), "status": "failed", "error": "bad"}])
    store.set_setting("extractor", "lite0")
    expected = {**store.counts(), "model": "lite0", "recent_failures": store.failures(20)}
    store.close()
    before = store_file(data)

    summary = read_summary(data / "store.db")

    assert summary == expected
    assert summary["unique_images"] == 1 and summary["failed"] == 1
    assert store_file(data) == before
    # SQLite may make the WAL's side files for a reader, but nothing is logged in them.
    wal = data / "store.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_damaged_store_read_for_the_summary_says_so_and_is_left_as_it_is(tmp_path):
    path = tmp_path / "store.db"
    path.write_bytes(b"\x8fnot a database at all\x00" * 500)

    with pytest.raises(StoreError, match="is damaged"):
        read_summary(path)
    assert path.read_bytes() == b"\x8fnot a database at all\x00" * 500
    assert [p.name for p in tmp_path.iterdir()] == ["store.db"]


def test_the_summary_reader_imports_neither_numpy_nor_sqlite_utils(tmp_path):
    Store(tmp_path / "store.db").close()
    code = ("import sys; from findsimilar.daemon.storage.summary import read_summary; "
            f"read_summary(__import__('pathlib').Path({str(tmp_path / 'store.db')!r})); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'sqlite_utils', 'torch', 'faiss')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
