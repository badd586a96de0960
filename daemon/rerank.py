"""Near-tied top results of a search, put in order by the pixel check.

A global descriptor cannot tell an edited copy's original from another shot of the same
scene (a stereo pair, two frames a moment apart): on the shared photos 40 of the 41
edited copies gem512 misses at rank 1 find the other shot first, the original a close
second (BENCHMARKS.md, "Match quality: re-ranking near ties by pixels"). Pixels can tell them
apart, so when the first result scores at least the extractor's floor and the next ones
are within its gap of it (``ModelSpec.rerank``: v1 0.5 and 0.05, at most 3; gem512, whose
scores spread wider, 0.4 and 0.10, at most 4), the query is checked against those few by
``verify.compare``, the duplicates' pixel check, run where the model runs; a result the
check confirms as the same picture (``NEAR_SCORE`` or more) goes first, or with none
confirmed one that aligns well (``LIKELY``) and leads every other by ``LEAD`` (a heavily
blurred copy), and the others keep their cosine order (``reorder``). Edited copies come
back at rank 1 for 1.000 of 2,132 with v1 (0.979 without) and 0.9986 with gem512
(0.981), every edit kind at 0.988 or more; "more like this" unchanged. Scores stay the
cosine scores: they are what ``--min-score`` filters on and what every other search is
compared by; only the order of a near tie changes.

Bounded: nothing is checked without a near tie (83-86 % of edited copies and 74-78 % of
library photos searched), and the checks have ``timeout`` seconds in all; a check
not done by then, or a file that cannot be read (gone, unreadable), leaves the cosine
order as it was. Checks the model has not begun by then are cancelled; one it has begun
runs on, and its verdict is kept if its pair is cached.

Reused: a search of an indexed photo (unchanged since) against indexed results reads
the verdict cache the duplicates keep (``dupes.verdicts``, by content hash) and checks
only what it lacks, saving that off the search's thread (``VerdictWriter``); the same
photo searched again checks nothing, and orders its tie as the first search did. A
query outside the index, or changed since it was indexed, is checked afresh every time
and never cached (see ``_Tie``).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, wait
from typing import Protocol, TypeVar

from findsimilar.daemon.dupes.verdicts import Pair, VerdictWriter
from findsimilar.daemon.model.api import PRIORITY_QUERY, Model, Picture
from findsimilar.daemon.model.spec import RerankRule
from findsimilar.daemon.model.verify import NEAR_SCORE
from findsimilar.daemon.query import indexed_content
from findsimilar.errors import FindSimilarError

__all__ = ["FLOOR", "GAP", "LEAD", "LIKELY", "MARGIN", "MOST", "Ranked",
           "rerank", "reorder", "tied"]

log = logging.getLogger(__name__)

# The defaults (v1's rule; each extractor has its own, ``ModelSpec.rerank``, measured):
V1_RULE = RerankRule()
GAP = RerankRule.gap  # cosine: results this close to the first are a near tie
MOST = RerankRule.most  # results checked at most: the first and the two after it
# Cosine under which the first result is hardly ever an edited copy (a photo new to the
# library, whose unrelated neighbours are often close to each other): nothing to check.
FLOOR = RerankRule.floor
MARGIN = 0.01  # pixel scores closer than this do not reorder two confirmed results
# Nothing confirmed, but one result aligns with the query this well and leads every other
# by this much: it goes first (a copy blurred past confirmation, 0.87 against its original
# and -0.14 against the other shot; measured, see above).
LIKELY = 0.7
LEAD = 0.3
_searches = itertools.count(1)  # names each search's pictures apart in the preview cache

T = TypeVar("T")


def tied(scores: Sequence[float], gap: float = GAP, floor: float = FLOOR,
         most: int = MOST) -> int:
    """How many of the first results (by descending ``scores``) are a near tie worth a
    pixel check: those within ``gap`` of the first, at most ``most``; 0 when the first
    stands alone, or scores under ``floor`` (then it is hardly ever an edited copy)."""
    if not scores or scores[0] < floor:
        return 0
    n = 0
    while n < min(most, len(scores)) and scores[0] - scores[n] <= gap:
        n += 1
    return n if n >= 2 else 0


def reorder(items: Sequence[T], pixel: Sequence[float | None],
            margin: float = MARGIN, lead: float = LEAD) -> list[T]:
    """``items`` (the near tie, in cosine order) with those the pixel check confirms as
    the same picture as the query (``pixel`` score ≥ ``NEAR_SCORE``) first, the others
    after them in their cosine order (None: not checked or unreadable, never confirmed).
    The confirmed keep their cosine order unless their pixel scores differ by more than
    ``margin``: then the highest goes first (the check stops at the first alignment that
    passes, so close scores over ``NEAR_SCORE`` do not rank two pictures). With none
    confirmed, one scoring ``LIKELY`` or more and ``lead`` over every other goes first."""
    confirmed = [i for i, s in enumerate(pixel) if s is not None and s >= NEAR_SCORE]
    if not confirmed:
        scores = [-1.0 if s is None else s for s in pixel]
        best = max(range(len(scores)), key=scores.__getitem__, default=None)
        if best is not None and scores[best] >= LIKELY and all(
                scores[best] - s >= lead for i, s in enumerate(scores) if i != best):
            confirmed = [best]
    found = [pixel[i] or 0.0 for i in confirmed]
    if found and max(found) - min(found) > margin:
        confirmed.sort(key=lambda i: -(pixel[i] or 0.0))
    rest = [i for i in range(len(items)) if i not in confirmed]
    return [items[i] for i in [*confirmed, *rest]]


class Ranked(Protocol):
    """A search result as re-ranking sees it (``query.Match``)."""

    path: str
    score: float
    pair: str | None  # the other file of a RAW+JPEG pair: the same picture


R = TypeVar("R", bound=Ranked)


def rerank(model: Model, timeout: float, query: tuple[str, ...], results: Sequence[R], *,
           rule: RerankRule = V1_RULE, should_stop: Callable[[], bool],
           verdicts: VerdictWriter | None = None,
           query_content: str | None = None) -> tuple[list[R], bool | None]:
    """``results`` (in cosine order) with their near tie (``tied``) reordered
    (``reorder``) by the pixel check of ``query`` (the files holding the query picture;
    none: nothing is checked) against each result's files, and whether the order changed
    (None: no near tie was checked); ``rule``: the extractor's. With ``verdicts`` and
    ``query_content`` (the query's content hash: an indexed file unchanged since), the
    verdict cache answers for results that are indexed and unchanged too (``_Tie``).
    Never raises for a file: one that cannot be read is not confirmed; checks not done
    within ``timeout`` seconds (0: never check) leave the cosine order."""
    n = tied([r.score for r in results], rule.gap, rule.floor, rule.most)
    if n == 0 or timeout <= 0 or not query:
        return list(results), None
    head = list(results[:n])
    tie = _Tie(model, query, head, verdicts if query_content else None, query_content)
    pixel = tie.check(timeout, should_stop)
    new = reorder(head, pixel) if pixel is not None else head
    return [*new, *results[n:]], new != head


class _Tie:
    """One search's pixel checks of its near tie.

    The query is checked against each result, query first, as it always was (the score
    is not symmetric: a crop may align one way round and not the other, 0.05 against
    0.91). A pair of indexed pictures (the query's content and a result's, both
    unchanged since indexed, the result not a RAW+JPEG pair) is a row of the verdict
    cache (``dupes.verdicts``) keyed the same way round, (query, result): read from it
    if checked before, else checked and saved, also when the check ends after the search
    has answered. Where the query's hash is the smaller, that is the very row the
    duplicates keep for the pair (they check the smaller first): a duplicate listing or
    the daemon's idle pre-check serves the search, and the search them. Any other pair
    (a query outside the index, or changed since) is never cached."""

    def __init__(self, model: Model, query: tuple[str, ...], head: Sequence[Ranked],
                 verdicts: VerdictWriter | None, query_content: str | None) -> None:
        self.model, self.query, self.verdicts = model, query, verdicts
        self.session = f"rerank{next(_searches)}:"
        self.keys: list[Pair | None] = [None] * len(head)
        self.files = [(r.path, r.pair) if r.pair else (r.path,) for r in head]
        self.sides: dict[str, tuple[str, ...]] = {}  # the files of each cached content
        if verdicts is not None and query_content is not None:
            contents = [None if r.pair else indexed_content(verdicts.store, r.path)
                        for r in head]
            self.sides = {query_content: query, **{
                c: f for c, f in zip(contents, self.files, strict=True) if c}}
            self.keys = [None if c is None else (query_content, c) for c in contents]

    def check(self, timeout: float, should_stop: Callable[[], bool]
              ) -> list[float | None] | None:
        """The pixel score of the query against each result (None for one that cannot be
        read), or None if they are not all known within ``timeout`` seconds."""
        known = self.verdicts.known([k for k in self.keys if k]) if self.verdicts else {}
        pixel: list[float | None] = [None] * len(self.keys)
        futures: dict[int, Future[float | None]] = {}
        for i, key in enumerate(self.keys):
            if key is not None and key[0] == key[1]:
                pixel[i] = 1.0  # the same bytes
            elif key is not None and key in known:
                pixel[i] = known[key]
            else:
                futures[i] = self._compare(i, key)
        deadline = time.monotonic() + timeout
        while futures and (left := deadline - time.monotonic()) > 0 and not should_stop():
            if not wait(futures.values(), timeout=min(left, 0.1)).not_done:
                break
        else:
            if futures:
                self._give_up(futures)
                return None
        for i, f in futures.items():
            pixel[i] = self._take(self.keys[i], f)
        return pixel

    def _compare(self, i: int, key: Pair | None) -> Future[float | None]:
        if key is None:
            return self.model.compare(Picture(self.session + "query", self.query),
                                      Picture(f"{self.session}{i}", self.files[i]),
                                      priority=PRIORITY_QUERY)
        # Named by content: the worker's previews serve every search that shows it.
        a, b = (Picture("content:" + c, self.sides[c]) for c in key)
        return self.model.compare(a, b, priority=PRIORITY_QUERY)

    def _take(self, key: Pair | None, future: Future[float | None]) -> float | None:
        """A finished check's score (None: unreadable), kept in the cache if its pair is
        one of the cache's."""
        score = _score(future)
        if score is not None and key is not None and self.verdicts is not None:
            self.verdicts.keep(key, score)
        return score

    def _give_up(self, futures: dict[int, Future[float | None]]) -> None:
        """Cancel the checks the model has not begun; those it has run on, and a cached
        pair's verdict is saved when it ends (the next search of it needs no check)."""
        for i, f in futures.items():
            key = self.keys[i]
            if not f.cancel() and key is not None:
                f.add_done_callback(lambda f, key=key: self._take(key, f))
        log.info("pixel check of the near tie of %s not done in time: cosine order kept",
                 self.query[0])


def _score(future: Future[float | None]) -> float | None:
    try:
        return future.result()
    except (CancelledError, FindSimilarError) as exc:
        log.info("pixel check of a near tie failed: %s", exc)
        return None
