"""The SQLite store: the single source of truth.

Two ideas shape the schema:

* **Files are not features.** ``files`` says where a picture lives (path, size,
  mtime, content hash, status); ``features`` holds one vector per
  (content hash, extractor). Identical files share a vector, and a renamed or
  moved file is re-linked by its hash without running the model.
* **Status is data.** A file that cannot be decoded is a ``failed`` row with a
  reason; it is retried only when the file changes.
* **A change is a change of any of inode, size, mtime or ctime.** Size and mtime
  alone miss a rewrite that keeps both (``cat other > a.jpg; touch -d ...``; an EXIF
  edit with ``exiftool -P``); the kernel sets ctime on every write, rename, chmod or
  link, and no user can set it back. A row's facts are those of the file as it was
  read: a file that could not be read is stored without them, so it is tried again.

The FAISS index stores feature ids; it is a cache rebuilt from here.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils
from sqlite_utils import Migrations

from findsimilar.errors import StoreError, store_damage

__all__ = ["FileRecord", "Store", "migrations"]

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
    # ctime: see the module docstring. NULL for rows made before it was recorded (and
    # for files that could not be read).
    db.execute("alter table files add column ctime_ns integer")
    # A watched folder is a path *and* the folder that was there: its inode, and the
    # mount point of the filesystem holding it (an empty mount point is not the disk).
    db.execute("alter table roots add column ino integer")
    db.execute("alter table roots add column mount text")


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


_RECORD = "path, size, mtime_ns, status, content_hash, error, inode, ctime_ns"


class Store:
    """Typed access to the store; every write method is one transaction."""

    def __init__(self, path: Path | str, busy_timeout: float = 30.0) -> None:
        """Open (creating or migrating) the store; a write waits ``busy_timeout`` seconds
        for another connection's lock before it fails with ``database is locked``."""
        self.path = Path(path)
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=busy_timeout,
                                   check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            migrations.apply(self.db)
        except sqlite3.DatabaseError as exc:
            # Close before raising so no handle on the damaged file lingers; it is never
            # deleted or rewritten here, the user decides what to do with it.
            if conn is not None:
                conn.close()
            raise store_damage(self.path, exc) or StoreError(
                f"cannot open the store {self.path}: {exc}" + (
                    " (it must be writable: check the permissions of the file and its "
                    "folder, and that the disk is mounted read-write)"
                    if "readonly" in str(exc) or "unable to open" in str(exc) else "")
            ) from exc

    def close(self) -> None:
        self.db.close()

    # -- files ---------------------------------------------------------------
    def file(self, path: str) -> FileRecord | None:
        rows = list(self.db.query(f"select {_RECORD} from files where path = ?", [path]))
        return FileRecord(**rows[0]) if rows else None

    def files_under(self, root: str) -> Iterator[FileRecord]:
        """Every file at ``root`` or below it (``root`` is an absolute path)."""
        sql = f"select {_RECORD} from files where {_UNDER}"
        for row in self.db.query(sql, _under_params(root)):
            yield FileRecord(**row)

    def upsert_files(self, rows: Iterable[dict[str, object]]) -> None:
        now = time.time()
        records = [{**r, "updated_at": now} for r in rows]
        if records:
            self.db["files"].upsert_all(records, pk="path", alter=False)  # type: ignore[union-attr]

    def adopt_ctimes(self, facts: Iterable[tuple[str, int]]) -> None:
        """Record the ctime of files whose stored inode, size and mtime still match (rows
        from before ctime was recorded; files renamed by a watched move)."""
        with self.db.atomic():
            self.db.conn.executemany("update files set ctime_ns = ? where path = ?",
                                     [(ctime, path) for path, ctime in facts])

    def delete_files(self, paths: Iterable[str]) -> set[str]:
        """Delete file rows; return the content hashes that no ok file uses any more."""
        paths = list(paths)
        hashes: set[str] = set()
        with self.db.atomic():
            for chunk in _chunks(paths, 500):
                marks = ",".join("?" * len(chunk))
                hashes.update(r["content_hash"] for r in self.db.query(
                    f"select distinct content_hash from files where path in ({marks}) "
                    "and content_hash is not null", chunk))
                self.db.execute(f"delete from files where path in ({marks})", chunk)
        return {h for h in hashes if not self.hash_in_use(h)}

    def move_path(self, src: str, dst: str) -> tuple[int, set[str]]:
        """Re-point a file, or a folder and everything under it, from ``src`` to ``dst``.

        Rows already at the destination are replaced (the move overwrote them).
        Returns (rows moved, content hashes no ok file uses any more).
        """
        src, dst = src.rstrip("/") or "/", dst.rstrip("/") or "/"
        moving = [r.path for r in self.files_under(src)]
        if not moving:
            return 0, set()
        targets = [dst + p[len(src):] for p in moving]
        with self.db.atomic():
            orphans = self.delete_files(t for t in targets if t not in set(moving))
            for chunk in _chunks(moving, 500):
                marks = ",".join("?" * len(chunk))
                self.db.execute(
                    f"update files set path = ? || substr(path, ?) where path in ({marks})",
                    [dst, len(src) + 1, *chunk])
        return len(moving), {h for h in orphans if not self.hash_in_use(h)}

    # -- watched roots -----------------------------------------------------------
    def roots(self) -> list[dict[str, object]]:
        """The watched folders: path, excludes, and the identity of the folder that was
        there (dev, ino, mount; None where not known yet)."""
        return [{**r, "excludes": json.loads(r["excludes"] or "[]")} for r in self.db.query(
            "select path, dev, ino, mount, excludes from roots order by path")]

    def add_root(self, path: str, identity: tuple[int, int, str] | None,
                 excludes: list[str]) -> None:
        dev, ino, mount = identity or (None, None, None)
        self.db["roots"].upsert(  # type: ignore[union-attr]
            {"path": path, "dev": dev, "ino": ino, "mount": mount,
             "excludes": json.dumps(excludes), "added_at": time.time()}, pk="path")

    def set_root_identity(self, path: str, identity: tuple[int, int, str]) -> None:
        """The folder at a watched path is now this one (it was remounted, or recreated)."""
        dev, ino, mount = identity
        with self.db.atomic():
            self.db.execute("update roots set dev = ?, ino = ?, mount = ? where path = ?",
                            [dev, ino, mount, path])

    def remove_root(self, path: str) -> bool:
        with self.db.atomic():
            found = bool(list(self.db.query("select 1 from roots where path = ?", [path])))
            self.db.execute("delete from roots where path = ?", [path])
        return found

    def image_info(self, hashes: Iterable[str]) -> dict[str, dict[str, object]]:
        """Format, width, height and content size known for each content hash (from any
        of its files)."""
        info: dict[str, dict[str, object]] = {}
        for chunk in _chunks(list(hashes), 500):
            marks = ",".join("?" * len(chunk))
            for r in self.db.query(
                    f"select content_hash, format, width, height, content_width, content_height "
                    f"from files where status = 'ok' "
                    f"and width is not null and content_hash in ({marks})", chunk):
                info[r.pop("content_hash")] = r
        return info

    def hash_in_use(self, content_hash: str) -> bool:
        return bool(list(self.db.query(
            "select 1 from files where content_hash = ? and status = 'ok' limit 1",
            [content_hash])))

    def paths_for_hash(self, content_hash: str) -> list[str]:
        return [r["path"] for r in self.db.query(
            "select path from files where content_hash = ? and status = 'ok' order by path",
            [content_hash])]

    def hashes_needing_features(self, extractor: str) -> list[str]:
        """Hashes of ok files that have no vector for ``extractor`` (a model change)."""
        return [r["content_hash"] for r in self.db.query(
            "select distinct f.content_hash from files f where f.status = 'ok' and not exists "
            "(select 1 from features x where x.content_hash = f.content_hash and x.extractor = ?)",
            [extractor])]

    # -- features ------------------------------------------------------------
    def feature_ids(self, hashes: Iterable[str], extractor: str) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(list(hashes), 500):
            marks = ",".join("?" * len(chunk))
            for r in self.db.query(
                    f"select id, content_hash from features where extractor = ? "
                    f"and content_hash in ({marks})", [extractor, *chunk]):
                found[r["content_hash"]] = r["id"]
        return found

    def add_features(self, extractor: str, items: list[tuple[str, np.ndarray]]) -> list[int]:
        """Insert vectors (hash, float32 vector); returns their feature ids in order."""
        now = time.time()
        ids = []
        # An explicit transaction: sqlite-utils only auto-commits statements without result
        # rows, so a bare ``insert ... returning`` would stay uncommitted and be lost on close.
        with self.db.atomic():
            for content_hash, vector in items:
                cur = self.db.execute(
                    "insert into features (content_hash, extractor, vector, created_at) "
                    "values (?, ?, ?, ?) on conflict(content_hash, extractor) do update "
                    "set vector = excluded.vector returning id",
                    [content_hash, extractor, np.asarray(vector, np.float32).tobytes(), now])
                ids.append(int(cur.fetchone()[0]))
        return ids

    def vector(self, feature_id: int) -> np.ndarray | None:
        rows = list(self.db.query("select vector from features where id = ?", [feature_id]))
        return np.frombuffer(rows[0]["vector"], dtype=np.float32) if rows else None

    def indexed_feature_ids(self, extractor: str) -> np.ndarray:
        """Ids of the vectors that belong in the index: those used by an ok file."""
        ids = [r[0] for r in self.db.execute(
            "select x.id from features x where x.extractor = ? and exists (select 1 from files f "
            "where f.content_hash = x.content_hash and f.status = 'ok') order by x.id",
            [extractor]).fetchall()]
        return np.asarray(ids, dtype=np.int64)

    def iter_vectors(self, ids: np.ndarray, dim: int,
                     chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, vectors) blocks for the given feature ids."""
        for block in _chunks([int(i) for i in ids], chunk):
            marks = ",".join("?" * len(block))
            rows = self.db.execute(
                f"select id, vector from features where id in ({marks}) order by id",
                block).fetchall()
            if rows:
                yield (np.fromiter((r[0] for r in rows), np.int64, len(rows)),
                       np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(-1, dim))

    def vectors(self, ids: np.ndarray, dim: int) -> np.ndarray:
        """The vectors of feature ``ids``, one row each in the order asked.

        Raises KeyError naming ids the store does not hold."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(ids):
            return np.empty((0, dim), np.float32)
        blocks = list(self.iter_vectors(np.unique(ids), dim))
        found = np.concatenate([b[0] for b in blocks]) if blocks else np.empty(0, np.int64)
        pos = np.minimum(np.searchsorted(found, ids), max(0, len(found) - 1))
        if not len(found) or not np.array_equal(found[pos], ids):
            unknown = np.setdiff1d(ids, found)
            raise KeyError(f"feature ids not in the store: {unknown[:5].tolist()}")
        return np.concatenate([b[1] for b in blocks])[pos]

    def paths_for_features(self, ids: Iterable[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            for r in self.db.query(
                    f"select x.id, f.path from features x join files f "
                    f"on f.content_hash = x.content_hash and f.status = 'ok' "
                    f"where x.id in ({marks}) order by f.path", chunk):
                out.setdefault(r["id"], []).append(r["path"])
        return out

    # -- duplicates --------------------------------------------------------------
    def ok_files(self, roots: Iterable[str] = ()) -> Iterator[dict[str, object]]:
        """Indexed files (path, size, mtime_ns, content_hash, format, width, height),
        under any of ``roots`` (absolute paths) or all of them."""
        cols = ("path, size, mtime_ns, content_hash, format, width, height, content_width, "
                "content_height")
        roots = list(roots)
        if not roots:
            yield from self.db.query(f"select {cols} from files where status = 'ok'")
            return
        for root in roots:
            yield from self.db.query(
                f"select {cols} from files where status = 'ok' and ({_UNDER})",
                _under_params(root))

    def pair_scores(self, pairs: list[tuple[str, str]],
                    verifier: str) -> dict[tuple[str, str], float]:
        """Cached verdicts for (hash_a, hash_b) pairs with hash_a < hash_b."""
        found: dict[tuple[str, str], float] = {}
        for chunk in _chunks(pairs, 300):
            marks = ",".join("(?, ?)" for _ in chunk)
            flat = [h for pair in chunk for h in pair]
            for a, b, score in self.db.execute(
                    f"select hash_a, hash_b, score from pair_scores where verifier = ? and "
                    f"(hash_a, hash_b) in (values {marks})", [verifier, *flat]):
                found[(a, b)] = score
        return found

    def save_pair_scores(self, verifier: str, scores: dict[tuple[str, str], float]) -> None:
        with self.db.atomic():
            self.db.conn.executemany(
                "insert or replace into pair_scores (hash_a, hash_b, verifier, score) "
                "values (?, ?, ?, ?)", [(a, b, verifier, s) for (a, b), s in scores.items()])

    def not_duplicates(self) -> set[tuple[str, str]]:
        return {(a, b) for a, b in self.db.execute("select hash_a, hash_b from not_duplicates")}

    def mark_not_duplicates(self, pairs: Iterable[tuple[str, str]]) -> int:
        rows = {tuple(sorted(p)) for p in pairs}
        now = time.time()
        with self.db.atomic():
            before = self.db.execute("select count(*) from not_duplicates").fetchone()[0]
            self.db.conn.executemany("insert or ignore into not_duplicates values (?, ?, ?)",
                                [(a, b, now) for a, b in rows])
            return self.db.execute("select count(*) from not_duplicates").fetchone()[0] - before

    def unmark_not_duplicates(self, hashes: Iterable[str]) -> int:
        """Forget every "not duplicates" mark involving any of ``hashes``."""
        hashes = list(hashes)
        removed = 0
        with self.db.atomic():
            for chunk in _chunks(hashes, 400):
                marks = ",".join("?" * len(chunk))
                removed += self.db.execute(
                    f"delete from not_duplicates where hash_a in ({marks}) or hash_b in ({marks})",
                    [*chunk, *chunk]).rowcount
        return removed

    # -- settings and counts ---------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        rows = list(self.db.query("select value from settings where key = ?", [key]))
        return rows[0]["value"] if rows else None

    def set_setting(self, key: str, value: str) -> None:
        if self.get_setting(key) == value:
            return  # no write: a daemon that then finds the file damaged has not touched it
        self.db["settings"].upsert({"key": key, "value": value}, pk="key")  # type: ignore[union-attr]

    def counts(self) -> dict[str, int]:
        row = self.db.execute(
            "select count(*), sum(status = 'ok'), sum(status = 'failed'), "
            "count(distinct case when status = 'ok' then content_hash end) from files").fetchone()
        return {"files": row[0], "indexed": row[1] or 0, "failed": row[2] or 0,
                "unique_images": row[3] or 0}

    def failures(self, limit: int = 20) -> list[dict[str, str]]:
        return [dict(r) for r in self.db.query(
            "select path, error from files where status = 'failed' order by path limit ?",
            [limit])]

    def transaction(self):  # noqa: ANN201 - sqlite-utils' context manager
        return self.db.atomic()


# "path at or below a folder" as a range scan on the unique path index.
_UNDER = "path = ? or (path >= ? and path < ?)"


def _under_params(root: str) -> list[str]:
    root = root.rstrip("/") or "/"  # '/a/b/' means the folder '/a/b', itself included
    prefix = root.rstrip("/") + "/"
    return [root, prefix, prefix[:-1] + "0"]  # '0' is the byte after '/'


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
