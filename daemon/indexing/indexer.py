"""Bring the store and the index in step with folders on disk.

A run:

1. **scan** (stat only): new, changed, unchanged and vanished files; a file is
   unchanged only if its inode, size, mtime *and* ctime are as stored (see store);
2. **triage**: unchanged files cost nothing more; the others go through the
   ``pipeline`` (read and hash in threads, only unknown content through the model,
   committed in batches);
3. **retire** vanished files; a vector leaves the index only when no file
   uses its content any more (so a move is a re-link, never a re-extraction).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from findsimilar.config import Config
from findsimilar.daemon.dupes.scope import excluder
from findsimilar.daemon.indexing.pipeline import Pipeline
from findsimilar.daemon.indexing.scanner import ScannedFile, ScanProblem, scan
from findsimilar.daemon.model.api import Model
from findsimilar.daemon.storage.index import VectorIndex
from findsimilar.daemon.storage.store import FileRecord, Store
from findsimilar.text import is_under

__all__ = ["IndexSummary", "Indexer"]

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


class Indexer:
    """Runs indexing passes; the only writer of the store and the index."""

    def __init__(self, store: Store, index: VectorIndex, model: Model,
                 config: Config) -> None:
        self.store = store
        self.index = index
        self.model = model
        self.config = config
        self._should_stop: Callable[[], bool] = lambda: False

    # -- public ----------------------------------------------------------------
    def index_paths(self, roots: Iterable[str], progress: ProgressFn | None = None,
                    should_stop: Callable[[], bool] | None = None,
                    exclude: Iterable[str] = (), explicit_files: bool = True,
                    rehash: bool = False, skip: Sequence[str] = ()) -> IndexSummary:
        """Index files and folders (recursively); returns what changed.

        ``exclude``: folder-name globs (a watched folder's); ``skip``: globs of files and
        folders to leave out as ``dupes --exclude`` matches them (``index --exclude``).
        What is left out is as if it were not there: known rows under it are removed.

        ``should_stop`` is polled between files: when it returns True the run
        commits what it has and returns early with ``interrupted`` set. ``rehash``
        reads and hashes every file, however unchanged its facts look (only content
        not seen before goes through the model).
        """
        self._should_stop = should_stop or (lambda: False)
        started = time.monotonic()
        summary = IndexSummary()
        roots = [os.path.abspath(r) for r in roots]
        known = self._known(roots)
        problems: list[ScanProblem] = []
        scanned = list(scan(roots, known={p: (r.size, r.mtime_ns) for p, r in known.items()},
                            problems=problems, exclude=exclude,
                            explicit_files=explicit_files, skip=excluder(skip)))
        summary.failed.extend((p.path, p.reason) for p in problems)
        todo, old_hashes = self._triage(scanned, known, summary, rehash)
        # A root we could not read (unmounted, permissions) is not a mass deletion.
        unreadable = {p.path for p in problems}
        vanished = {p for p in set(known) - {f.path for f in scanned}
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
        stale = set(self.store.hashes_needing_features(self.model.spec.id))
        for f in scanned:
            rec = known.get(f.path)
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
        pipeline = Pipeline(self.store, self.index, self.model, self.config, self._lookup)
        linked = pipeline.run(todo, known, moved_from, summary, progress, self._should_stop)
        self._ensure_indexed(linked)

    def _lookup(self, content_hash: str) -> int | None:
        # On the calling thread's own read-only connection: WAL lets it read while we write.
        return self.store.feature_ids([content_hash], self.model.spec.id).get(content_hash)

    def _ensure_indexed(self, feature_ids: set[int]) -> None:
        """Linked content whose vector had left the index (all its files were gone)."""
        if not feature_ids:
            return
        wanted = np.fromiter(feature_ids, np.int64, len(feature_ids))
        missing = np.setdiff1d(wanted, self.index.ids())
        for ids, vectors in self.store.iter_vectors(missing, self.model.spec.dim):
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
            ids = self.store.feature_ids(orphans, self.model.spec.id)
            self.index.remove(np.fromiter(ids.values(), np.int64, len(ids)))

    def remove_paths(self, paths: Iterable[str]) -> int:
        """Forget deleted files or folders; returns how many file rows went."""
        gone = {r.path for p in paths
                for r in self.store.files_under(os.path.abspath(p))}
        if gone:
            self._retire(gone, set(), IndexSummary())
        return len(gone)

    def move_path(self, src: str, dst: str) -> int:
        """A file or folder was renamed or moved: re-point its rows, no model call.

        Returns the number of rows moved (0 if nothing was known under ``src``).
        """
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
        rec = self.store.file(path) if stat.S_ISREG(st.st_mode) else None
        if (rec is not None and rec.ctime_ns is not None and rec.inode == st.st_ino
                and rec.size == st.st_size and rec.mtime_ns == st.st_mtime_ns):
            self.store.adopt_ctimes([(rec.path, st.st_ctime_ns)])


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
