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
order as it was.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, wait
from typing import Protocol, TypeVar

from findsimilar.daemon.model.api import PRIORITY_QUERY, Model, Picture
from findsimilar.daemon.model.spec import RerankRule
from findsimilar.daemon.model.verify import NEAR_SCORE
from findsimilar.errors import FindSimilarError

__all__ = ["FLOOR", "GAP", "LEAD", "LIKELY", "MARGIN", "MOST", "Ranked", "rerank", "reorder",
           "tied"]

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
           rule: RerankRule = V1_RULE,
           should_stop: Callable[[], bool]) -> tuple[list[R], bool | None]:
    """``results`` (in cosine order) with their near tie (``tied``) reordered
    (``reorder``) by the pixel check of ``query`` (the files holding the query picture;
    none: nothing is checked) against each result's files, and whether the order changed
    (None: no near tie was checked); ``rule``: the extractor's. Never raises for a file:
    one that cannot be read is not confirmed; checks not done within ``timeout`` seconds
    (0: never check) leave the cosine order."""
    n = tied([r.score for r in results], rule.gap, rule.floor, rule.most)
    if n == 0 or timeout <= 0 or not query:
        return list(results), None
    head = list(results[:n])
    pixel = _check(model, timeout, query,
                   [(r.path, r.pair) if r.pair else (r.path,) for r in head], should_stop)
    new = reorder(head, pixel) if pixel is not None else head
    return [*new, *results[n:]], new != head


def _check(model: Model, timeout: float, query: tuple[str, ...],
           candidates: list[tuple[str, ...]],
           should_stop: Callable[[], bool]) -> list[float | None] | None:
    """The pixel score of the query against each candidate (None for one that cannot be
    read), or None if they are not all done within ``timeout`` seconds."""
    session = f"rerank{next(_searches)}:"
    q = Picture(session + "query", query)
    futures = [model.compare(q, Picture(f"{session}{i}", c), priority=PRIORITY_QUERY)
               for i, c in enumerate(candidates)]
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0 and not should_stop():
        if not wait(futures, timeout=min(left, 0.1)).not_done:
            return [_score(f) for f in futures]
    for f in futures:
        f.cancel()  # (one the model has begun runs on; its answer is not waited for)
    log.info("pixel check of the near tie of %s not done in %.1f s: cosine order kept",
             query[0], timeout)
    return None


def _score(future: Future[float | None]) -> float | None:
    try:
        return future.result()
    except (CancelledError, FindSimilarError) as exc:
        log.info("pixel check of a near tie failed: %s", exc)
        return None
