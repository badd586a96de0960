"""How the store's SQLite file is opened: the one place that calls ``sqlite3.connect``.

Three ways, one per use:

* ``open_writer``: the one connection that writes (WAL journal, so readers never wait
  for it; a write waits ``busy_timeout`` seconds for another program's lock);
* ``open_reader``: a read-only connection (``mode=ro``): SQLite refuses any write made
  through it, and opening it creates or changes nothing (a damaged store is left
  exactly as it is, and ``status`` works on a store it may not write);
* ``can_write``: whether a write transaction could start now, tried on a connection of
  its own (the writer may have been opened while the store was read-only, and stays so).

Stdlib only, like ``summary``: the thin client reads the store through these when no
daemon runs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

__all__ = ["can_write", "open_reader", "open_writer"]


def open_writer(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """A read-write connection, usable from any thread (the caller serialises its use),
    in WAL mode. Creates the file if missing; raises sqlite3.Error as SQLite does."""
    conn = sqlite3.connect(str(path), timeout=busy_timeout, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def open_reader(path: Path, timeout: float = 30.0, *,
                immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection (it may be used from another thread than its opener's,
    e.g. to close it). Raises sqlite3.Error if the file is missing or unreadable.
    ``immutable``: for a store no one can write (its folder is read-only: SQLite cannot
    make the WAL index it needs to read with locks), read without locks."""
    flags = "mode=ro&immutable=1" if immutable else "mode=ro"
    return sqlite3.connect(f"file:{quote(str(path))}?{flags}", uri=True, timeout=timeout,
                           check_same_thread=False)


def can_write(path: Path, timeout: float = 0.5) -> bool:
    """True if a write transaction can be started on the store now (nothing is written:
    it is rolled back at once)."""
    try:
        conn = sqlite3.connect(str(path), timeout=timeout)
    except sqlite3.Error:
        return False
    try:
        conn.execute("begin immediate")
        conn.execute("rollback")
        return True
    except sqlite3.Error:
        return False
    finally:
        conn.close()
