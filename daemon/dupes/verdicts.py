"""Pixel-check verdicts for pairs of pictures, cached in SQLite by content hash.

A pair (by content, so renames and moves keep it) is checked once per verifier
version, ever; ``Verdicts`` reads the cache, has the model compute what is missing
(``model.api``: in the daemon, the model worker decodes the previews and runs OpenCV, a
few pairs at once) and saves it as it goes, so an interrupted listing keeps its work.
Searches share the cache (``rerank``): ``VerdictWriter`` reads it for them and saves
what they check off their thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError, Future

from findsimilar.daemon.model.api import Model, Picture
from findsimilar.daemon.model.verify import VERIFIER_ID
from findsimilar.daemon.storage.store import Store
from findsimilar.errors import FindSimilarError

__all__ = ["OUTSIDE", "Pair", "VerdictWriter", "Verdicts"]

log = logging.getLogger(__name__)

Pair = tuple[str, str]  # content hashes (or OUTSIDE + a path), the smaller first
OUTSIDE = "path:"
ProgressFn = Callable[[int, int], None]
_SAVE_EVERY = 256
_IN_FLIGHT = 8  # pairs handed to the model at once (its decode threads run them)
# Each Verdicts names its pictures apart from the others' in the model's preview cache:
# a file outside the index may have changed between two listings.
_sessions = itertools.count(1)


class Verdicts:
    """Scores of the pixel check (``verify.compare``) for pairs of content hashes."""

    def __init__(self, store: Store, paths: Callable[[str], list[str]], *, model: Model,
                 should_stop: Callable[[], bool] = lambda: False) -> None:
        self.store, self.paths, self.model, self.should_stop = store, paths, model, should_stop
        self.computed = 0  # pairs checked now rather than read from the cache
        self._known: dict[Pair, float] = {}
        self._running: dict[Pair, Future[float | None]] = {}  # started by ``start``
        self._fresh: dict[Pair, float] = {}  # checked by ``result``, not yet saved
        self._unreadable: set[Pair] = set()  # checked by ``result``: no score
        self._session = f"{next(_sessions)}:"

    def many(self, pairs: list[Pair], progress: ProgressFn | None = None) -> dict[Pair, float]:
        """Scores of ``pairs``; a pair whose pictures cannot be read has none."""
        self.preload(pairs)
        # Sorted: pairs sharing a picture run close together, its preview still cached.
        missing = sorted({p for p in pairs if p not in self._known})
        ahead = iter(missing)
        for done, pair in enumerate(missing, 1):
            if self.should_stop():
                break
            while self.running() < _IN_FLIGHT and (later := next(ahead, None)) is not None:
                self.start(later)
            self.result(pair)
            if progress is not None:
                progress(done, len(missing))
        self.finish()
        return {p: self._known[p] for p in pairs if p in self._known}

    # -- one pair at a time, a few ahead (``grouping.join_pictures``) ------------------
    def preload(self, pairs: list[Pair]) -> None:
        """Read the cached scores of ``pairs`` in one go (``known`` then answers)."""
        self._known.update(self.store.pair_scores(
            [p for p in pairs if p not in self._known], VERIFIER_ID))

    def known(self, pair: Pair) -> float | None:
        """``pair``'s score if checked before (preloaded or checked now)."""
        return self._known.get(pair)

    def running(self) -> int:
        """Pairs started whose check is not done yet (one done and not taken is kept for
        ``result`` and saved)."""
        for pair, future in list(self._running.items()):
            if future.done():
                del self._running[pair]
                self._take(pair, future)
        return len(self._running)

    def start(self, pair: Pair) -> None:
        """Have the model check ``pair`` (unless known or on its way): its ``result`` will
        be wanted soon."""
        if pair not in self._known and pair not in self._running and \
                pair not in self._unreadable and not self.should_stop():
            self._running[pair] = self.model.compare(self._picture(pair[0]),
                                                     self._picture(pair[1]))

    def result(self, pair: Pair) -> float | None:
        """``pair``'s score, checked now if need be (None: its pictures cannot be read,
        or the listing is stopping)."""
        if pair in self._known or pair in self._unreadable:
            return self._known.get(pair)
        self.start(pair)
        future = self._running.pop(pair, None)
        return None if future is None else self._take(pair, future)

    def _take(self, pair: Pair, future: Future[float | None]) -> float | None:
        """``pair``'s finished check: its score noted (saved every ``_SAVE_EVERY``)."""
        score = _score(pair, future)
        if score is None:
            self._unreadable.add(pair)
        else:
            self._fresh[pair] = self._known[pair] = score
            if len(self._fresh) >= _SAVE_EVERY:
                self._save(self._fresh)
        return score

    def finish(self) -> None:
        """Save what was checked; pairs started and never taken are dropped if the model
        has not begun them, else kept (their work is done)."""
        for pair, future in list(self._running.items()):
            if not future.cancel():
                self._take(pair, future)
        self._running.clear()
        self._save(self._fresh)

    def _picture(self, key: str) -> Picture:
        return Picture(self._session + key, tuple(self.paths(key)))

    def _save(self, fresh: dict[Pair, float]) -> None:
        if fresh:
            # A key starting with OUTSIDE names a file outside the index: its pairs are
            # compared but not cached, since no content hash identifies them.
            self.store.save_pair_scores(VERIFIER_ID, {
                p: v for p, v in fresh.items() if not any(k.startswith(OUTSIDE) for k in p)})
            self._known.update(fresh)
            self.computed += len(fresh)
            fresh.clear()


