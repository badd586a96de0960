"""The store's connection policy: one writer shared by every thread, a reader per thread.

* **One writer.** SQLite lets one connection write at a time anyway; with one writer
  connection and a lock, a write from a client thread (``watch add``, a "not
  duplicates" mark, the verdict cache) waits its turn behind the indexing thread's
  transaction in this process instead of spinning in SQLite's busy handler against a
  second connection, and a lock held by *another program* is the only ``database is
  locked`` left (so ``status`` never blames one for our own transaction). A thread
  holds the writer for one write, or for a whole ``Store.transaction()``; reads made
  while it holds it go to the writer, so a transaction sees its own changes.
* **A reader per thread**, opened read-only on first use (``connect.open_reader``):
  searches never wait for the writer (WAL), and no write can go through a reader
  (SQLite refuses it). Readers of threads that have ended are closed when the next
  reader is opened; a long-lived server thread that ends closes its own with
  ``release_reader``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from findsimilar.daemon.storage.connect import open_reader, open_writer

__all__ = ["Connections"]


class Connections:
    """The writer and the per-thread readers of one store file."""

    def __init__(self, path: Path, busy_timeout: float) -> None:
        """Open the writer (creating the file if missing); raises sqlite3.Error."""
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._held = threading.local()  # .depth: how deep the calling thread holds the writer
        self._readers: dict[threading.Thread, sqlite_utils.Database] = {}
        self._readers_lock = threading.Lock()
        self.writer = sqlite_utils.Database(open_writer(path, busy_timeout))

    def current(self) -> sqlite_utils.Database:
        """The connection for the calling thread's reads: the writer while this thread
        holds it, else this thread's reader."""
        return self.writer if getattr(self._held, "depth", 0) else self.reader()

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite_utils.Database]:
        """Hold the writer (re-entrant: a write inside a transaction nests)."""
        with self._lock:
            self._held.depth = getattr(self._held, "depth", 0) + 1
            try:
                yield self.writer
            finally:
                self._held.depth -= 1

    def reader(self) -> sqlite_utils.Database:
        """The calling thread's read-only connection, opened on first use."""
        me = threading.current_thread()
        db = self._readers.get(me)
        if db is None:
            db = sqlite_utils.Database(open_reader(self.path, self.busy_timeout))
            with self._readers_lock:
                for thread in [t for t in self._readers if not t.is_alive()]:
                    with contextlib.suppress(Exception):
                        self._readers.pop(thread).close()
                self._readers[me] = db
        return db

    @property
    def reader_count(self) -> int:
        """Readers open now (for tests and diagnostics)."""
        return len(self._readers)

    def release_reader(self) -> None:
        """Close the calling thread's reader, if it has one (a thread that ends)."""
        with self._readers_lock:
            db = self._readers.pop(threading.current_thread(), None)
        if db is not None:
            db.close()

    def reopen_writer(self) -> None:
        """Open the writer anew (one opened while the store was read-only stays
        read-only after its permissions are fixed). Raises sqlite3.Error, keeping the
        old writer, if it cannot be opened."""
        with self._lock:
            new = sqlite_utils.Database(open_writer(self.path, self.busy_timeout))
            old, self.writer = self.writer, new
        with contextlib.suppress(Exception):
            old.close()

    def close(self) -> None:
        """Close the writer and every reader."""
        with self._readers_lock:
            readers, self._readers = list(self._readers.values()), {}
        for db in readers:
            with contextlib.suppress(Exception):
                db.close()
        with self._lock:
            self.writer.close()
