"""The persistent FAISS index: a cache of the store's vectors, keyed by feature id.

Exact inner-product search over L2-normalised vectors (so scores are cosine
similarities), with stable int64 ids (``IndexIDMap2``) so single vectors can be
added and removed without a rebuild. Saved atomically: temp file, fsync,
rename, fsync of the folder.

The store is the truth: :func:`open_index` checks the loaded ids against the
store and repairs the difference, or rebuilds from scratch when the file is
missing or unreadable.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from .store import Store

__all__ = ["IndexRepair", "VectorIndex", "open_index"]

log = logging.getLogger(__name__)


class VectorIndex:
    """Thread-safe wrapper around ``faiss.IndexIDMap2(IndexFlatIP(dim))``."""

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._lock = threading.RLock()
        self.dirty = False

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        with self._lock:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray, *, replace: bool = True) -> None:
        """Add vectors under ``ids``; with ``replace``, an id already present is replaced."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            if replace:  # re-adding an id must replace it, never duplicate it
                self._index.remove_ids(faiss.IDSelectorBatch(ids))
            self._index.add_with_ids(vectors, ids)
            self.dirty = True

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return 0
        with self._lock:
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
            self.dirty = self.dirty or removed > 0
            return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids) per query; ids are -1 where fewer exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            k = max(1, min(k, len(self) or 1))
            scores, ids = self._index.search(queries, k)
        return scores, ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors for ``ids`` (float32, one row each).

        Raises KeyError if an id is not in the index."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        with self._lock:
            try:
                return self._index.reconstruct_batch(ids)
            except RuntimeError as exc:
                raise KeyError(f"vector ids not in the index: {exc}") from None

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the new one, never half."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            try:
                os.close(fd)
                faiss.write_index(self._index, tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self.dirty = False
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def load(cls, path: Path, dim: int) -> VectorIndex:
        """Read an index file; raises ValueError if it is not a usable index of ``dim``."""
        try:
            index = faiss.read_index(str(path))
        except Exception as exc:  # faiss raises RuntimeError with C++ text
            raise ValueError(f"unreadable index file: {str(exc).splitlines()[0]}") from None
        if index.d != dim or not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"index file has dim {index.d}, type {type(index).__name__}")
        return cls(dim, index)


@dataclass(frozen=True)
class IndexRepair:
    """What :func:`open_index` had to do to bring the index in step with the store."""

    rebuilt: bool = False
    added: int = 0
    removed: int = 0
    reason: str = ""


def open_index(path: Path, store: Store, extractor: str, dim: int) -> tuple[VectorIndex,
                                                                          IndexRepair]:
    """Load the index for ``extractor`` and make it match the store exactly."""
    wanted = store.indexed_feature_ids(extractor)
    reason = ""
    index: VectorIndex | None = None
    if path.exists():
        try:
            index = VectorIndex.load(path, dim)
        except ValueError as exc:
            reason = str(exc)
    elif len(wanted):
        reason = "index file missing"
    if index is None:
        index = VectorIndex(dim)
        _add_from_store(index, store, wanted, dim)
        if reason:
            log.warning("rebuilt the index from the store (%s): %d vectors", reason, len(wanted))
        return index, IndexRepair(rebuilt=bool(reason), added=len(wanted), reason=reason)
    have = index.ids()
    missing = np.setdiff1d(wanted, have, assume_unique=True)
    extra = np.setdiff1d(have, wanted)
    if len(have) != len(np.unique(have)):
        index = VectorIndex(dim)
        _add_from_store(index, store, wanted, dim)
        return index, IndexRepair(rebuilt=True, added=len(wanted), reason="duplicate ids")
    index.remove(extra)
    _add_from_store(index, store, missing, dim)
    if len(missing) or len(extra):
        log.warning("index was out of step with the store: added %d, removed %d",
                    len(missing), len(extra))
        return index, IndexRepair(added=len(missing), removed=len(extra),
                                  reason="out of step with the store")
    return index, IndexRepair()


def _add_from_store(index: VectorIndex, store: Store, ids: np.ndarray, dim: int) -> None:
    for block_ids, vectors in store.iter_vectors(ids, dim):
        index.add(block_ids, vectors, replace=False)