def _score(pair: Pair, future: Future[float | None]) -> float | None:
    """A pair's score, or None if its pictures could not be compared (said in the log)."""
    try:
        return future.result()
    except CancelledError:
        return None
    except FindSimilarError as exc:  # a picture that crashed the worker, or no model
        log.warning("pixel check of %s / %s failed: %s", *pair, exc)
        return None


class VerdictWriter:
    """Verdicts saved off the caller's thread: a search must not wait for the store's
    writer (held by indexing in turn, or by another program for up to its busy timeout).
    ``keep`` queues a verdict and returns; a thread started on demand saves what is
    queued and ends once nothing is; ``known`` answers from the queue too, so a verdict is
    reused before it is saved. A verdict that cannot be saved (a read-only store) is
    logged and checked again when next wanted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queued: dict[Pair, float] = {}  # not saved yet
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.saved = 0  # verdicts saved so far (for tests and diagnostics)

    def known(self, pairs: list[Pair]) -> dict[Pair, float]:
        """The cached scores of ``pairs`` of content hashes: ``verify.compare(a, b)`` for
        (a, b) (the duplicates keep the smaller first, a search the query first)."""
        with self._lock:
            found = {p: self._queued[p] for p in pairs if p in self._queued}
        rest = [p for p in pairs if p not in found]
        if rest:
            found.update(self.store.pair_scores(rest, VERIFIER_ID))
        return found

    def keep(self, pair: Pair, score: float) -> None:
        """Queue ``pair``'s score for the cache (from any thread; never blocks on the store)."""
        with self._lock:
            self._queued[pair] = score
            if self._thread is None:
                self._thread = threading.Thread(target=self._save_queued,
                                                name="fs-verdicts", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Wait until what is queued is saved (before the store closes)."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()

    def _save_queued(self) -> None:
        while True:
            with self._lock:
                batch = dict(self._queued)
                if not batch:
                    self._thread = None
                    return
            try:
                self.store.save_pair_scores(VERIFIER_ID, batch)
                self.saved += len(batch)
            except Exception as exc:  # a store we cannot write: checked again next time
                log.warning("%d pixel-check verdicts not saved: %s", len(batch), exc)
            with self._lock:
                for pair in batch:
                    if self._queued.get(pair) == batch[pair]:
                        del self._queued[pair]
