"""What counts as a change of a file (daemon/indexing/indexer.py and pipeline.py), on plain
rows and real files."""

from __future__ import annotations

import errno
import os

from findsimilar.daemon.indexing.indexer import _same_file
from findsimilar.daemon.indexing.pipeline import Prepared, _unopened
from findsimilar.daemon.indexing.scanner import ScannedFile
from findsimilar.daemon.storage.store import FileRecord

SCANNED = ScannedFile("/p/a.jpg", size=100, mtime_ns=5, inode=7, ctime_ns=9)


def record(status: str = "ok", **facts: int | None) -> FileRecord:
    base = {"size": 100, "mtime_ns": 5, "inode": 7, "ctime_ns": 9}
    base.update(facts)
    return FileRecord("/p/a.jpg", status=status, content_hash="h", error=None, **base)


def test_a_file_is_unchanged_only_if_inode_size_mtime_and_ctime_all_match():
    assert _same_file(record(), SCANNED)
    for fact, other in (("size", 101), ("mtime_ns", 6), ("inode", 8), ("ctime_ns", 10)):
        assert not _same_file(record(**{fact: other}), SCANNED), fact


def test_a_row_from_before_ctimes_is_taken_as_it_is_once_but_a_failure_is_tried_again():
    assert _same_file(record(ctime_ns=None), SCANNED)
    assert not _same_file(record(ctime_ns=None, inode=8), SCANNED)
    assert not _same_file(record("failed", ctime_ns=None), SCANNED)
    assert not _same_file(record("failed", size=None, mtime_ns=None, inode=None,
                                 ctime_ns=None), SCANNED)


def test_a_file_gone_before_it_was_opened_stores_nothing(tmp_path):
    gone = Prepared(str(tmp_path / "gone.jpg"), 100, 5, 7, 9)
    item = _unopened(gone, OSError(errno.ENOENT, "No such file or directory"))
    assert item.unsettled and item.error is None


def test_a_file_that_cannot_be_opened_keeps_the_facts_of_what_is_there_now(tmp_path):
    path = tmp_path / "locked.jpg"
    path.write_bytes(b"12345")
    item = _unopened(Prepared(str(path), 100, 5, 7, 9),
                     OSError(errno.EACCES, "Permission denied"))
    st = os.lstat(path)
    assert item.error == "cannot open: Permission denied"
    assert (item.size, item.mtime_ns, item.inode, item.ctime_ns) == (
        st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)  # not the scan's
