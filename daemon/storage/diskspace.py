"""A full disk under the data dir: one clear error, shown in ``status``, and a retry once
space has been freed.

Nothing is damaged by a full disk: SQLite rolls back the transaction that could not be
written, and the index is saved to a temporary file that replaces the old one only when
complete. So the daemon pauses indexing (queries go on: they only read), skips the file
events it sees meanwhile, and once clearly more space is free it reconciles the watched
folders, which picks up everything it skipped.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path

from findsimilar.errors import FindSimilarError
from findsimilar.text import human_size

__all__ = ["DiskFull", "DiskFullError"]

log = logging.getLogger(__name__)

_SQLITE_IOERR, _SQLITE_FULL = 10, 13
# Free space that must come back before indexing is tried again: less would fill up
# again within a batch or two.
_MARGIN = 8 * 1024 * 1024
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
# Tried again after this long even if statvfs shows no more space (a quota it cannot see).
_RETRY_AFTER = 600.0


class DiskFullError(FindSimilarError):
    """A write failed because the disk holding the data dir is full."""


class DiskFull:
    """Whether the data dir's disk is full, as far as the last write could tell."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.problem: str | None = None  # for status; None while writes succeed
        self._free_then = 0
        self._failed_at = 0.0

    def caused(self, exc: BaseException) -> bool:
        """True if ``exc`` is a write that failed for lack of space: ENOSPC or EDQUOT,
        SQLite's SQLITE_FULL (or an I/O error with no space left: growing its shared
        memory file), or FAISS's RuntimeError quoting the errno's text."""
        if isinstance(exc, OSError):
            return exc.errno in _NO_SPACE
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF == _SQLITE_FULL or (
                code & 0xFF == _SQLITE_IOERR and self.free() < _MARGIN)
        return isinstance(exc, RuntimeError) and any(
            os.strerror(e) in str(exc) for e in _NO_SPACE)

    def report(self, what: str) -> DiskFullError:
        """Record that ``what`` failed for lack of space; logs once until space is back.
        Returns the error to hand to a client that waited for the work."""
        free = self.free()
        if self.problem is None:
            log.error("%s: the disk holding %s is full (%s free). Indexing is paused and "
                      "searches go on; it resumes by itself once space is freed",
                      what, self.folder, human_size(free))
        self.problem = (f"the disk holding {self.folder} is full ({human_size(free)} free): "
                        "indexing is paused until space is freed")
        self._free_then, self._failed_at = free, time.monotonic()
        return DiskFullError(self.problem)

    def space_back(self) -> bool:
        """True while paused if clearly more space is free than when writing failed (or
        after ten minutes: a quota does not show in the free space)."""
        return self.problem is not None and (
            self.free() >= self._free_then + _MARGIN
            or time.monotonic() - self._failed_at >= _RETRY_AFTER)

    def resume(self) -> None:
        log.info("%s free in %s again: indexing resumes", human_size(self.free()), self.folder)
        self.problem = None

    def free(self) -> int:
        try:
            st = os.statvfs(self.folder)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize
