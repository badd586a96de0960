"""What ``status`` shows of the store: counts, recent failures, the model.

The one definition of these queries: ``Store`` runs them on its connection, and the thin
client runs them through ``read_summary`` when no daemon runs. Stdlib only (no numpy,
no sqlite-utils), so ``findsimilar status`` stays light.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from findsimilar.daemon.storage.connect import open_reader
from findsimilar.daemon.storage.pathtext import to_path
from findsimilar.errors import FindSimilarError, store_damage

__all__ = ["counts", "failures", "read_summary", "setting"]

_COUNTS = ("select count(*), sum(status = 'ok'), sum(status = 'failed'), "
           "count(distinct case when status = 'ok' then content_hash end) from files")


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    """Files known, indexed (ok), failed, and distinct pictures among the indexed."""
    row = conn.execute(_COUNTS).fetchone()
    return {"files": row[0], "indexed": row[1] or 0, "failed": row[2] or 0,
            "unique_images": row[3] or 0}


def failures(conn: sqlite3.Connection, limit: int = 20) -> list[dict[str, str]]:
    """The first ``limit`` failed files by path: path and reason."""
    return [{"path": to_path(p), "error": e} for p, e in conn.execute(
        "select path, error from files where status = 'failed' order by path limit ?",
        [limit])]


def setting(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("select value from settings where key = ?", [key]).fetchone()
    return row[0] if row else None


def read_summary(path: Path) -> dict[str, Any]:
    """Counts, ``model`` and ``recent_failures`` of the store at ``path``, read without
    writing anything. Raises StoreError if SQLite says it is damaged, FindSimilarError
    if it cannot be read."""
    try:
        try:
            conn = open_reader(path, timeout=5)
            found = _summary(conn)
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc) or not path.exists() or os.access(
                    path.parent, os.W_OK):
                raise
            # A folder no one may write (read-only disk or permissions): nothing can
            # change the file, so it is read without the locks SQLite cannot set up.
            conn = open_reader(path, timeout=5, immutable=True)
            found = _summary(conn)
        return found
    except sqlite3.Error as exc:
        raise store_damage(path, exc) or FindSimilarError(
            f"cannot read the store {path}: {exc}") from None


def _summary(conn: sqlite3.Connection) -> dict[str, Any]:
    try:
        return {**counts(conn), "model": setting(conn, "extractor"),
                "recent_failures": failures(conn, 20)}
    finally:
        conn.close()
