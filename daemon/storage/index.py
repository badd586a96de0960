"""The persistent FAISS index: a cache of the store's vectors, keyed by feature id.

Two layouts, both with stable int64 ids so single vectors can be added and removed
without a rebuild:

* **exact** (small libraries): inner product over the L2-normalised vectors, so
  scores are cosine similarities (``IndexIDMap2(IndexFlatIP)``, 5 KB per photo);
* **compressed** (large ones, see ``index_build``): a PCA to at most 256-d with a
  random rotation, then an inverted file of 8-bit scalar-quantised codes (~270 bytes
  per photo). Its candidates are re-scored with the full vectors read from the store,
  so results carry exact cosine scores and recall@10 stays ~1 (BENCHMARKS.md).

A rebuild into another layout runs beside the live index: :meth:`VectorIndex.begin_rebuild`
starts a journal of every add and remove, :meth:`VectorIndex.finish_rebuild` replays
it onto the new index and swaps it in under the lock, so nothing is lost and queries
never wait for the build. Saved atomically: temp file, fsync, rename, fsync of the folder.

The store is the truth: ``index_build.open_index`` checks the loaded ids against
the store and repairs the difference, or rebuilds when the file is missing or unreadable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np

__all__ = ["COMPRESSED", "EXACT", "FetchFn", "VectorIndex", "exact_index"]

log = logging.getLogger(__name__)

EXACT = "exact"
COMPRESSED = "compressed"
# Candidates re-scored with full vectors per query (compressed layout): at 1M photos
# 100 gives recall@10 1.000 where the codes alone give 0.76 (BENCHMARKS.md).
RERANK = 100

# A query or a few run on the calling thread alone: waking OpenMP's team costs more than
# it saves, and its spinning threads stall beside the indexer (p99 12 ms -> 4 ms at 1M).
_FEW_QUERIES = 16

# feature ids -> their full vectors, one row each in the same order (KeyError if unknown)
FetchFn = Callable[[np.ndarray], np.ndarray]


class VectorIndex:
    """Thread-safe wrapper around the FAISS index of one extractor's vectors.

    ``fetch`` reads full vectors by id (from the store); the compressed layout needs
    it to re-score candidates and to answer :meth:`vectors`.
    """

    def __init__(self, dim: int, index: faiss.Index | None = None,
                 fetch: FetchFn | None = None) -> None:
        self.dim = dim
        self._index = index if index is not None else exact_index(dim)
        self.fetch = fetch
        self._lock = threading.RLock()
        self._save_lock = threading.Lock()
        self._journal: list[tuple[np.ndarray, np.ndarray | None]] | None = None
        self.dirty = False

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def layout(self) -> str:
        return EXACT if isinstance(self._index, faiss.IndexIDMap2) else COMPRESSED

    @property
    def lists(self) -> int:
        """Inverted lists of the compressed layout (0 for exact)."""
        with self._lock:
            return 0 if self.layout == EXACT else int(faiss.extract_index_ivf(self._index).nlist)

    def ids(self) -> np.ndarray:
        with self._lock:
            return _ids_of(self._index)

    def add(self, ids: np.ndarray, vectors: np.ndarray, *, replace: bool = True) -> None:
        """Add vectors under ``ids``; with ``replace``, an id already present is replaced."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            _add(self._index, ids, vectors, replace)
            if self._journal is not None:
                self._journal.append((ids.copy(), vectors.copy()))
            self.dirty = True

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) == 0:
            return 0
        with self._lock:
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
            if self._journal is not None:
                self._journal.append((ids.copy(), None))
            self.dirty = self.dirty or removed > 0
            return removed

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (cosine scores, ids) per query, best first; ids are -1 where fewer exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock, _threads(1 if len(queries) <= _FEW_QUERIES else 0):
            k = max(1, min(k, len(self) or 1))
            if self.layout == EXACT:
                return self._index.search(queries, k)
            _, candidates = self._index.search(queries, max(RERANK, 2 * k))
        return self._rescore(queries, candidates, k)

    def _rescore(self, queries: np.ndarray, candidates: np.ndarray,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact cosines of each query's candidates (full vectors), the best ``k`` kept."""
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        for row, (query, found) in enumerate(zip(queries, candidates, strict=True)):
            found = found[found >= 0]
            if not len(found):
                continue
            exact = self._fetch(found) @ query
            best = np.argsort(-exact, kind="stable")[:k]
            scores[row, :len(best)], ids[row, :len(best)] = exact[best], found[best]
        return scores, ids

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The full vectors for ``ids`` (float32, one row each).

        Raises KeyError if an id is not in the index (exact) or the store (compressed)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if self.layout == COMPRESSED:
            return self._fetch(ids)
        with self._lock:
            try:
                return self._index.reconstruct_batch(ids)
            except RuntimeError as exc:
                raise KeyError(f"vector ids not in the index: {exc}") from None

    def _fetch(self, ids: np.ndarray) -> np.ndarray:
        if self.fetch is None:
            raise RuntimeError("a compressed index needs the store to read full vectors")
        return self.fetch(ids)

    # -- rebuilding beside the live index --------------------------------------------
    def begin_rebuild(self) -> np.ndarray:
        """Start journaling changes; returns the ids a new index must hold as of now."""
        with self._lock:
            if self._journal is not None:
                raise RuntimeError("a rebuild is already running")
            self._journal = []
            return _ids_of(self._index)

    def finish_rebuild(self, index: faiss.Index) -> None:
        """Swap in ``index`` (built from :meth:`begin_rebuild`'s ids) after replaying
        the adds and removes made since, in order."""
        with self._lock:
            if self._journal is None:
                raise RuntimeError("no rebuild is running")
            # The last change of each id wins; applied as one remove and one add, since
            # every remove_ids scans the whole inverted file (~8 ms at 1M).
            final: dict[int, np.ndarray | None] = {}
            for ids, vectors in self._journal:
                for row, i in enumerate(ids.tolist()):
                    final[i] = None if vectors is None else vectors[row]
            if final:
                touched = np.fromiter(final, np.int64, len(final))
                index.remove_ids(faiss.IDSelectorBatch(touched))
                added = [i for i, v in final.items() if v is not None]
                if added:
                    index.add_with_ids(np.stack([final[i] for i in added]),  # type: ignore[misc]
                                       np.asarray(added, np.int64))
            self._index, self._journal, self.dirty = index, None, True

    def abort_rebuild(self) -> None:
        with self._lock:
            self._journal = None

    @property
    def rebuilding(self) -> bool:
        return self._journal is not None

    # -- files ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the new one, never half.

        Queries wait only for the write into the page cache (0.1 s for 1M photos, 276 MB),
        not for the fsync; saves run one at a time so an older one never lands last."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._save_lock:
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            try:
                os.close(fd)
                with self._lock:
                    faiss.write_index(self._index, tmp)
                    self.dirty = False
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                self.dirty = True
                raise
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    @classmethod
    def load(cls, path: Path, dim: int, fetch: FetchFn | None = None) -> VectorIndex:
        """Read an index file; raises ValueError if it is not a usable index of ``dim``."""
        try:
            index = faiss.read_index(str(path))
        except Exception as exc:  # faiss raises RuntimeError with C++ text
            raise ValueError(f"unreadable index file: {str(exc).splitlines()[0]}") from None
        if index.d != dim or not _known_layout(index):
            raise ValueError(f"index file has dim {index.d}, type {type(index).__name__}")
        return cls(dim, index, fetch)


@contextlib.contextmanager
def _threads(count: int) -> Iterator[None]:
    """OpenMP threads for FAISS calls on this thread (0: leave as is); per-thread setting."""
    if not count:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def exact_index(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _known_layout(index: faiss.Index) -> bool:
    if isinstance(index, faiss.IndexIDMap2):
        return isinstance(faiss.downcast_index(index.index), faiss.IndexFlat)
    if isinstance(index, faiss.IndexPreTransform):
        return isinstance(faiss.downcast_index(index.index), faiss.IndexIVF)
    return False


def _add(index: faiss.Index, ids: np.ndarray, vectors: np.ndarray, replace: bool) -> None:
    if replace:  # re-adding an id must replace it, never duplicate it
        index.remove_ids(faiss.IDSelectorBatch(ids))
    index.add_with_ids(vectors, ids)


def _ids_of(index: faiss.Index) -> np.ndarray:
    """Every id held, in no particular order."""
    if isinstance(index, faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    lists = ivf.invlists
    parts = [np.empty(0, np.int64)]
    for number in range(ivf.nlist):
        size = lists.list_size(number)
        if size:
            parts.append(faiss.rev_swig_ptr(lists.get_ids(number), size).copy())
    return np.concatenate(parts).astype(np.int64)
