"""One indexing run's files through read, hash, model and commit, each stage overlapping
the next.

1. **prepare** in ``fs-read`` threads: open each new or changed file once (never a FIFO
   or a device), read it, hash it (BLAKE2b-128) and look the hash up in the store;
2. **embed** content the store does not know: the bytes just hashed (or the path of a
   file too big to hold in memory) go to the model (``model.api``: in the daemon, a
   worker process that decodes in its own threads and batches the network), a bounded
   window at a time; identical content in one run goes through the model once;
3. **commit** vectors, picture facts (kept per content: ``storage.pictures``) and file
   rows in one transaction per batch, then add the vectors to the index.

A picture that cannot be read (damaged, a bomb, one that crashed or hung the worker)
becomes a failed row with the reason; a file that vanished or changed while it was
read becomes nothing (its next event, or the next run, takes it as it is then).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections import deque
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from findsimilar.config import Config
from findsimilar.daemon.indexing.scanner import ScannedFile
from findsimilar.daemon.model.api import Embedded, Model
from findsimilar.daemon.storage.index import VectorIndex
from findsimilar.daemon.storage.store import FileRecord, Store
from findsimilar.errors import ImageDecodeError

if TYPE_CHECKING:
    from findsimilar.daemon.indexing.indexer import IndexSummary

__all__ = ["Pipeline", "Prepared", "hash_file"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]
LookupFn = Callable[[str], "int | None"]  # content hash -> feature id, from any thread

EMPTY = "empty file (0 bytes)"  # decode's words for it: no need to ask the model
# Bytes of files read and not yet answered by the model, together: a folder of big PNGs
# must not sit in memory whole (a file's bytes are kept until the model answers, to be
# sent again if a worker dies). Each stage may go past it by one file.
_BYTES_IN_FLIGHT = 128 << 20


@dataclass
class Prepared:
    """A file after reading and hashing; linkable, to embed, embedded, failed or unsettled.

    Its facts (size, mtime, inode, ctime) are those of the descriptor that was read;
    None when the file could not be read, so that a failure is tried again."""

    path: str
    size: int | None
    mtime_ns: int | None
    inode: int | None
    ctime_ns: int | None
    content_hash: str | None = None
    feature_id: int | None = None
    source: bytes | Path | None = None  # what the model must read (content not known)
    embedded: Embedded | None = None
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


class Pipeline:
    """Runs ``todo`` through the stages above, counting into ``summary``."""

    def __init__(self, store: Store, index: VectorIndex, model: Model, config: Config,
                 lookup: LookupFn) -> None:
        self.store, self.index, self.model, self.config = store, index, model, config
        self.lookup = lookup
        self.read_ahead = 4 * max(1, config.decode_workers)
        # Enough at the model for full batches while its decode threads stay busy.
        self.window = 2 * config.batch_size + 2 * config.decode_workers

    def run(self, todo: list[ScannedFile], known: dict[str, FileRecord],
            moved_from: set[str | None], summary: IndexSummary,
            progress: ProgressFn | None, should_stop: Callable[[], bool]) -> set[int]:
        """Returns the feature ids that files were linked to (known content), which the
        caller makes sure are in the index."""
        run = _Run(self, known, moved_from, summary)
        files = deque(todo)
        done = 0
        with ThreadPoolExecutor(max(1, self.config.decode_workers), "fs-read") as pool:
            reading: deque[tuple[Future[Prepared], int]] = deque()  # (file, bytes it holds)
            while True:
                if should_stop():
                    summary.interrupted = True
                    for fut, _ in reading:
                        fut.cancel()
                    break
                while files and len(reading) < self.read_ahead:
                    size = self._held(files[0])
                    if reading and run.bytes_held + size > _BYTES_IN_FLIGHT:
                        break
                    reading.append((pool.submit(self.prepare, files.popleft()), size))
                    run.bytes_held += size
                if not (reading or run.waiting):
                    break
                if run.waiting and (run.waiting[0][1].done() or not reading or run.full()):
                    finished = run.answered()
                else:
                    fut, size = reading.popleft()
                    run.bytes_held -= size
                    finished = run.take(fut.result())
                if finished is None:
                    summary.interrupted = True  # the model was closed: the daemon stops
                    break
                done += finished
                if progress:
                    progress(done, len(todo))
        run.flush()
        return run.linked

    def _held(self, f: ScannedFile) -> int:
        """The bytes reading ``f`` holds in memory (a bigger file is streamed)."""
        size = f.size or 0
        return size if size <= self.config.max_in_memory_bytes else 0

    def prepare(self, f: ScannedFile) -> Prepared:
        """``fs-read`` thread: read, hash, look up; keep the bytes only for unknown content."""
        item = Prepared(f.path, f.size, f.mtime_ns, f.inode, f.ctime_ns)
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
            limit = self.config.max_in_memory_bytes
            if st.st_size > limit and not _identifiable(fd):
                # Hashing first would read a 100 GB (sparse) file to its end.
                item.error = "not a recognised image format (a big file, not read further)"
                return item
            item.content_hash, data = hash_file(fd, st.st_size, limit)
            if _facts(os.fstat(fd)) != _facts(st):  # written to while we read it
                item.unsettled = True
                return item
        except OSError as exc:
            item.error = f"cannot read: {exc.strerror or exc}"
            item.take_facts(None)  # an I/O error may pass: try again next time
            return item
        finally:
            os.close(fd)
        item.feature_id = self.lookup(item.content_hash)
        if item.feature_id is None:
            if st.st_size == 0:
                item.error = EMPTY
            else:
                item.source = data if data is not None else Path(f.path)
        return item

    def commit(self, batch: list[Prepared], rows: list[dict[str, object]]) -> None:
        """Commit embedded pictures' vectors and facts and every row together, then index
        them."""
        unique: dict[str, Prepared] = {}
        for item in batch:
            unique.setdefault(item.content_hash or "", item)
        vectors = np.zeros((0, self.model.spec.dim), np.float32)
        if unique:
            vectors = np.stack([u.embedded.vector for u in unique.values()])  # type: ignore[union-attr]
        # Linked files (known content) take the picture facts kept for it.
        info = self.store.image_info(r["content_hash"] for r in rows if r["status"] == "ok")
        for r in rows:
            r.update(info.get(r["content_hash"], {}))  # type: ignore[arg-type]
        with self.store.transaction():
            ids = self.store.add_features(self.model.spec.id, list(zip(unique, vectors,
                                                                       strict=True)),
                                          half=self.model.spec.half)
            self.store.upsert_files([*rows, *(_row(b) for b in batch)])
            self.store.save_picture_facts({h: u.embedded.facts.as_row()  # type: ignore[union-attr]
                                           for h, u in unique.items()
                                           if u.embedded and u.embedded.facts})
        self.index.add(np.asarray(ids, np.int64), vectors)


class _Run:
    """The state of one run: embeddings in flight (in order), rows and pictures to
    commit, and what this run learnt of contents."""

    def __init__(self, pipeline: Pipeline, known: dict[str, FileRecord],
                 moved_from: set[str | None], summary: IndexSummary) -> None:
        self.p, self.known, self.moved_from, self.summary = pipeline, known, moved_from, summary
        # Files waiting for the model, in order: (file, its content's embedding, whether
        # this file's bytes were sent for it, how many).
        self.waiting: deque[tuple[Prepared, Future[Embedded], bool, int]] = deque()
        self.bytes_out = 0  # of files sent to the model, not answered yet
        self.bytes_held = 0  # of files being read, or read and not yet taken
        self.embedding: dict[str, Future[Embedded]] = {}  # content hash -> its one model call
        self.failed: dict[str, str] = {}  # content hash -> why it cannot be read
        self.batch: list[Prepared] = []
        self.rows: list[dict[str, object]] = []
        self.linked: set[int] = set()

    def full(self) -> bool:
        return (len(self.waiting) >= self.p.window
                or self.bytes_out + self.bytes_held >= _BYTES_IN_FLIGHT)

    def take(self, item: Prepared) -> int:
        """A prepared file: to the model if its content is new, else counted; returns
        the files finished."""
        if item.source is None or item.unsettled or item.error:
            return self._finish(item)
        digest = item.content_hash or ""
        if digest in self.failed:
            item.source, item.error = None, self.failed[digest]
            return self._finish(item)
        future = self.embedding.get(digest)
        sent = future is None
        size = len(item.source) if sent and isinstance(item.source, bytes) else 0
        if future is None:
            future = self.embedding[digest] = self.p.model.embed(item.source, item.path)
        item.source = None  # the model holds the bytes now (a twin's are not needed)
        self.bytes_out += size
        self.waiting.append((item, future, sent, size))
        return 0

    def answered(self) -> int | None:
        """The oldest embedding's answer (waits for it); None if the model was closed."""
        item, future, sent, size = self.waiting.popleft()
        self.bytes_out -= size
        try:
            item.embedded = future.result()
        except ImageDecodeError as exc:
            item.error = self.failed[item.content_hash or ""] = str(exc)
        except CancelledError:
            return None
        self.summary.extracted += sent and item.embedded is not None
        return self._finish(item)

    def _finish(self, item: Prepared) -> int:
        self._count(item)
        if item.unsettled:
            return 1
        if item.embedded is not None:
            self.batch.append(item)
        else:
            self.rows.append(_row(item))
            if item.feature_id is not None:
                self.linked.add(item.feature_id)
        if len(self.batch) >= self.p.config.batch_size or len(self.rows) >= 256:
            self.flush()
        return 1

    def flush(self) -> None:
        self.p.commit(self.batch, self.rows)
        for item in self.batch:  # committed: later copies find it in the store
            self.embedding.pop(item.content_hash or "", None)
        self.batch, self.rows = [], []

    def _count(self, item: Prepared) -> None:
        summary = self.summary
        if item.unsettled:
            summary.unsettled += 1
        elif item.error is not None:
            summary.failed.append((item.path, item.error))
        elif item.path in self.known:
            if self.known[item.path].content_hash != item.content_hash:
                summary.changed += 1
            else:
                summary.unchanged += 1  # touched, or re-embedded for a new model
        elif item.content_hash in self.moved_from:
            summary.moved += 1
        else:
            summary.new += 1


def _row(item: Prepared) -> dict[str, object]:
    row: dict[str, object] = {
        "path": item.path, "size": item.size, "mtime_ns": item.mtime_ns,
        "inode": item.inode, "ctime_ns": item.ctime_ns, "content_hash": item.content_hash,
        "status": "failed" if item.error else "ok", "error": item.error,
    }
    e = item.embedded
    row.update(format=e.format if e else None, width=e.width if e else None,
               height=e.height if e else None,
               content_width=round(e.width * e.content[0]) if e else None,
               content_height=round(e.height * e.content[1]) if e else None)
    return row


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
    file offset is put back to the start). Pillow is imported here, not with the module:
    the daemon needs it only for files too big to hold in memory."""
    from findsimilar.daemon.model.decode import probe_format

    try:
        with os.fdopen(os.dup(fd), "rb") as fh:
            return probe_format(fh) is not None
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
