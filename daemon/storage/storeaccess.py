"""When the store or the data dir cannot be written for a while, the work waits; it is
never dropped.

Three things stop writes without damaging anything, and each passes:

* another program holds the store's write lock (a `sqlite3` shell left in ``BEGIN
  IMMEDIATE``, a backup tool): SQLite waits its busy timeout (30 s) and gives up with
  ``database is locked``;
* the store, or the folder holding it, is read-only (permissions, a read-only mount):
  ``attempt to write a readonly database``;
* the data dir refuses new files (the index is saved as a temporary file, then renamed):
  ``PermissionError`` / ``EROFS``.

Before, a locked store cost the batch of file events in hand (50 photos copied while a
shell held the lock were never indexed, with ``status`` saying idle), and a read-only data
dir ended in tracebacks. Now the indexing thread keeps the task it was running, says why
in ``status`` (``problem``) and the log (once), checks every few seconds whether the
store can be written again, and then runs the task again (tasks are idempotent: a
re-run skips what was committed). The full disk has its own pause (``diskspace``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

from findsimilar.daemon.storage.connect import can_write

__all__ = ["StoreAccess"]

log = logging.getLogger(__name__)

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY, _SQLITE_CANTOPEN = 5, 6, 8, 14
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


class StoreAccess:
    """Whether the store and the data dir can be written, as far as the last writes could
    tell: by the indexing thread (``"store"``) and by the index saves (``"save"``)."""

    def __init__(self, store_path: Path) -> None:
        self.store_path = store_path
        self.data_dir = store_path.parent
        self._problems: dict[str, str] = {}
        self.reopen_needed = False  # a read-only connection stays read-only: open anew

    @property
    def problem(self) -> str | None:
        """The reason shown in ``status``, or None while writes succeed."""
        return "; ".join(dict.fromkeys(self._problems.values())) or None

    def classify(self, exc: BaseException) -> str | None:
        """The words for ``exc`` if it is a write refused for one of the passing reasons
        above, else None."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            primary = code & 0xFF
            if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
                return (f"the store {self.store_path} is locked by another program"
                        f"{_holder(self.store_path)}: indexing waits until it lets go")
            if primary in (_SQLITE_READONLY, _SQLITE_CANTOPEN):
                return (f"the store {self.store_path} cannot be written ({exc}): indexing "
                        f"waits; check the permissions of {self.data_dir} and the files "
                        "in it, and that its disk is mounted read-write")
            return None
        if isinstance(exc, OSError) and exc.errno in _UNWRITABLE and _inside(
                exc.filename, self.data_dir):
            return (f"cannot write in the data dir {self.data_dir} ({exc.strerror}): check "
                    "its permissions, and that its disk is mounted read-write")
        return None

    def report(self, kind: str, problem: str) -> None:
        """Record ``problem`` of the writes of ``kind``; logged once until they succeed."""
        if self._problems.get(kind) != problem:
            log.error("%s", problem)
        self._problems[kind] = problem
        if "cannot be written" in problem:
            self.reopen_needed = True

    def writable(self) -> bool:
        """True if a write transaction can be started on the store now (and the data dir
        takes new files): the test before a waiting task is run again."""
        return os.access(self.data_dir, os.W_OK) and can_write(self.store_path)

    def resume(self, kind: str) -> None:
        """The writes of ``kind`` succeed again."""
        if self._problems.pop(kind, None) is not None:
            log.info("%s", "the store can be written again: indexing resumes" if kind ==
                     "store" else f"the index is saved in {self.data_dir} again")


def _inside(filename: object, folder: Path) -> bool:
    if not isinstance(filename, (str, bytes, os.PathLike)):
        return False
    path = os.path.abspath(os.fsdecode(filename))
    return path == str(folder) or path.startswith(str(folder).rstrip("/") + "/")


def _holder(store: Path) -> str:
    """" (pid N, NAME)" of another process holding a lock on the store or its WAL index
    (from /proc/locks), or "" if it cannot be told."""
    inodes = set()
    for name in (store.name, store.name + "-shm", store.name + "-wal"):
        with contextlib.suppress(OSError):
            inodes.add(os.stat(store.with_name(name)).st_ino)
    try:
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        # "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120"
        if len(fields) < 6 or "->" in fields[1]:
            continue
        with contextlib.suppress(ValueError, IndexError):
            pid, inode = int(fields[4]), int(fields[5].split(":")[2])
            if inode in inodes and pid != os.getpid():
                return f" (pid {pid}, {_command(pid)})"
    return ""


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or "?"
    except OSError:
        return "?"
