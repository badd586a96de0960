"""Duplicate groups in tiers: exact (same bytes), near (same picture), similar.

How a listing is made, never touching an N×N matrix:

1. The files in scope (``scope.py``: under the PATHs asked for, less ``--exclude``) are
   read from the store and bucketed by content hash:
   a bucket of two or more files is an *exact* duplicate set.
2. One vector per distinct content gives each picture's nearest neighbours above the
   extractor's candidate cosine (``ModelSpec.candidate_cosine``, ``neighbours.py``): the
   candidate pairs.
3. Candidate pairs join into *near* groups (union-find, sharpest pairs first,
   ``join_pictures``) on a pixel-level second opinion (``verify.py``), asked only where
   the answer can change the groups: not for a pair inside one group (copies of one
   picture joined already), nor between two groups already seen to differ; two groups
   join only if most pairs checked between them pass. Verdicts are cached in SQLite by
   content hash (``verdicts.py``), so a pair is checked once, ever. With ``similar``
   requested, pairs above the similar cosine (``--similar-threshold``, else the
   extractor's ``ModelSpec.similar_cosine``) that are not one picture join groups into
   *similar* clusters.
5. Pairs the user marked "not duplicates" are never joined.
6. Hard links of one inode count as one file (``hardlinks.py``).
7. The facts keepers are chosen on are made sure of (``facts.py``: pictures decoded
   again where they are not known; a group with a picture that cannot be read is left
   out, with the reason, in ``stats["left_out"]``).
8. Each group gets its keeper and the reason (``keep.py``: reference folders, then the
   keep rules).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from findsimilar.daemon.dupes.facts import complete_facts, left_out
from findsimilar.daemon.dupes.hardlinks import one_per_inode
from findsimilar.daemon.dupes.keep import DEFAULT_KEEP, KEEP_RULES, listed_group, picture_pixels
from findsimilar.daemon.dupes.neighbours import neighbour_pairs
from findsimilar.daemon.dupes.scope import files_in_scope
from findsimilar.daemon.dupes.verdicts import Verdicts
from findsimilar.daemon.model.api import Model
from findsimilar.daemon.model.spec import ModelSpec
from findsimilar.daemon.model.verify import NEAR_SCORE
from findsimilar.daemon.storage.store import Store
from findsimilar.errors import FindSimilarError

__all__ = ["KEEP_RULES", "TIERS", "UNDECIDED",
           "DupesOptions", "FileRow", "UnionFind", "find_duplicates", "join_pictures",
           "mark_not_duplicates", "near_groups", "options_from", "similar_groups"]

TIERS = ("exact", "near", "similar")
# (The cosine thresholds are the extractor's: ``ModelSpec.candidate_cosine`` and
# ``similar_cosine``.)
NEIGHBOURS = 16

ProgressFn = Callable[[int, int], None]


@dataclass
class DupesOptions:
    paths: list[str] = field(default_factory=list)  # absolute; empty = everything indexed
    tiers: tuple[str, ...] = ("exact", "near")
    near_score: float = NEAR_SCORE
    similar_cosine: float | None = None  # None: the extractor's (ModelSpec.similar_cosine)
    keep_in: list[str] = field(default_factory=list)
    keep_by: tuple[str, ...] = DEFAULT_KEEP
    # Content hashes: only pairs with one of them get a new pixel check, other pairs count
    # if checked before (``around``: photos that just arrived). None: every pair.
    check_only: frozenset[str] | None = None
    exclude: tuple[str, ...] = ()  # globs of files left out (scope.py says how they match)

    def __post_init__(self) -> None:
        bad = [t for t in self.tiers if t not in TIERS]
        if bad or not self.tiers:
            raise FindSimilarError(f"unknown tier {bad}: choose from {', '.join(TIERS)}")
        unknown = [k for k in self.keep_by if k not in KEEP_RULES]
        if unknown:
            raise FindSimilarError(
                f"unknown keep rule {unknown}: choose from {', '.join(KEEP_RULES)}")
        if not -1.0 <= self.near_score <= 1.0:
            raise FindSimilarError("the near threshold is a score between -1 and 1")


def options_from(paths: list[str] | None = None, tiers: list[str] | None = None,
                 threshold: float | None = None, keep_in: list[str] | None = None,
                 keep_by: list[str] | None = None,
                 similar_threshold: float | None = None,
                 exclude: list[str] | None = None) -> DupesOptions:
    """Options from the ``dupes`` request's arguments (relative paths made absolute)."""
    return DupesOptions(
        paths=[os.path.abspath(p) for p in paths or []],
        tiers=tuple(tiers or DupesOptions.tiers),
        near_score=NEAR_SCORE if threshold is None else float(threshold),
        similar_cosine=None if similar_threshold is None else float(similar_threshold),
        keep_in=[os.path.abspath(p) for p in keep_in or []],
        keep_by=tuple(keep_by or DEFAULT_KEEP), exclude=tuple(exclude or ()))


