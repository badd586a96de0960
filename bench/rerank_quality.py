"""Re-ranking near ties (daemon/rerank.py) measured on bench/match_quality.py's corpus.

``match_quality.py --rerank`` adds, beside each descriptor's column, the same measures
after the engine's re-ranking: when the first results of a search are within
the extractor's gap of each other (``ModelSpec.rerank``), the query's pixels are
checked against theirs by ``verify.compare`` and those it confirms go first
(``rerank.reorder``). Also printed, on the same pixel scores: how many searches trigger
a check (edited copies; library photos, which have no edited copy in the library), and
how the engine's rule compares with others (``sweep``: gap, margin, floor, most moved
alone).

Usage: python bench/match_quality.py --rerank
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from findsimilar.daemon.model.spec import RerankRule
from findsimilar.daemon.model.verify import Preview, compare, load_preview
from findsimilar.daemon.rerank import FLOOR, GAP, LEAD, MARGIN, MOST, reorder, tied

MAX_PIXELS = 250_000_000


class Pixels:
    """The pixel check between files, previews and scores cached; its time counted."""

    def __init__(self) -> None:
        self._previews: dict[str, Preview | None] = {}
        self._scores: dict[tuple[str, str], float | None] = {}
        self.seconds = 0.0
        self.pairs = 0

    def preview(self, path: str) -> Preview | None:
        if path not in self._previews:
            try:
                self._previews[path] = load_preview(path, max_pixels=MAX_PIXELS)
            except Exception:  # noqa: BLE001 - unreadable: never confirmed, as in rerank
                self._previews[path] = None
        return self._previews[path]

    def score(self, query: str, candidate: str) -> float | None:
        key = (query, candidate)
        if key not in self._scores:
            started = time.perf_counter()
            a, b = self.preview(query), self.preview(candidate)
            self._scores[key] = None if a is None or b is None else round(compare(a, b), 4)
            self.seconds += time.perf_counter() - started
            self.pairs += 1
        return self._scores[key]


@dataclass(frozen=True)
class Rule:
    """When a near tie is checked (``rerank.tied``) and how it is reordered."""

    gap: float = GAP
    margin: float = MARGIN
    floor: float = FLOOR
    most: int = MOST
    lead: float = LEAD


def engine_rule(spec: RerankRule) -> Rule:
    """The rule the engine applies for an extractor (``ModelSpec.rerank``)."""
    return Rule(gap=spec.gap, floor=spec.floor, most=spec.most)


def sweep(base: Rule) -> list[Rule]:
    """The engine's rule first, then each of its numbers moved alone."""
    return [base, *(replace(base, gap=g) for g in (0.03, 0.05, 0.08, 0.10) if g != base.gap),
            *(replace(base, margin=m) for m in (0.0, 0.05, 1.0)),
            *(replace(base, floor=f) for f in (0.0, 0.4, 0.5, 0.6) if f != base.floor),
            *(replace(base, most=m) for m in (2, 3, 4, 5) if m != base.most),
            *(replace(base, lead=x) for x in (0.2, 0.5, 9.0))]


class Reranker:
    """The cosine order of one search with its near tie reordered as the engine does."""

    def __init__(self, pixels: Pixels, rule: Rule) -> None:
        self.pixels, self.rule = pixels, rule
        self.searches = 0
        self.triggered = 0

    def share(self) -> float:
        """The share of searches checked since the last call."""
        share = self.triggered / max(1, self.searches)
        self.searches = self.triggered = 0
        return share

    def order(self, query: str, names: Sequence[str], scores: np.ndarray) -> np.ndarray:
        """Indices into ``names`` by descending ``scores``, near tie re-ranked."""
        order = np.argsort(-scores)
        self.searches += 1
        n = tied([float(scores[i]) for i in order[:self.rule.most]], self.rule.gap, self.rule.floor,
                 self.rule.most)
        if n == 0:
            return order
        self.triggered += 1
        head = list(order[:n])
        pixel = [self.pixels.score(query, names[i]) for i in head]
        return np.array([*reorder(head, pixel, self.rule.margin, self.rule.lead), *order[n:]])


def first_of(reranker: Reranker | None, query: Path, names: Sequence[str],
             scores: np.ndarray) -> int:
    """The first result of a search from ``query`` with ``scores`` over ``names``."""
    if reranker is None:
        return int(np.argmax(scores))
    return int(reranker.order(str(query), names, scores)[0])


Row = tuple[Rule, float, float, float, float, float]


def rule_rows(label: str, rows: list[Row]) -> None:
    """Print how R@1, the weakest kind, mAP and the shares of searches checked move with
    the rule (rows of rule, share of edited copies checked, share of library photos
    checked, R@1, weakest kind, mAP)."""
    print(f"\n# {label} re-ranked: the rule (gap, pixel-score margin, floor, most, lead; "
          "9 = off)")
    print("| gap | margin | floor | most | lead | edited copies checked "
          "| library photos checked | R@1 all | R@1 weakest kind | mAP |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rule, copies, photos, r1, weakest, m in rows:
        print(f"| {rule.gap:.2f} | {rule.margin:.2f} | {rule.floor:.1f} | {rule.most} "
              f"| {rule.lead:.1f} "
              f"| {100 * copies:.1f} % | {100 * photos:.1f} % | {r1:.4f} | {weakest:.3f} "
              f"| {m:.3f} |")
