"""Picture facts kept per content hash: what a keeper is chosen on.

Facts (``model.api.PictureFacts``) are learnt when a picture is decoded: at indexing,
or again before ``dupes`` chooses a keeper among pictures whose facts are not known
(content indexed by an older version). Kept by content, not by path, like the vectors:
a file relinked to known content (restored from the trash or by ``dupes undo``, moved
out of the tree and back, copied) has them at once. A row whose ``colour`` is NULL holds
only what older versions knew (sizes and format): its facts are *incomplete*.

Functions take the store's connection; ``Store`` calls them (the SQL lives here).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import sqlite_utils

__all__ = ["COLUMNS", "read", "save"]

# Facts as columns, in the order of model.api.PictureFacts (content as two sizes).
COLUMNS = ("width", "height", "format", "content_width", "content_height", "colour", "alpha",
           "sharpness", "make", "model", "taken", "lossless", "pixel_digest")


def read(db: sqlite_utils.Database, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The facts known of each of ``hashes`` (absent: none at all)."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(list(hashes), 500):
        marks = ",".join("?" * len(chunk))
        for r in db.query(f"select content_hash, {', '.join(COLUMNS)} from pictures "
                          f"where content_hash in ({marks})", chunk):
            found[r.pop("content_hash")] = r
    return found


def save(db: sqlite_utils.Database, facts: dict[str, dict[str, Any]]) -> None:
    """Record facts (columns as ``COLUMNS``) by content hash, in the caller's
    transaction. A pixel digest already known is kept when the new facts have none (it
    was computed on purpose); files of that content whose own sizes are unknown (rows
    relinked by an older version) get them too."""
    now = time.time()
    cols = ", ".join(COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "pixel_digest")
    db.conn.executemany(
        f"insert into pictures (content_hash, {cols}, updated_at) "
        f"values (?, {', '.join('?' * len(COLUMNS))}, ?) on conflict(content_hash) do update "
        f"set {updates}, pixel_digest = coalesce(excluded.pixel_digest, pixel_digest), "
        f"updated_at = excluded.updated_at",
        [(h, *(row.get(c) for c in COLUMNS), now) for h, row in facts.items()])
    db.conn.executemany(
        "update files set width = ?, height = ?, format = ?, content_width = ?, "
        "content_height = ? where content_hash = ? and status = 'ok' and width is null",
        [(row["width"], row["height"], row["format"], row.get("content_width"),
          row.get("content_height"), h) for h, row in facts.items()])


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
