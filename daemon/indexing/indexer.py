"""Bring the store and the index in step with folders on disk.

The pipeline per run:

1. **scan** (stat only): new, changed, unchanged and vanished files; a file is
   unchanged only if its inode, size, mtime *and* ctime are as stored (see store);
2. **prepare** in worker threads, overlapping the model: read each new or
   changed file once, hash it (BLAKE2b-128), look its hash up; only unknown
   content is decoded (Pillow releases the GIL, so decoding runs in parallel
   with inference);
3. **embed** decoded pictures in batches, then commit features and file rows
   in one transaction per batch, then add the vectors to the index;
4. **retire** vanished files; a vector leaves the index only when no file
   uses its content any more (so a move is a re-link, never a re-extraction).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import sqlite3
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from findsimilar.config import Config
from findsimilar.daemon.indexing.scanner import ScannedFile, ScanProblem, scan
from findsimilar.daemon.model.decode import DecodedImage, decode_for_model, probe_format
from findsimilar.daemon.model.features import FeatureExtractor
from findsimilar.daemon.storage.index import VectorIndex
from findsimilar.daemon.storage.store import FileRecord, Store
from findsimilar.errors import ImageDecodeError
from findsimilar.text import is_under

__all__ = ["IndexSummary", "Indexer", "Prepared", "hash_file"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass
class IndexSummary:
    """What one indexing run did; ``failed`` holds (path, reason) pairs."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    extracted: int = 0  # pictures that went through the model
    failed: list[tuple[str, str]] = field(default_factory=list)
    still_failing: int = 0  # unchanged files that failed before (not retried)
    # Files that vanished or changed while this run read them (renamed, deleted or
    # still being written): nothing is stored for them; their next event or the next
    # run takes them as they are then.
    unsettled: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"new": self.new, "changed": self.changed, "unchanged": self.unchanged,
                "moved": self.moved, "removed": self.removed, "extracted": self.extracted,
                "failed": [{"path": p, "reason": r} for p, r in self.failed],
                "still_failing": self.still_failing, "unsettled": self.unsettled,
                "seconds": round(self.seconds, 3),
                "interrupted": self.interrupted}


@dataclass
class Prepared:
    """A file after reading and hashing; either linkable, decodable, failed or unsettled.

    Its facts (size, mtime, inode, ctime) are those of the descriptor that was read;
    None when the file could not be read, so that a failure is tried again."""

    path: str
    size: int | None
    mtime_ns: int | None
    inode: int | None
    ctime_ns: int | None
    content_hash: str | None = None
    feature_id: int | None = None
    decoded: DecodedImage | None = None
    error: str | None = None
    unsettled: bool = False  # vanished or changed while being read: store nothing

    def take_facts(self, st: os.stat_result | None) -> None:
        self.size, self.mtime_ns, self.inode, self.ctime_ns = (
            (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) if st is not None
            else (None, None, None, None))


def hash_file(fd: int, size: int, limit: int) -> tuple[str, bytes | None]:
    """BLAKE2b-128 of an open file; also returns the bytes when ``size <= limit``."""
    h = hashlib.blake2b(digest_size=16)
    if size <= limit:
        chunks = []
        while chunk := os.read(fd, 1 << 22):
            chunks.append(chunk)
        data = b"".join(chunks)
        h.update(data)
        return h.hexdigest(), data
    while chunk := os.read(fd, 1 << 22):
        h.update(chunk)
    return h.hexdigest(), None


