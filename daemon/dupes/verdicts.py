"""Pixel-check verdicts for pairs of pictures, cached in SQLite by content hash.

A pair (by content, so renames and moves keep it) is checked once per verifier
version, ever; ``Verdicts`` reads the cache, computes what is missing in parallel
threads (OpenCV and NumPy release the GIL) and saves it as it goes, so an
interrupted listing keeps its work.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from findsimilar.daemon.model.verify import VERIFIER_ID, Preview, compare, load_preview
from findsimilar.daemon.storage.store import Store
from findsimilar.errors import ImageDecodeError

__all__ = ["OUTSIDE", "Verdicts"]

log = logging.getLogger(__name__)

Pair = tuple[str, str]  # content hashes (or OUTSIDE + a path), the smaller first
OUTSIDE = "path:"
ProgressFn = Callable[[int, int], None]
_SAVE_EVERY = 256


class _Previews:
    """A small LRU of decoded previews: a picture is decoded once while its pairs run."""

    def __init__(self, paths: Callable[[str], list[str]], max_pixels: int,
                 size: int = 256) -> None:
        self.paths, self.max_pixels, self.size = paths, max_pixels, size
        self._cache: OrderedDict[str, Preview | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, content_hash: str) -> Preview | None:
        with self._lock:
            if content_hash in self._cache:
                self._cache.move_to_end(content_hash)
                return self._cache[content_hash]
        preview = self._load(content_hash)
        with self._lock:
            self._cache[content_hash] = preview
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return preview

    def _load(self, content_hash: str) -> Preview | None:
        for path in self.paths(content_hash):  # any copy will do; one may be gone
            try:
                return load_preview(path, max_pixels=self.max_pixels)
            except (ImageDecodeError, OSError) as exc:
                log.info("cannot compare %s: %s", path, exc)
        return None


class Verdicts:
    """Scores of the pixel check (``verify.compare``) for pairs of content hashes."""

    def __init__(self, store: Store, paths: Callable[[str], list[str]], *, max_pixels: int,
                 workers: int = 2, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.store, self.workers, self.should_stop = store, max(1, workers), should_stop
        self.previews = _Previews(paths, max_pixels)
        self.computed = 0  # pairs checked now rather than read from the cache
        self._known: dict[Pair, float] = {}

    def many(self, pairs: list[Pair], progress: ProgressFn | None = None) -> dict[Pair, float]:
        """Scores of ``pairs``; a pair whose pictures cannot be read has none."""
        self._known.update(self.store.pair_scores(
            [p for p in pairs if p not in self._known], VERIFIER_ID))
        # Sorted: pairs sharing a picture run close together, its preview still cached.
        todo = sorted({p for p in pairs if p not in self._known})
        fresh: dict[Pair, float] = {}
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for done, (pair, score) in enumerate(pool.map(self._check, todo), 1):
                if score is not None:
                    fresh[pair] = score
                if len(fresh) >= _SAVE_EVERY:
                    self._save(fresh)
                if progress is not None:
                    progress(done, len(todo))
        self._save(fresh)
        return {p: self._known[p] for p in pairs if p in self._known}

    def _check(self, pair: Pair) -> tuple[Pair, float | None]:
        if self.should_stop():
            return pair, None
        a, b = self.previews.get(pair[0]), self.previews.get(pair[1])
        if a is None or b is None:
            return pair, None
        try:
            return pair, round(compare(a, b), 4)
        except Exception:  # an OpenCV surprise on one odd picture must not end the listing
            log.exception("pixel check failed for %s / %s", *pair)
            return pair, None

    def _save(self, fresh: dict[Pair, float]) -> None:
        if fresh:
            # A key starting with OUTSIDE names a file outside the index: its pairs are
            # compared but not cached, since no content hash identifies them.
            self.store.save_pair_scores(VERIFIER_ID, {
                p: v for p, v in fresh.items() if not any(k.startswith(OUTSIDE) for k in p)})
            self._known.update(fresh)
            self.computed += len(fresh)
            fresh.clear()
