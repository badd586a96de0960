"""The store's schema, as sqlite-utils migrations (each runs once, in order, when
``Store`` opens the store; readers never migrate), and the row shape of a file."""

from __future__ import annotations

from dataclasses import dataclass

import sqlite_utils
from sqlite_utils import Migrations

__all__ = ["FileRecord", "migrations"]

migrations = Migrations("findsimilar")


@migrations()
def m001_files_and_features(db: sqlite_utils.Database) -> None:
    db["files"].create({  # type: ignore[union-attr]
        "id": int, "path": str, "size": int, "mtime_ns": int, "inode": int,
        "content_hash": str, "status": str, "error": str, "format": str,
        "width": int, "height": int, "updated_at": float,
    }, pk="id", not_null={"path", "status"})
    db["files"].create_index(["path"], unique=True)  # type: ignore[union-attr]
    db["files"].create_index(["content_hash"])  # type: ignore[union-attr]
    db["files"].create_index(["status"])  # type: ignore[union-attr]
    db["features"].create({  # type: ignore[union-attr]
        "id": int, "content_hash": str, "extractor": str, "vector": bytes,
        "created_at": float,
    }, pk="id", not_null={"content_hash", "extractor", "vector"})
    db["features"].create_index(["content_hash", "extractor"], unique=True)  # type: ignore[union-attr]
    db["settings"].create({"key": str, "value": str}, pk="key")  # type: ignore[union-attr]


@migrations()
def m002_watched_roots(db: sqlite_utils.Database) -> None:
    db["roots"].create({  # type: ignore[union-attr]
        "path": str, "dev": int, "excludes": str, "added_at": float,
    }, pk="path")


@migrations()
def m003_no_status_index(db: sqlite_utils.Database) -> None:
    # Without ANALYZE statistics SQLite drove the correlated EXISTS of
    # indexed_feature_ids through idx_files_status ('ok' matches every row):
    # files x features, 7 s at 10k photos on every daemon start. Only failed rows
    # are ever looked up by status, so a partial index serves them.
    db.execute("drop index if exists idx_files_status")
    db.execute("create index if not exists idx_files_failed on files(path) "
               "where status = 'failed'")


@migrations()
def m004_duplicates(db: sqlite_utils.Database) -> None:
    # Verdicts of the pixel-level check, keyed by content (rename-safe) and verifier
    # version: a pair is checked once, ever, until the verifier changes.
    db.execute("create table if not exists pair_scores (hash_a text not null, "
               "hash_b text not null, verifier text not null, score real not null, "
               "primary key (hash_a, hash_b, verifier)) without rowid")
    # Pairs the user said are not duplicates (hash_a <= hash_b; equal for "these
    # identical copies are deliberate").
    db.execute("create table if not exists not_duplicates (hash_a text not null, "
               "hash_b text not null, created_at real not null, "
               "primary key (hash_a, hash_b)) without rowid")


@migrations()
def m005_content_size(db: sqlite_utils.Database) -> None:
    # The picture's size inside solid borders (letterbox bars, frames), for keepers.
    db.execute("alter table files add column content_width integer")
    db.execute("alter table files add column content_height integer")


@migrations()
def m006_change_facts(db: sqlite_utils.Database) -> None:
    # ctime: see the docstring of store.py. NULL for rows made before it was recorded (and
    # for files that could not be read).
    db.execute("alter table files add column ctime_ns integer")
    # A watched folder is a path *and* the folder that was there: its inode, and the
    # mount point of the filesystem holding it (an empty mount point is not the disk).
    db.execute("alter table roots add column ino integer")
    db.execute("alter table roots add column mount text")


@migrations()
def m007_picture_facts(db: sqlite_utils.Database) -> None:
    # What a keeper is chosen on, per content (pictures.py): a file relinked to known
    # content (restored, moved back, copied) has them without being decoded again.
    db.execute("create table if not exists pictures (content_hash text primary key, "
               "width integer, height integer, format text, content_width integer, "
               "content_height integer, colour integer, alpha integer, sharpness real, "
               "make text, model text, taken text, lossless integer, pixel_digest text, "
               "updated_at real) without rowid")
    # What older versions knew (sizes and format): the rest is NULL, so the picture is
    # decoded again before a keeper is chosen on it.
    db.execute("insert or ignore into pictures (content_hash, width, height, format, "
               "content_width, content_height) select content_hash, max(width), max(height), "
               "max(format), max(content_width), max(content_height) from files "
               "where status = 'ok' and content_hash is not null and width is not null "
               "group by content_hash")


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int | None
    mtime_ns: int | None
    status: str  # "ok" | "failed"
    content_hash: str | None
    error: str | None
    inode: int | None = None
    ctime_ns: int | None = None