class Indexer:
    """Runs indexing passes; the only writer of the store and the index."""

    def __init__(self, store: Store, index: VectorIndex, extractor: FeatureExtractor,
                 config: Config) -> None:
        self.store = store
        self.index = index
        self.extractor = extractor
        self.config = config
        self._local = threading.local()
        self._should_stop: Callable[[], bool] = lambda: False
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()

    # -- public ----------------------------------------------------------------
    def index_paths(self, roots: Iterable[str], progress: ProgressFn | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    exclude: Iterable[str] = (), explicit_files: bool = True,
                    rehash: bool = False) -> IndexSummary:
        """Index files and folders (recursively); returns what changed.

        ``should_stop`` is polled between files: when it returns True the run
        commits what it has and returns early with ``interrupted`` set. ``rehash``
        reads and hashes every file, however unchanged its facts look (only content
        not seen before goes through the model).
        """
        self._should_stop = should_stop or (lambda: False)
        started = time.monotonic()
        summary = IndexSummary()
        roots = [os.path.abspath(r) for r in roots]
        known = self._known([_stored_path(r) for r in roots])
        problems: list[ScanProblem] = []
        scanned = list(scan(roots, known={p: (r.size, r.mtime_ns) for p, r in known.items()},
                            problems=problems, exclude=exclude,
                            explicit_files=explicit_files))
        summary.failed.extend((_stored_path(p.path), p.reason) for p in problems)
        todo, old_hashes = self._triage(scanned, known, summary, rehash)
        # A root we could not read (unmounted, permissions) is not a mass deletion.
        unreadable = {_stored_path(p.path) for p in problems}
        vanished = {p for p in set(known) - {_stored_path(f.path) for f in scanned}
                    if not any(is_under(p, r) for r in unreadable)}
        moved_from = {known[p].content_hash for p in vanished if known[p].status == "ok"}
        self._process(todo, known, moved_from, summary, progress)
        if not summary.interrupted:  # an unfinished run cannot tell moves from deletions
            self._retire(vanished, old_hashes, summary)
        summary.seconds = time.monotonic() - started
        return summary

    # -- steps -----------------------------------------------------------------
    def _known(self, roots: list[str]) -> dict[str, FileRecord]:
        known: dict[str, FileRecord] = {}
        for root in roots:
            for record in self.store.files_under(root):
                known[record.path] = record
        return known

    def _triage(self, scanned: list[ScannedFile], known: dict[str, FileRecord],
                summary: IndexSummary, rehash: bool = False,
                ) -> tuple[list[ScannedFile], set[str]]:
        todo: list[ScannedFile] = []
        old_hashes: set[str] = set()
        adopted: list[tuple[str, int]] = []
        stale = set(self.store.hashes_needing_features(self.extractor.id))
        for f in scanned:
            rec = known.get(_stored_path(f.path))
            if rec and not rehash and _same_file(rec, f):
                if rec.ctime_ns is None:
                    adopted.append((rec.path, f.ctime_ns))
                if rec.status == "ok" and rec.content_hash in stale:
                    stale.discard(rec.content_hash)  # model changed: one re-extraction per hash
                    todo.append(f)
                elif rec.status == "failed":
                    summary.still_failing += 1
                else:
                    summary.unchanged += 1
                continue
            if rec and rec.content_hash:
                old_hashes.add(rec.content_hash)
            todo.append(f)
        if adopted:
            self.store.adopt_ctimes(adopted)
        return todo, old_hashes

    def _process(self, todo: list[ScannedFile], known: dict[str, FileRecord],
                 moved_from: set[str | None], summary: IndexSummary,
                 progress: ProgressFn | None) -> None:
        try:
            self._pipeline(todo, known, moved_from, summary, progress)
        finally:  # also when a commit fails (a locked store: the pass is run again)
            self._close_worker_connections()

    def _pipeline(self, todo: list[ScannedFile], known: dict[str, FileRecord],
                  moved_from: set[str | None], summary: IndexSummary,
                  progress: ProgressFn | None) -> None:
        batch: list[Prepared] = []
        rows: list[dict[str, object]] = []
        linked: set[int] = set()
        window = max(2 * self.config.batch_size, 4 * self.config.decode_workers)
        done = 0
        with ThreadPoolExecutor(self.config.decode_workers, "fs-decode") as pool:
            pending: deque[Future[Prepared]] = deque()
            files = iter(todo)
            for f in files:
                pending.append(pool.submit(self._prepare, f))
                if len(pending) >= window:
                    break
            while pending:
                if self._should_stop():
                    summary.interrupted = True
                    for fut in pending:
                        fut.cancel()
                    break
                item = pending.popleft().result()
                nxt = next(files, None)
                if nxt is not None:
                    pending.append(pool.submit(self._prepare, nxt))
                self._count(item, known, moved_from, summary)
                if item.unsettled:
                    pass
                elif item.decoded is not None:
                    batch.append(item)
                else:
                    rows.append(self._row(item))
                    if item.feature_id is not None:
                        linked.add(item.feature_id)
                if len(batch) >= self.config.batch_size or len(rows) >= 256:
                    self._flush(batch, rows, summary)
                    batch, rows = [], []
                done += 1
                if progress:
                    progress(done, len(todo))
        self._flush(batch, rows, summary)
        self._ensure_indexed(linked)

    def _close_worker_connections(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    def _count(self, item: Prepared, known: dict[str, FileRecord], moved_from: set[str | None],
               summary: IndexSummary) -> None:
        if item.unsettled:
            summary.unsettled += 1
        elif item.error is not None:
            summary.failed.append((item.path, item.error))
        elif item.path in known:
            if known[item.path].content_hash != item.content_hash:
                summary.changed += 1
            else:
                summary.unchanged += 1  # touched, or re-embedded for a new model
        elif item.content_hash in moved_from:
            summary.moved += 1
        else:
            summary.new += 1

    def _prepare(self, f: ScannedFile) -> Prepared:
        """Worker thread: read, hash, look up, and decode only unknown content."""
        item = Prepared(f.path, f.size, f.mtime_ns, f.inode, f.ctime_ns)
        if not _storable(f.path):  # recorded under a printable name, never opened
            item.path, item.error = _printable(f.path), BAD_NAME
            return item
        try:
            fd = os.open(f.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as exc:
            return _unopened(item, exc)
        try:
            st = os.fstat(fd)
            item.take_facts(st)
            if not stat.S_ISREG(st.st_mode):  # swapped for a FIFO or device since the scan
                item.error = "not a regular file"
                return item
            if st.st_size > self.config.max_in_memory_bytes and not _identifiable(fd):
                # Hashing first would read a 100 GB (sparse) file to its end.
                item.error = "not a recognised image format (a big file, not read further)"
                return item
            item.content_hash, data = hash_file(fd, st.st_size, self.config.max_in_memory_bytes)
            if _facts(os.fstat(fd)) != _facts(st):  # written to while we read it
                item.unsettled = True
                return item
        except OSError as exc:
            item.error = f"cannot read: {exc.strerror or exc}"
            item.take_facts(None)  # an I/O error may pass: try again next time
            return item
        finally:
            os.close(fd)
        item.feature_id = self._lookup(item.content_hash)
        if item.feature_id is not None:
            return item
        try:
            source = data if data is not None else Path(f.path)
            item.decoded = decode_for_model(source, self.extractor.input_size,
                                            max_pixels=self.config.max_pixels)
        except ImageDecodeError as exc:
            item.error = str(exc)
        except Exception as exc:  # a decoder bug must cost one file, not the run
            log.exception("unexpected error decoding %s", f.path)
            item.error = f"unexpected decoder error: {type(exc).__name__}: {exc}"
        return item

    def _lookup(self, content_hash: str) -> int | None:
        # On the worker thread's own read-only connection: WAL lets it read while we write.
        return self.store.feature_ids([content_hash], self.extractor.id).get(content_hash)

    def _row(self, item: Prepared) -> dict[str, object]:
        row: dict[str, object] = {
            "path": item.path, "size": item.size, "mtime_ns": item.mtime_ns,
            "inode": item.inode, "ctime_ns": item.ctime_ns, "content_hash": item.content_hash,
            "status": "failed" if item.error else "ok", "error": item.error,
        }
        decoded = item.decoded
        row.update(format=decoded.format if decoded else None,
                   width=decoded.width if decoded else None,
                   height=decoded.height if decoded else None,
                   content_width=round(decoded.width * decoded.content[0]) if decoded else None,
                   content_height=round(decoded.height * decoded.content[1]) if decoded
                   else None)
        return row

    def _flush(self, batch: list[Prepared], rows: list[dict[str, object]],
               summary: IndexSummary) -> None:
        """Embed a batch, then commit vectors and file rows together, then index them."""
        unique: dict[str, Prepared] = {}
        for item in batch:
            unique.setdefault(item.content_hash or "", item)
        vectors = np.zeros((0, self.extractor.dim), np.float32)
        if unique:
            pixels = np.stack([u.decoded.pixels for u in unique.values()])  # type: ignore[union-attr]
            vectors = self.extractor.embed(pixels)
            summary.extracted += len(unique)
        # Linked files (known content) inherit the picture details of their twins.
        info = self.store.image_info(r["content_hash"] for r in rows if r["status"] == "ok")
        for r in rows:
            r.update(info.get(r["content_hash"], {}))  # type: ignore[arg-type]
        with self.store.transaction():
            pairs = list(zip(unique, vectors, strict=True))
            ids = self.store.add_features(self.extractor.id, pairs)
            self.store.upsert_files([*rows, *(self._row(b) for b in batch)])
        self.index.add(np.asarray(ids, np.int64), vectors)

    def _ensure_indexed(self, feature_ids: set[int]) -> None:
        """Linked content whose vector had left the index (all its files were gone)."""
        if not feature_ids:
            return
        wanted = np.fromiter(feature_ids, np.int64, len(feature_ids))
        missing = np.setdiff1d(wanted, self.index.ids())
        for ids, vectors in self.store.iter_vectors(missing, self.extractor.dim):
            self.index.add(ids, vectors)

    def _retire(self, vanished: set[str], old_hashes: set[str], summary: IndexSummary) -> None:
        with self.store.transaction():
            orphans = self.store.delete_files(sorted(vanished))
            orphans |= {h for h in old_hashes if not self.store.hash_in_use(h)}
        summary.removed = max(0, len(vanished) - summary.moved)
        self._drop_orphans(orphans)

    def _drop_orphans(self, orphans: set[str]) -> None:
        """Vectors whose content no file shows any more leave the index (not the store)."""
        if orphans:
            ids = self.store.feature_ids(orphans, self.extractor.id)
            self.index.remove(np.fromiter(ids.values(), np.int64, len(ids)))

    def remove_paths(self, paths: Iterable[str]) -> int:
        """Forget deleted files or folders; returns how many file rows went."""
        gone = {r.path for p in paths
                for r in self.store.files_under(_stored_path(os.path.abspath(p)))}
        if gone:
            self._retire(gone, set(), IndexSummary())
        return len(gone)

    def move_path(self, src: str, dst: str) -> int:
        """A file or folder was renamed or moved: re-point its rows, no model call.

        Returns the number of rows moved (0 if nothing was known under ``src``).
        """
        if not (_storable(src) and _storable(dst)):
            # A name that is (or was) not UTF-8 is failed under a printable stand-in:
            # forget the old rows; the caller indexes ``dst`` afresh (0 rows moved).
            self.remove_paths([src])
            return 0
        moved, orphans = self.store.move_path(os.path.abspath(src), os.path.abspath(dst))
        self._drop_orphans(orphans)
        return moved

    def keep_facts_of_renamed(self, path: str) -> None:
        """A rename sets the renamed file's ctime: record it for a file that is otherwise
        the one stored (same inode, size and mtime), so that a file moved by hand is not
        read again. Only for a move the watcher saw with no change pending on the file
        (a write before the rename comes as its own event). Files in a renamed folder
        keep their ctime: nothing to do for them."""
        try:
            st = os.lstat(path)
        except OSError:
            return
        rec = self.store.file(_stored_path(path)) if stat.S_ISREG(st.st_mode) else None
        if (rec is not None and rec.ctime_ns is not None and rec.inode == st.st_ino
                and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns):
            self.store.adopt_ctimes([(rec.path, st.st_ctime_ns)])


BAD_NAME = "the file name is not valid UTF-8 (rename the file to index it)"


def _same_file(rec: FileRecord, f: ScannedFile) -> bool:
    """Whether the stored row still describes the file: same inode, size, mtime and ctime.

    A row from before ctime was recorded (NULL) is taken as the same file when its inode,
    size and mtime match, once: its ctime is then recorded. Re-reading every photo at the
    upgrade would cost hours on a big library; `findsimilar reindex --rehash` verifies
    them all. A failed row without facts (a file that could not be read) is never the
    same: it is tried again.
    """
    if rec.size != f.size or rec.mtime_ns != f.mtime_ns or rec.inode != f.inode:
        return False
    if rec.ctime_ns is None:
        return rec.status == "ok"
    return rec.ctime_ns == f.ctime_ns


def _facts(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _unopened(item: Prepared, exc: OSError) -> Prepared:
    """A file that could not be opened: gone since the scan (renamed or deleted while this
    run went on: nothing is stored, its move or deletion is handled as such), or failed
    with the facts of what is there now, so a chmod or a new file is tried again."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        item.unsettled = True
        return item
    item.error = f"cannot open: {exc.strerror or exc}"
    try:
        item.take_facts(os.lstat(item.path))
    except OSError:
        item.unsettled = True
    return item


def _identifiable(fd: int) -> bool:
    """Whether Pillow knows the format of the file open at ``fd`` (from its header; the
    file offset is put back to the start)."""
    try:
        with os.fdopen(os.dup(fd), "rb") as fh:
            return probe_format(fh) is not None
    finally:
        os.lseek(fd, 0, os.SEEK_SET)


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _printable(path: str) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _stored_path(path: str) -> str:
    """The key a path has in the store: itself, or for a name that is not UTF-8 (SQLite
    text cannot hold it) its printable form, ``\\xff`` for the byte 0xff."""
    return path if _storable(path) else _printable(path)