def find_duplicates(store: Store, spec: ModelSpec, vectors: Callable[[np.ndarray], np.ndarray],
                    options: DupesOptions, *, model: Model,
                    progress: ProgressFn | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> dict[str, object]:
    """List duplicate groups over the indexed files under ``options.paths``.

    ``vectors(feature_ids)`` returns the descriptors (the index's, normally) of the
    extractor ``spec``'s feature ids, and its cosine thresholds are the ones applied;
    ``model`` runs the pixel checks. Returns
    ``{"groups": [...], "stats": {...}}``; groups are plain dicts (see README,
    "Duplicates").
    """
    files, not_indexed = files_in_scope(store.ok_files, options.paths, options.exclude,
                                        FileRow)
    by_hash: dict[str, list[FileRow]] = defaultdict(list)
    for f in files:
        by_hash[f["content_hash"]].append(f)
    links = 0
    for h, same in by_hash.items():
        if len(same) > 1:
            by_hash[h], folded = one_per_inode(same)
            links += folded
    hashes = sorted(by_hash)
    ignored = store.not_duplicates()
    verdicts = Verdicts(store, lambda h: [f["path"] for f in by_hash[h]], model=model,
                        should_stop=should_stop)
    stats: dict[str, object] = {"files": len(files) - links, "distinct": len(hashes),
                                "hard_links": links, "not_indexed": not_indexed}

    similar = spec.similar_cosine if options.similar_cosine is None else options.similar_cosine
    pairs: list[tuple[int, int, float]] = []
    if ("near" in options.tiers or "similar" in options.tiers) and len(hashes) > 1:
        pairs = _candidate_pairs(store, spec.id, vectors, hashes, ignored,
                                 min(spec.candidate_cosine, similar), should_stop)
    candidates = [p for p in pairs if p[2] >= spec.candidate_cosine]
    stats["candidate_pairs"] = len(candidates)
    verdicts.preload([(hashes[a], hashes[b]) for a, b, _ in candidates])

    def check(a: int, b: int, *, now: bool) -> float | None:
        """The pixel check of rows a < b: started (``now`` False) or its score."""
        pair = (hashes[a], hashes[b])
        if options.check_only is not None and options.check_only.isdisjoint(pair):
            return verdicts.known(pair)  # (new checks only for the arriving pictures)
        if not now:
            verdicts.start(pair)
            return None
        return verdicts.result(pair)

    sharpness = [max(picture_pixels(f) for f in by_hash[h]) for h in hashes]
    try:
        pictures, low, checked = join_pictures(len(hashes), candidates, sharpness, check,
                                               verdicts.running, options.near_score,
                                               progress=progress, should_stop=should_stop)
    finally:
        verdicts.finish()
    stats["pairs_checked"] = checked
    similar_edges = [(a, b, c) for a, b, c in pairs
                     if c >= similar and pictures.find(a) != pictures.find(b)]
    several = [rows for rows in pictures.components(range(len(hashes))).values()
               if len(rows) > 1]  # groups of different pictures: keepers need facts
    if "similar" in options.tiers:  # (one picture at a time: no conversion to look for)
        several += [[r] for r in sorted({r for a, b, _ in similar_edges for r in (a, b)})]
    unreadable = complete_facts(store, model, [[f for r in rows for f in by_hash[hashes[r]]]
                                               for rows in several], should_stop)
    groups = near_groups(hashes, by_hash, pictures, low, ignored, options)
    if "similar" in options.tiers:
        groups += similar_groups(hashes, by_hash, pictures, similar_edges, options)
    stats["verified_now"] = verdicts.computed
    stats["left_out"] = [why for g in groups if (why := left_out(g, unreadable))]
    groups = [g for g in groups if not left_out(g, unreadable)]
    wanted = [g for g in groups if g["tier"] in options.tiers]
    wanted.sort(key=lambda g: (TIERS.index(g["tier"]), g["files"][0]))
    return {"groups": wanted, "stats": stats}


def _candidate_pairs(store: Store, extractor: str, vectors: Callable[[np.ndarray], np.ndarray],
                     hashes: list[str], ignored: set[tuple[str, str]], min_cosine: float,
                     should_stop: Callable[[], bool]) -> list[tuple[int, int, float]]:
    """Neighbour pairs (row a < row b of ``hashes``, cosine) not marked as distinct."""
    feature = store.feature_ids(hashes, extractor)
    rows = [r for r, h in enumerate(hashes) if h in feature]  # a picture without a
    ids = np.array([feature[hashes[r]] for r in rows], np.int64)  # vector: exact tier only
    i, j, cos = neighbour_pairs(len(rows), lambda sel: vectors(ids[sel]), k=NEIGHBOURS,
                                min_score=min_cosine, should_stop=should_stop)
    pairs = [(rows[a], rows[b], float(c)) for a, b, c in zip(i, j, cos, strict=True)]
    return [p for p in pairs if (hashes[p[0]], hashes[p[1]]) not in ignored]


class FileRow:
    """One indexed file, as the grouping reads it (``row["path"]``, ``row.get(...)``): a
    slotted object, not the store's dict, since a listing holds one per file in scope
    (with its picture facts and values, ~0.45 KB instead of ~0.72 KB each, measured with
    tracemalloc: 270 MB less at 1M photos)."""

    __slots__ = ("path", "size", "mtime_ns", "inode", "content_hash", "format", "width",
                 "height", "content_width", "content_height", "colour", "alpha", "sharpness",
                 "make", "model", "taken", "lossless", "pixel_digest", "facts_known", "links")

    def __init__(self, row: dict[str, Any]) -> None:
        for name in self.__slots__:
            setattr(self, name, row.get(name))
        for name in ("format", "make", "model"):  # one str per format or camera
            value = getattr(self, name)
            setattr(self, name, _FORMATS.setdefault(value, value))
        for name in ("colour", "alpha", "lossless", "facts_known"):  # SQLite's 0/1
            value = getattr(self, name)
            setattr(self, name, None if value is None else bool(value))

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


_FORMATS: dict[Any, Any] = {}


# -- grouping ---------------------------------------------------------------------------


class UnionFind:
    """Disjoint sets of rows 0..n-1; a set is named by its smallest row."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> int:
        """Join the sets of ``a`` and ``b``; returns the root of the joined set."""
        ra, rb = self.find(a), self.find(b)
        self.parent[max(ra, rb)] = min(ra, rb)
        return min(ra, rb)

    def components(self, rows: Iterable[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        for r in rows:
            out[self.find(r)].append(r)
        return out


CheckFn = Callable[..., "float | None"]
# Pairs between two groups stop being checked once this many more have failed than passed.
UNDECIDED = 2
_AHEAD = 8  # pairs checked ahead of the one the joining waits for (the model's threads)


def join_pictures(n: int, pairs: list[tuple[int, int, float]], sharpness: list[int],
                  check: CheckFn, running: Callable[[], int], near_score: float, *,
                  progress: ProgressFn | None = None,
                  should_stop: Callable[[], bool] = lambda: False,
                  ) -> tuple[UnionFind, dict[int, float], int]:
    """Join rows 0..n-1 into pictures along candidate ``pairs`` (row a < row b, cosine),
    checking as few pairs as the answer needs; returns the union-find, each component's
    lowest joining score by root, and how many pairs were looked at.

    ``check(a, b, now=False)`` starts a pair's pixel check, ``check(a, b, now=True)``
    returns its score (None: no verdict); ``running()`` says how many started checks
    wait to be taken. Pairs go sharpest first (the smaller picture's pixels), then by
    cosine. A pair inside one picture's group is not checked: the group already holds
    it. Chains are where "near" goes wrong: a blurred or 30% copy of one burst shot
    matches a copy of the next shot (the motion is below their resolution), and single
    links would join the two shots and all their copies. So two groups join on a passing
    pair only if at least half of the pairs checked between them pass; once
    ``UNDECIDED`` more have failed than passed, no more pairs between them are checked
    (copies of one picture match each other, copies of two shots mostly do not). While
    the joining waits for a score, the next pairs likely to be needed are checked ahead
    (``_AHEAD``), as if those on their way passed; the result does not depend on it.
    """
    uf = UnionFind(n)
    low: dict[int, float] = {}
    # Between two roots: [passed, failed] of the pairs checked between their groups.
    tally: dict[int, dict[int, list[int]]] = defaultdict(dict)
    order = sorted(pairs, key=lambda p: (-min(sharpness[p[0]], sharpness[p[1]]), -p[2]))
    ahead, looked = 0, 0
    flying: list[tuple[int, int, int]] = []  # (position, a, b) checked ahead

    def settled(a: int, b: int, assume: Iterable[tuple[int, int, int]] = ()) -> bool:
        ra, rb = uf.find(a), uf.find(b)
        if ra == rb:
            return True
        passed, failed = tally.get(ra, {}).get(rb, (0, 0))
        if failed - passed >= UNDECIDED:
            return True
        if assume:  # joined if the pairs on their way pass (a throw-away union-find)
            roots: dict[int, int] = {}

            def top(x: int) -> int:
                while roots.get(x, x) != x:
                    x = roots[x]
                return x
            for _, x, y in assume:
                tx, ty = top(uf.find(x)), top(uf.find(y))
                if tx != ty:
                    roots[tx] = ty
            return top(ra) == top(rb)
        return False

    for done, (a, b, _) in enumerate(order, 1):
        if progress is not None and (done % 64 == 0 or done == len(order)):
            progress(done, len(order))
        if should_stop():
            break
        flying = [f for f in flying if f[0] >= done]  # (this pair's turn: done - 1)
        if settled(a, b):
            continue
        ahead = max(ahead, done)
        assume = flying + [(done - 1, a, b)]  # (this pair too, as if it passed)
        while running() < _AHEAD and ahead < len(order):
            x, y, _ = order[ahead]
            if not settled(x, y, assume):
                check(x, y, now=False)
                flying.append((ahead, x, y))
                assume.append((ahead, x, y))
            ahead += 1
        score = check(a, b, now=True)
        if score is None:
            continue
        looked += 1
        ra, rb = uf.find(a), uf.find(b)
        count = tally[ra].setdefault(rb, [0, 0])
        tally[rb][ra] = count
        count[score < near_score] += 1
        if score >= near_score and 2 * count[0] >= count[0] + count[1]:
            root = uf.union(ra, rb)
            _merge_tally(tally, root, rb if root == ra else ra)
            low[root] = min(low.pop(ra, 1.0), low.pop(rb, 1.0), score)
    return uf, low, looked


def _merge_tally(tally: dict[int, dict[int, list[int]]], root: int, gone: int) -> None:
    """Root ``gone`` joined ``root``: its counts with other groups become ``root``'s."""
    mine = tally[root]
    for other, (passed, failed) in tally.pop(gone, {}).items():
        del tally[other][gone]
        if other == root:
            continue
        count = mine.setdefault(other, [0, 0])
        tally[other][root] = count
        count[0] += passed
        count[1] += failed


def near_groups(hashes: list[str], by_hash: dict[str, list[FileRow]], pictures: UnionFind,
                low: dict[int, float], ignored: set[tuple[str, str]],
                options: DupesOptions) -> list[dict]:
    """The exact and near groups: each picture of ``pictures`` (rows of ``hashes``) with
    two or more files. One content alone is an *exact* group (byte-identical copies),
    unless the user marked its copies deliberate; several are a *near* group, scored
    by its weakest join (``low``, by root)."""
    groups = []
    for root, rows in pictures.components(range(len(hashes))).items():
        members = [f for r in rows for f in by_hash[hashes[r]]]
        if len(members) < 2 or (len(rows) == 1 and (hashes[rows[0]],) * 2 in ignored):
            continue
        tier = "exact" if len(rows) == 1 else "near"
        groups.append(listed_group(tier, members, options.keep_in, options.keep_by,
                                   1.0 if tier == "exact" else low.get(root)))
    return groups


def similar_groups(hashes: list[str], by_hash: dict[str, list[FileRow]], pictures: UnionFind,
                   similar_edges: list[tuple[int, int, float]],
                   options: DupesOptions) -> list[dict]:
    """Clusters of different pictures of one scene; a near group counts as one picture."""
    picture = [pictures.find(r) for r in range(len(hashes))]
    scenes = UnionFind(len(hashes))
    for a, b, _ in similar_edges:
        scenes.union(picture[a], picture[b])
    low: dict[int, float] = {}
    for a, _, cosine in similar_edges:
        root = scenes.find(picture[a])
        low[root] = min(low.get(root, 1.0), cosine)
    clusters: dict[int, list[int]] = defaultdict(list)
    for r in range(len(hashes)):
        clusters[scenes.find(picture[r])].append(r)
    groups = []
    for root, rows in clusters.items():
        if len({picture[r] for r in rows}) < 2:
            continue
        members = [f for r in rows for f in by_hash[hashes[r]]]
        groups.append(listed_group("similar", members, options.keep_in, options.keep_by,
                                   low.get(root)))
    return groups


def mark_not_duplicates(store: Store, paths: list[str], *, forget: bool = False,
                        ) -> dict[str, object]:
    """Remember that the pictures at ``paths`` are not duplicates of each other (every
    pair of them; identical copies among them, or of a path given alone, are deliberate),
    or with ``forget`` drop every mark involving them. Raises FindSimilarError for a path
    not indexed."""
    hashes = []
    for p in paths:
        rec = store.file(os.path.abspath(p))
        if rec is None or rec.status != "ok" or not rec.content_hash:
            raise FindSimilarError(f"not an indexed photo: {p}")
        hashes.append(rec.content_hash)
    distinct = sorted(set(hashes))
    if forget:
        return {"removed": store.unmark_not_duplicates(distinct)}
    pairs = [(a, b) for x, a in enumerate(distinct) for b in distinct[x + 1:]]
    # Identical copies among the given files (or a file given alone) are deliberate too.
    pairs += [(h, h) for h in distinct if hashes.count(h) > 1 or len(paths) == 1]
    return {"pairs": len(pairs), "added": store.mark_not_duplicates(pairs)}
