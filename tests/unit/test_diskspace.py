"""Telling a full disk from other write errors, and when to try writing again."""

from __future__ import annotations

import errno
import sqlite3

from findsimilar.daemon.storage import diskspace
from findsimilar.daemon.storage.diskspace import DiskFull, DiskFullError


def sqlite_full_error(tmp_path) -> sqlite3.OperationalError:
    conn = sqlite3.connect(tmp_path / "full.db")
    conn.execute("create table t (x blob)")
    conn.execute("pragma max_page_count = 3")  # a database that cannot grow: SQLITE_FULL
    try:
        with conn:
            conn.execute("insert into t values (zeroblob(100000))")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("no SQLITE_FULL")


def test_no_space_errors_from_the_os_sqlite_and_faiss_are_a_full_disk(tmp_path):
    full = DiskFull(tmp_path)
    faiss_text = ("Error in faiss::write_index: 'ret == (size * 4)' failed: write error in "
                  "/data/index.faiss: 2097070 != 5120000 (No space left on device)")

    assert full.caused(OSError(errno.ENOSPC, "No space left on device"))
    assert full.caused(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert full.caused(sqlite_full_error(tmp_path))
    assert full.caused(RuntimeError(faiss_text))


def test_other_errors_are_not_a_full_disk(tmp_path):
    full = DiskFull(tmp_path)

    assert not full.caused(OSError(errno.EACCES, "Permission denied"))
    assert not full.caused(sqlite3.OperationalError("database is locked"))
    assert not full.caused(RuntimeError("Error: 'ret == (n)' failed: read error"))
    assert not full.caused(ValueError("No space left on device"))


def test_a_full_disk_is_logged_once_and_resumed_only_when_space_comes_back(
        tmp_path, monkeypatch, caplog):
    free = {"bytes": 1000}
    monkeypatch.setattr(DiskFull, "free", lambda self: free["bytes"])
    full = DiskFull(tmp_path)

    errors = [full.report("indexing") for _ in range(3)]

    assert all(isinstance(e, DiskFullError) and "is full" in str(e) for e in errors)
    assert full.problem and str(tmp_path) in full.problem
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    free["bytes"] += 1024 * 1024
    assert not full.space_back()  # a few files deleted: not enough to go on
    free["bytes"] += diskspace._MARGIN
    assert full.space_back()
    full.resume()
    assert full.problem is None and not full.space_back()


def test_the_free_space_of_a_missing_folder_is_zero(tmp_path):
    assert DiskFull(tmp_path / "gone").free() == 0
