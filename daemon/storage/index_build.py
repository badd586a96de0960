"""The index layout that fits the library's size, and building it in the background.

An exact index costs 5 KB of RAM per photo (5 GB at 1M) and a full scan per query
(p99 400 ms at 1M). Past ``compress_above`` photos the daemon moves to the
compressed layout (see ``index``): measured at 1M on synthetic vectors, recall@10
1.000 with re-ranking, p99 4 ms, ~270 bytes per photo (BENCHMARKS.md, "Index options").
As the library keeps growing the inverted lists are trained again (every ~4× in
size), and a library that shrinks below half the threshold goes back to exact.

:class:`IndexBuilder` trains and fills the new index in a thread of its own from the
store's full vectors, while the live index keeps answering and journals changes (see
``VectorIndex.begin_rebuild``). Nothing is written until the swap, so a daemon killed
mid-build restarts from its last saved index and simply builds again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from findsimilar.daemon.storage.index import COMPRESSED, EXACT, FetchFn, VectorIndex, exact_index
from findsimilar.daemon.storage.store import Store

__all__ = ["IndexBuilder", "IndexRepair", "Plan", "build_index", "lists_for", "open_index",
           "plan_layout"]

log = logging.getLogger(__name__)

REDUCED_DIM = 256
NPROBE = 32
_POINTS_PER_LIST = 64  # k-means training points per inverted list (faiss wants >= 39)
_PCA_SAMPLE = 30_000  # 150 MB of full vectors at most
_BLOCK = 4096
_RETRY_AFTER = 600.0  # seconds before a failed build is tried again


@dataclass(frozen=True)
class Plan:
    layout: str
    lists: int
    reason: str


def lists_for(count: int) -> int:
    """Inverted lists for ``count`` vectors: ~4·√N, a power of two, never fewer than
    39 training points per list."""
    target = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(count))))
    return max(1, min(65_536, target, count // 39))


def plan_layout(count: int, layout: str, lists: int, compress_above: int) -> Plan | None:
    """The layout an index of ``count`` vectors should move to, or None to keep it."""
    if layout == EXACT:
        if 0 < compress_above < count:
            return Plan(COMPRESSED, lists_for(count),
                        f"{count:,} photos is more than {compress_above:,}")
        return None
    if compress_above <= 0 or count < compress_above // 2:
        return Plan(EXACT, 0, f"{count:,} photos: exact search is affordable again")
    if lists_for(count) >= 2 * lists:
        return Plan(COMPRESSED, lists_for(count),
                    f"the library grew to {count:,} photos ({lists} lists trained)")
    return None


class BuildCancelled(Exception):
    pass


ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


def build_index(plan: Plan, ids: np.ndarray, dim: int, fetch: FetchFn, *,
                should_stop: Callable[[], bool] = lambda: False,
                progress: ProgressFn = lambda *_: None) -> faiss.Index:
    """A new FAISS index in ``plan``'s layout holding the vectors of ``ids``.

    Raises BuildCancelled when ``should_stop`` says so (checked between blocks)."""
    ids = np.sort(np.asarray(ids, np.int64))
    if plan.layout == EXACT or len(ids) < 2:
        index = exact_index(dim)
    else:
        progress("training", 0, len(ids))
        index = _trained_compressed(ids, dim, plan.lists, fetch)
    for start in range(0, len(ids), _BLOCK):
        if should_stop():
            raise BuildCancelled
        progress("filling", start, len(ids))
        block = ids[start:start + _BLOCK]
        index.add_with_ids(np.ascontiguousarray(fetch(block)), block)
    return index


def _trained_compressed(ids: np.ndarray, dim: int, lists: int, fetch: FetchFn) -> faiss.Index:
    """PCA (random rotation) to at most REDUCED_DIM, then IVF + 8-bit scalar codes,
    trained on a sample; memory stays at the sample's reduced size."""
    lists = max(1, min(lists, len(ids) // 39))
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(ids, size=min(len(ids), lists * _POINTS_PER_LIST),
                                replace=False))
    first = fetch(sample[::max(1, len(sample) // _PCA_SAMPLE)])
    reduced = min(REDUCED_DIM, len(first))
    pca = faiss.PCAMatrix(dim, reduced, 0, True)
    pca.train(np.ascontiguousarray(first))
    del first
    train = np.concatenate([pca.apply(np.ascontiguousarray(fetch(sample[b:b + _BLOCK])))
                            for b in range(0, len(sample), _BLOCK)])
    ivf = faiss.index_factory(reduced, f"IVF{lists},SQ8", faiss.METRIC_L2)
    ivf.train(train)
    ivf.nprobe = min(NPROBE, lists)
    return faiss.IndexPreTransform(pca, ivf)


class IndexBuilder:
    """Moves the live index to the layout its size calls for, in a background thread.

    ``on_swapped`` runs after a swap (the engine saves the index there).
    """

    def __init__(self, index: VectorIndex, store: Store, compress_above: int,
                 on_swapped: Callable[[], None] = lambda: None) -> None:
        self.index = index
        self.store = store  # read on the build thread's own reader
        self.compress_above = compress_above
        self.on_swapped = on_swapped
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._state: dict[str, object] = {"state": "idle"}
        self._failed_at = -math.inf
        self.builds = 0  # finished swaps, for status and tests

    def plan(self) -> Plan | None:
        return plan_layout(len(self.index), self.index.layout, self.index.lists,
                           self.compress_above)

    def maybe_start(self) -> Plan | None:
        """Start a build if the index's size calls for one; returns its plan."""
        if self.running or time.monotonic() - self._failed_at < _RETRY_AFTER:
            return None
        plan = self.plan()
        if plan is None:
            return None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(plan,), name="index-build",
                                        daemon=True)
        self._state = {"state": "starting", "to": plan.layout, "reason": plan.reason}
        self._thread.start()
        return plan

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running build; returns False if it is still running."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel a running build (nothing of it is kept) and wait for its thread."""
        self._stop.set()
        self.wait(timeout)

    def status(self) -> dict[str, object]:
        """Layout, lists, finished builds, the running build's stage; ``pending``: a
        build runs or is due."""
        return {"layout": self.index.layout, "lists": self.index.lists,
                "builds": self.builds, "pending": self.running or self.plan() is not None,
                **self._state}

    def _run(self, plan: Plan) -> None:
        log.info("rebuilding the index as %s: %s", plan.layout, plan.reason)
        began = time.monotonic()
        store = self.store
        ids = self.index.begin_rebuild()
        try:
            new = build_index(plan, ids, self.index.dim,
                              lambda rows: store.vectors(rows, self.index.dim),
                              should_stop=self._stop.is_set, progress=self._progress)
            if self._stop.is_set():  # stopped during training: the owner has moved on
                raise BuildCancelled
            self.index.finish_rebuild(new)
        except BuildCancelled:
            self.index.abort_rebuild()
            self._state = {"state": "idle", "cancelled": plan.layout}
            log.info("index rebuild cancelled")
            return
        except Exception as exc:  # a failed build leaves the live index as it was
            self.index.abort_rebuild()
            self._failed_at = time.monotonic()
            self._state = {"state": "idle", "error": f"{type(exc).__name__}: {exc}"}
            log.exception("index rebuild as %s failed; retrying in %.0f s", plan.layout,
                          _RETRY_AFTER)
            return
        finally:
            store.release_reader()
        self.builds += 1
        seconds = time.monotonic() - began
        self._state = {"state": "idle", "last_build_s": round(seconds, 1)}
        log.info("index is now %s (%d vectors, %d lists) after %.1f s", plan.layout,
                 len(self.index), self.index.lists, seconds)
        try:
            self.on_swapped()
        except Exception as exc:  # e.g. a full disk: still dirty, the periodic save retries
            log.error("could not save the new index yet: %s", exc)

    def _progress(self, stage: str, done: int, total: int) -> None:
        self._state = {**self._state, "state": stage, "done": done, "total": total}


@dataclass(frozen=True)
class IndexRepair:
    """What :func:`open_index` had to do to bring the index in step with the store."""

    rebuilt: bool = False
    added: int = 0
    removed: int = 0
    reason: str = ""


def open_index(path: Path, store: Store, extractor: str, dim: int,
               fetch: FetchFn | None = None, compress_above: int = 0, *,
               first: bool = False) -> tuple[VectorIndex, IndexRepair]:
    """Load the index for ``extractor`` and make it match the store exactly.

    A lost or damaged file is rebuilt from the store in the layout its size calls for
    (compressed past ``compress_above``: an exact rebuild of 1M photos would need 5 GB).
    ``first``: the index is built for the first time (a new model's, at the end of its
    upgrade), so a missing file is expected, not a repair."""
    wanted = store.indexed_feature_ids(extractor)
    reason = ""
    index: VectorIndex | None = None
    if path.exists():
        try:
            index = VectorIndex.load(path, dim, fetch)
        except ValueError as exc:
            reason = str(exc)
    elif len(wanted) and not first:
        reason = "index file missing"
    if index is not None and len(have := index.ids()) != len(np.unique(have)):
        index, reason = None, "duplicate ids"
    if index is None:
        index = _rebuilt(store, wanted, dim, fetch, compress_above)
        if reason:
            log.warning("rebuilt the index from the store (%s): %d vectors", reason, len(wanted))
        return index, IndexRepair(rebuilt=bool(reason), added=len(wanted), reason=reason)
    missing = np.setdiff1d(wanted, have, assume_unique=True)
    extra = np.setdiff1d(have, wanted)
    index.remove(extra)
    for block_ids, vectors in store.iter_vectors(missing, dim):
        index.add(block_ids, vectors, replace=False)
    if len(missing) or len(extra):
        log.warning("index was out of step with the store: added %d, removed %d",
                    len(missing), len(extra))
        return index, IndexRepair(added=len(missing), removed=len(extra),
                                  reason="out of step with the store")
    return index, IndexRepair()


def _rebuilt(store: Store, ids: np.ndarray, dim: int, fetch: FetchFn | None,
             compress_above: int) -> VectorIndex:
    plan = plan_layout(len(ids), EXACT, 0, compress_above) or Plan(EXACT, 0, "")
    if plan.layout != EXACT:
        log.warning("building a compressed index of %d vectors before serving", len(ids))
    built = build_index(plan, ids, dim, lambda rows: store.vectors(rows, dim))
    index = VectorIndex(dim, built, fetch)
    index.dirty = True
    return index
