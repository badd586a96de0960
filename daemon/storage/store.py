"""The SQLite store: the single source of truth.

Three ideas shape the schema:

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

import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import sqlite_utils

from findsimilar.daemon.storage import pictures, summary
from findsimilar.daemon.storage.connections import Connections
from findsimilar.daemon.storage.pathtext import to_path, to_text
from findsimilar.daemon.storage.schema import FileRecord, migrations
from findsimilar.errors import DataDirError, StoreError, store_damage

__all__ = ["FileRecord", "Store", "migrations"]

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _writes(method: _Method) -> _Method:
    """Run ``method`` holding the one writer connection (see ``connections``)."""
    @functools.wraps(method)
    def holding_the_writer(self: Store, *args: Any, **kwargs: Any) -> Any:
        with self._conns.writing():
            return method(self, *args, **kwargs)
    return holding_the_writer  # type: ignore[return-value]


_RECORD = "path, size, mtime_ns, status, content_hash, error, inode, ctime_ns"


class Store:
    """Typed access to the store, safe to share between threads; every write method is
    one transaction.

    Writes go through the one writer connection, one thread at a time; reads use the
    calling thread's own read-only connection, or the writer inside a write (see
    ``connections``)."""

    def __init__(self, path: Path | str, busy_timeout: float = 30.0) -> None:
        """Open (creating or migrating) the store; a write waits ``busy_timeout`` seconds
        for another program's lock before it fails with ``database is locked``."""
        self.path = Path(path)
        conns: Connections | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conns = Connections(self.path, busy_timeout)
            with conns.writing() as writer:
                migrations.apply(writer)
        except sqlite3.DatabaseError as exc:
            # Close before raising so no handle on the damaged file lingers; it is never
            # deleted or rewritten here, the user decides what to do with it.
            if conns is not None:
                conns.close()
            raise self._cannot_open(exc) from exc
        self._conns = conns

    def _cannot_open(self, exc: sqlite3.DatabaseError) -> StoreError:
        damaged = store_damage(self.path, exc)
        if damaged is not None:
            return damaged
        if "readonly" in str(exc) or "unable to open" in str(exc):
            return DataDirError(
                f"cannot write the data dir {self.path.parent}: the store {self.path} "
                f"must be writable ({exc}): check the permissions of the file and its "
                "folder, and that the disk is mounted read-write")
        return StoreError(f"cannot open the store {self.path}: {exc}")

    @property
    def db(self) -> sqlite_utils.Database:
        """The connection for the calling thread's reads (the writer inside a write)."""
        return self._conns.current()

    def release_reader(self) -> None:
        """Close the calling thread's read connection (a server thread that ends)."""
        self._conns.release_reader()

    def reopen_writer(self) -> None:
        """Open the writer connection anew: one opened while the store was read-only
        stays read-only after its permissions are fixed. Raises StoreError (the old
        writer is kept)."""
        try:
            self._conns.reopen_writer()
        except sqlite3.DatabaseError as exc:
            raise self._cannot_open(exc) from exc

    def close(self) -> None:
        """Close the writer and every thread's reader."""
        self._conns.close()

    # -- files ---------------------------------------------------------------
    # Paths are stored as ``pathtext.to_text`` gives them (any file name, kept exactly)
    # and read back through ``to_path``: every method here takes and returns real paths.
    def file(self, path: str) -> FileRecord | None:
        rows = list(self.db.query(f"select {_RECORD} from files where path = ?",
                                  [to_text(path)]))
        return _record(rows[0]) if rows else None

    def files_under(self, root: str) -> Iterator[FileRecord]:
        """Every file at ``root`` or below it (``root`` is an absolute path)."""
        sql = f"select {_RECORD} from files where {_UNDER}"
        for row in self.db.query(sql, _under_params(root)):
            yield _record(row)

    @_writes
    def upsert_files(self, rows: Iterable[dict[str, object]]) -> None:
        now = time.time()
        records = [{**r, "path": to_text(str(r["path"])), "updated_at": now} for r in rows]
        if records:
            self.db["files"].upsert_all(records, pk="path", alter=False)  # type: ignore[union-attr]

    @_writes
    def adopt_ctimes(self, facts: Iterable[tuple[str, int]]) -> None:
        """Record the ctime of files whose stored inode, size and mtime still match (rows
        from before ctime was recorded; files renamed by a watched move)."""
        with self.db.atomic():
            self.db.conn.executemany("update files set ctime_ns = ? where path = ?",
                                     [(ctime, to_text(path)) for path, ctime in facts])

    @_writes
    def delete_files(self, paths: Iterable[str]) -> set[str]:
        """Delete file rows; return the content hashes that no ok file uses any more."""
        paths = [to_text(p) for p in paths]
        hashes: set[str] = set()
        with self.db.atomic():
            for chunk in _chunks(paths, 500):
                marks = ",".join("?" * len(chunk))
                hashes.update(r["content_hash"] for r in self.db.query(
                    f"select distinct content_hash from files where path in ({marks}) "
                    "and content_hash is not null", chunk))
                self.db.execute(f"delete from files where path in ({marks})", chunk)
        return {h for h in hashes if not self.hash_in_use(h)}

    @_writes
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
            for chunk in _chunks([to_text(p) for p in moving], 500):
                marks = ",".join("?" * len(chunk))
                self.db.execute(  # (substr counts characters of the stored text)
                    f"update files set path = ? || substr(path, ?) where path in ({marks})",
                    [to_text(dst), len(to_text(src)) + 1, *chunk])
        return len(moving), {h for h in orphans if not self.hash_in_use(h)}

    # -- watched roots -----------------------------------------------------------
    def roots(self) -> list[dict[str, object]]:
        """The watched folders: path, excludes, and the identity of the folder that was
        there (dev, ino, mount; None where not known yet)."""
        return [{**r, "path": to_path(r["path"]), "excludes": json.loads(r["excludes"] or "[]")}
                for r in self.db.query(
                    "select path, dev, ino, mount, excludes from roots order by path")]

    @_writes
    def add_root(self, path: str, identity: tuple[int, int, str] | None,
                 excludes: list[str]) -> None:
        dev, ino, mount = identity or (None, None, None)
        self.db["roots"].upsert(  # type: ignore[union-attr]
            {"path": to_text(path), "dev": dev, "ino": ino, "mount": mount,
             "excludes": json.dumps(excludes), "added_at": time.time()}, pk="path")

    @_writes
    def set_root_identity(self, path: str, identity: tuple[int, int, str]) -> None:
        """The folder at a watched path is now this one (it was remounted, or recreated)."""
        dev, ino, mount = identity
        with self.db.atomic():
            self.db.execute("update roots set dev = ?, ino = ?, mount = ? where path = ?",
                            [dev, ino, mount, to_text(path)])

    @_writes
    def remove_root(self, path: str) -> bool:
        with self.db.atomic():
            found = bool(list(self.db.query("select 1 from roots where path = ?",
                                            [to_text(path)])))
            self.db.execute("delete from roots where path = ?", [to_text(path)])
        return found

    def image_info(self, hashes: Iterable[str]) -> dict[str, dict[str, object]]:
        """Format, width, height and content size known for each content hash (kept per
        content: see ``pictures``)."""
        keys = ("format", "width", "height", "content_width", "content_height")
        return {h: {k: facts[k] for k in keys}
                for h, facts in pictures.read(self.db, hashes).items()
                if facts["width"] is not None}

    def picture_facts(self, hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The facts known of each content hash (``pictures.COLUMNS``; absent: none)."""
        return pictures.read(self.db, hashes)

    @_writes
    def save_picture_facts(self, facts: dict[str, dict[str, Any]]) -> None:
        """Record picture facts by content hash (see ``pictures.save``)."""
        with self.db.atomic():
            pictures.save(self.db, facts)

    def hash_in_use(self, content_hash: str) -> bool:
        return bool(list(self.db.query(
            "select 1 from files where content_hash = ? and status = 'ok' limit 1",
            [content_hash])))

    def paths_for_hash(self, content_hash: str) -> list[str]:
        return [to_path(r["path"]) for r in self.db.query(
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

    @_writes
    def add_features(self, extractor: str, items: list[tuple[str, np.ndarray]], *,
                     half: bool = False) -> list[int]:
        """Insert (hash, float32 vector)s, returning their feature ids in order; ``half``:
        unit vectors in 2 bytes a value (``ModelSpec.half``), read back at unit length."""
        now = time.time()
        dtype = np.float16 if half else np.float32
        ids = []
        # An explicit transaction: sqlite-utils only auto-commits statements without result
        # rows, so a bare ``insert ... returning`` would stay uncommitted and be lost on close.
        with self.db.atomic():
            for content_hash, vector in items:
                cur = self.db.execute(
                    "insert into features (content_hash, extractor, vector, created_at) "
                    "values (?, ?, ?, ?) on conflict(content_hash, extractor) do update "
                    "set vector = excluded.vector returning id",
                    [content_hash, extractor, np.asarray(vector, np.float32).astype(dtype)
                     .tobytes(), now])
                ids.append(int(cur.fetchone()[0]))
        return ids

    def vector(self, feature_id: int, dim: int | None = None) -> np.ndarray | None:
        """``feature_id``'s float32 vector, or None; ``dim``: its size (else: 4-byte values)."""
        rows = list(self.db.query("select vector from features where id = ?", [feature_id]))
        blob = rows[0]["vector"] if rows else None
        return None if blob is None else _decode([blob], dim or len(blob) // 4)[0]

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
                       _decode([r[1] for r in rows], dim))

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
                out.setdefault(r["id"], []).append(to_path(r["path"]))
        return out

    # -- duplicates --------------------------------------------------------------
    def ok_files(self, roots: Iterable[str] = ()) -> Iterator[dict[str, object]]:
        """Indexed files (path, size, mtime_ns, inode, content_hash and the picture facts
        of its content, ``pictures.COLUMNS``, with ``facts_known`` 1 when complete), under
        any of ``roots`` (absolute paths) or all of them."""
        facts = ", ".join(f"coalesce(p.{c}, f.{c}) as {c}" if c in _FILE_FACTS else f"p.{c}"
                          for c in pictures.COLUMNS)
        sql = (f"select f.path, f.size, f.mtime_ns, f.inode, f.content_hash, {facts}, "
               "p.colour is not null as facts_known from files f left join pictures p "
               "on p.content_hash = f.content_hash where f.status = 'ok'")
        roots = list(roots)
        under = _UNDER.replace("path", "f.path")
        for query, params in ([(sql, [])] if not roots else
                              [(f"{sql} and ({under})", _under_params(r)) for r in roots]):
            for row in self.db.query(query, params):
                row["path"] = to_path(row["path"])
                yield row

    def pair_scores(self, pairs: list[tuple[str, str]],
                    verifier: str) -> dict[tuple[str, str], float]:
        """Cached verdicts for (hash_a, hash_b) pairs: the pixel check of a against b
        (the duplicates keep hash_a < hash_b; a search keeps its query first)."""
        found: dict[tuple[str, str], float] = {}
        for chunk in _chunks(pairs, 300):
            marks = ",".join("(?, ?)" for _ in chunk)
            flat = [h for pair in chunk for h in pair]
            for a, b, score in self.db.execute(
                    f"select hash_a, hash_b, score from pair_scores where verifier = ? and "
                    f"(hash_a, hash_b) in (values {marks})", [verifier, *flat]):
                found[(a, b)] = score
        return found

    @_writes
    def save_pair_scores(self, verifier: str, scores: dict[tuple[str, str], float]) -> None:
        with self.db.atomic():
            self.db.conn.executemany(
                "insert or replace into pair_scores (hash_a, hash_b, verifier, score) "
                "values (?, ?, ?, ?)", [(a, b, verifier, s) for (a, b), s in scores.items()])

    def not_duplicates(self) -> set[tuple[str, str]]:
        return {(a, b) for a, b in self.db.execute("select hash_a, hash_b from not_duplicates")}

    @_writes
    def mark_not_duplicates(self, pairs: Iterable[tuple[str, str]]) -> int:
        rows = {tuple(sorted(p)) for p in pairs}
        now = time.time()
        with self.db.atomic():
            before = self.db.execute("select count(*) from not_duplicates").fetchone()[0]
            self.db.conn.executemany("insert or ignore into not_duplicates values (?, ?, ?)",
                                [(a, b, now) for a, b in rows])
            return self.db.execute("select count(*) from not_duplicates").fetchone()[0] - before

    @_writes
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
        return summary.setting(self.db.conn, key)

    @_writes
    def set_setting(self, key: str, value: str) -> None:
        if self.get_setting(key) == value:
            return  # no write: a daemon that then finds the file damaged has not touched it
        self.db["settings"].upsert({"key": key, "value": value}, pk="key")  # type: ignore[union-attr]

    def counts(self) -> dict[str, int]:
        return summary.counts(self.db.conn)

    def failures(self, limit: int = 20) -> list[dict[str, str]]:
        return summary.failures(self.db.conn, limit)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """One transaction over several writes, holding the writer throughout."""
        with self._conns.writing() as writer, writer.atomic():
            yield writer


# Facts a file row has kept itself since before the pictures table (m007).
_FILE_FACTS = ("width", "height", "format", "content_width", "content_height")
# "path at or below a folder" as a range scan on the unique path index.
_UNDER = "path = ? or (path >= ? and path < ?)"


def _record(row: dict[str, Any]) -> FileRecord:
    return FileRecord(**{**row, "path": to_path(row["path"])})


def _under_params(root: str) -> list[str]:
    root = to_text(root.rstrip("/") or "/")  # '/a/b/' means the folder '/a/b', itself included
    prefix = root.rstrip("/") + "/"
    return [root, prefix, prefix[:-1] + "0"]  # '0' is the byte after '/'


def _decode(blobs: list[bytes], dim: int) -> np.ndarray:
    """float32 (len(blobs), dim) from vectors kept in 4 or 2 bytes a value (``half``)."""
    sizes = {len(b) for b in blobs}
    if sizes == {4 * dim}:
        return np.frombuffer(b"".join(blobs), np.float32).reshape(-1, dim)
    if sizes == {2 * dim}:
        v = np.frombuffer(b"".join(blobs), np.float16).reshape(-1, dim).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-12)
    if len(blobs) > 1 and sizes <= {2 * dim, 4 * dim}:
        return np.concatenate([_decode([b], dim) for b in blobs])
    raise ValueError(f"a stored vector of {sorted(sizes)} bytes is not {dim}-d")


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
