"""daemon/dupes/grouping.py: how checked pairs become duplicate groups (the chain rule,
near and similar tiers, marks), on plain rows and a real SQLite store; no model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from findsimilar.daemon.dupes.grouping import (
    UNDECIDED,
    DupesOptions,
    FileRow,
    find_duplicates,
    join_pictures,
    mark_not_duplicates,
    near_groups,
    similar_groups,
)
from findsimilar.daemon.model.spec import ModelSpec
from findsimilar.daemon.storage.store import Store
from findsimilar.errors import FindSimilarError

NEAR = 0.88


def rows_by_hash(*paths_per_picture: list[str]) -> tuple[list[str], dict[str, list[FileRow]]]:
    """Pictures h0, h1, ... each with its files (byte-identical copies share a hash)."""
    hashes = [f"h{i}" for i in range(len(paths_per_picture))]
    by_hash = {h: [FileRow({"path": p, "content_hash": h, "size": 1000, "width": 100,
                            "height": 100, "format": "JPEG", "mtime_ns": 0}) for p in paths]
               for h, paths in zip(hashes, paths_per_picture, strict=True)}
    return hashes, by_hash


# --- joining pictures: the fewest checks, and the chain rule -----------------------------


class Checks:
    """Scores by row pair for ``join_pictures``; records what it asks. With ``ahead``,
    pairs started ahead run until asked about ``running`` twice (as the model's threads
    would take a while); else nothing is started ahead."""

    def __init__(self, scores: dict[tuple[int, int], float | None], ahead: bool = False) -> None:
        self.scores, self.ahead = scores, ahead
        self.asked: list[tuple[int, int]] = []  # pairs whose score was taken, in order
        self.started: list[tuple[int, int]] = []
        self.in_flight: list[list] = []  # [pair, polls left]

    def __call__(self, a: int, b: int, *, now: bool) -> float | None:
        if not now:
            self.started.append((a, b))
            self.in_flight.append([(a, b), 2])
            return None
        self.asked.append((a, b))
        return self.scores.get((a, b))

    def running(self) -> int:
        if not self.ahead:
            return 1 << 30
        for job in self.in_flight:
            job[1] -= 1
        self.in_flight = [job for job in self.in_flight if job[1] > 0]
        return len(self.in_flight)


def join(n: int, scores: dict[tuple[int, int], float | None], *, ahead: bool = False,
         sharpness: list[int] | None = None, cosine: dict[tuple[int, int], float] | None = None,
         ) -> tuple[list[list[int]], dict[int, float], Checks]:
    checks = Checks(scores, ahead)
    pairs = [(a, b, (cosine or {}).get((a, b), 0.9)) for a, b in scores]
    uf, low, looked = join_pictures(n, pairs, sharpness or [100] * n, checks, checks.running,
                                    NEAR)
    assert looked == sum(checks.scores.get(p) is not None for p in checks.asked)
    return sorted(sorted(r) for r in uf.components(range(n)).values()), low, checks


def test_pairs_inside_one_group_are_not_checked() -> None:
    # Four copies of one picture, every pair a candidate: three checks join them.
    scores = {(a, b): 0.95 for a in range(4) for b in range(a + 1, 4)}
    pictures, low, checks = join(4, scores)
    assert pictures == [[0, 1, 2, 3]] and len(checks.asked) == 3
    assert low == {0: 0.95}


def test_pairs_go_sharpest_first_then_by_cosine() -> None:
    scores = {(0, 1): 0.95, (0, 2): 0.95, (1, 2): 0.95}
    _, _, checks = join(3, scores, sharpness=[1000, 1000, 10],
                        cosine={(0, 1): 0.7, (0, 2): 0.99, (1, 2): 0.98})
    assert checks.asked == [(0, 1), (0, 2)]  # (1, 2): already one group


def test_two_groups_join_only_if_at_least_half_of_their_checked_pairs_pass() -> None:
    # Groups {0, 1} and {2, 3} (cosine order puts their own pairs first). Between them:
    # (0, 2) fails, (1, 3) passes: one of two, half is enough.
    cosine = {(0, 1): 0.99, (2, 3): 0.98, (0, 2): 0.9, (1, 3): 0.8}
    scores = {(0, 1): 0.97, (2, 3): 0.96, (0, 2): 0.40, (1, 3): 0.90}
    assert join(4, scores, cosine=cosine)[0] == [[0, 1, 2, 3]]
    # A second failure first: (1, 3) is not even checked (it could not make half).
    cosine[(1, 2)], scores[(1, 2)] = 0.85, 0.30
    pictures, _, checks = join(4, scores, cosine=cosine)
    assert pictures == [[0, 1], [2, 3]] and (1, 3) not in checks.asked


def test_no_more_pairs_between_two_groups_are_checked_once_they_clearly_differ() -> None:
    # Two groups of three; every pair between them a candidate and failing.
    cosine = {(a, b): 0.99 for a, b in [(0, 1), (0, 2), (3, 4), (3, 5)]}
    scores = {p: 0.97 for p in cosine}
    between = [(a, b) for a in range(3) for b in range(3, 6)]
    scores.update({p: 0.2 for p in between})
    pictures, _, checks = join(6, scores, cosine=cosine)
    assert pictures == [[0, 1, 2], [3, 4, 5]]
    assert len([p for p in checks.asked if p in between]) == UNDECIDED


def test_a_blurred_copy_matching_the_next_shot_does_not_chain_two_shots() -> None:
    # Shot A: rows 0 (original), 1 (blurred copy); shot B: rows 2 (original), 3 (copy).
    # The blurred copy of A also passes against B's copy: a single link would join all.
    scores = {(0, 1): 0.97, (2, 3): 0.96, (1, 3): 0.90,
              (0, 2): 0.50, (0, 3): 0.52, (1, 2): 0.60}
    cosine = {(0, 1): 0.99, (2, 3): 0.99, (1, 3): 0.95, (0, 2): 0.97, (0, 3): 0.96,
              (1, 2): 0.8}
    pictures, low, _ = join(4, scores, cosine=cosine)
    assert pictures == [[0, 1], [2, 3]]
    assert sorted(low.values()) == [0.96, 0.97]


def test_a_copy_joins_on_half_its_checked_pairs_and_the_group_keeps_its_weakest_join() -> None:
    scores = {(0, 1): 0.99, (0, 2): 0.60, (1, 2): 0.90}  # 2 is near 1, not near 0
    pictures, low, _ = join(3, scores, cosine={(0, 1): 0.99, (0, 2): 0.95, (1, 2): 0.9})
    assert pictures == [[0, 1, 2]] and low == {0: 0.90}


def test_a_pair_without_a_verdict_neither_joins_nor_counts_against() -> None:
    scores: dict[tuple[int, int], float | None] = {(0, 1): None, (0, 2): None, (1, 2): 0.95}
    pictures, _, checks = join(3, scores)
    assert pictures == [[0], [1, 2]] and len(checks.asked) == 3


def test_checking_ahead_changes_nothing_but_the_order_of_work() -> None:
    rng = np.random.default_rng(7)
    n = 24
    scores = {(a, b): float(rng.choice([0.95, 0.3], p=[0.6, 0.4]))
              for a in range(n) for b in range(a + 1, n) if rng.random() < 0.4}
    cosine = {p: float(rng.random()) for p in scores}
    alone, low, plain = join(n, scores, cosine=cosine)
    ahead, low_ahead, eager = join(n, scores, cosine=cosine, ahead=True)
    assert (ahead, low_ahead, eager.asked) == (alone, low, plain.asked)
    assert eager.started and set(eager.started) <= set(scores)


# --- near and similar groups --------------------------------------------------------------


def test_byte_copies_are_exact_groups_joined_copies_near_and_lone_files_nothing() -> None:
    hashes, by_hash = rows_by_hash(["/p/a.jpg", "/p/a copy.jpg"], ["/p/b.jpg"], ["/p/b.png"],
                                   ["/p/alone.jpg"])
    uf, low, _ = join_pictures(4, [(1, 2, 0.9)], [100] * 4, Checks({(1, 2): 0.93}),
                               lambda: 0, NEAR)
    groups = near_groups(hashes, by_hash, uf, low, set(), DupesOptions())
    assert [(g["tier"], sorted(g["files"]), g["score"]) for g in groups] == [
        ("exact", ["/p/a copy.jpg", "/p/a.jpg"], 1.0),
        ("near", ["/p/b.jpg", "/p/b.png"], 0.93)]


def test_identical_copies_marked_deliberate_are_not_a_group() -> None:
    hashes, by_hash = rows_by_hash(["/p/a.jpg", "/p/a print.jpg"], ["/p/b.jpg", "/p/b2.jpg"])
    uf, low, _ = join_pictures(2, [], [100] * 2, Checks({}), lambda: 0, NEAR)
    groups = near_groups(hashes, by_hash, uf, low, {("h0", "h0")}, DupesOptions())
    assert [g["files"] for g in groups] == [["/p/b.jpg", "/p/b2.jpg"]]


def test_similar_clusters_count_a_near_group_as_one_picture() -> None:
    # h0 and h1 are one picture (near); h2 is another shot of the scene; h3 a third
    # picture similar only to h4, which is a copy of h3 (near): no second picture.
    hashes, by_hash = rows_by_hash(["/s/a.jpg"], ["/s/a small.jpg"], ["/s/b.jpg"],
                                   ["/t/c.jpg"], ["/t/c small.jpg"])
    uf, _, _ = join_pictures(5, [(0, 1, 0.9), (3, 4, 0.9)], [100] * 5,
                             Checks({(0, 1): 0.95, (3, 4): 0.94}), lambda: 0, NEAR)
    similar = [(1, 2, 0.86), (0, 2, 0.83), (3, 4, 0.99)]
    groups = similar_groups(hashes, by_hash, uf, similar, DupesOptions(tiers=("similar",)))
    assert [(g["tier"], sorted(g["files"]), g["score"]) for g in groups] == [
        ("similar", ["/s/a small.jpg", "/s/a.jpg", "/s/b.jpg"], 0.83)]


# --- a real store: exact groups and "not duplicates" marks --------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "store.db")
    yield store
    store.close()


def index(store: Store, **hash_of: str) -> dict[str, str]:
    """Record files as indexed, by name -> content hash; returns name -> path."""
    paths = {name: f"/photos/{name}.jpg" for name in hash_of}
    store.upsert_files([{"path": paths[n], "size": 100, "mtime_ns": 0, "status": "ok",
                         "content_hash": h, "format": "JPEG", "width": 10, "height": 10}
                        for n, h in hash_of.items()])
    return paths


class NoModel:
    """A model the exact tier must not use."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the exact tier needs no model (asked for {name})")


def exact_groups(store: Store, **options: Any) -> list[list[str]]:
    def no_vectors(ids: np.ndarray) -> np.ndarray:
        raise AssertionError("the exact tier needs no vectors")

    result = find_duplicates(store, ModelSpec("none", "none", 8, 224), no_vectors,
                             DupesOptions(tiers=("exact",), **options),
                             model=NoModel())  # type: ignore[arg-type]
    return [sorted(g["files"]) for g in result["groups"]]


def test_the_exact_tier_comes_from_the_store_alone_once_per_file(store: Store) -> None:
    paths = index(store, a="x", b="x", c="y", d="z", e="z")
    assert exact_groups(store) == [[paths["a"], paths["b"]], [paths["d"], paths["e"]]]
    # Nested folders asked for: each file is still listed once.
    assert exact_groups(store, paths=["/photos", "/photos"]) == exact_groups(store)


def test_marking_pictures_not_duplicates_pairs_them_all_and_forgetting_undoes_it(
        store: Store) -> None:
    paths = index(store, a="x", b="y", c="z", a2="x")
    result = mark_not_duplicates(store, [paths["a"], paths["b"], paths["c"]])
    assert result == {"pairs": 3, "added": 3}
    assert store.not_duplicates() == {("x", "y"), ("x", "z"), ("y", "z")}
    assert mark_not_duplicates(store, [paths["b"], paths["a"]]) == {"pairs": 1, "added": 0}
    assert mark_not_duplicates(store, [paths["c"], paths["b"]], forget=True) == {"removed": 3}
    assert store.not_duplicates() == set()


def test_identical_copies_given_together_or_one_alone_are_marked_deliberate(
        store: Store) -> None:
    paths = index(store, a="x", a2="x", b="y")
    assert exact_groups(store) == [[paths["a"], paths["a2"]]]
    assert mark_not_duplicates(store, [paths["a"], paths["a2"], paths["b"]]) == {
        "pairs": 2, "added": 2}
    assert store.not_duplicates() == {("x", "y"), ("x", "x")}
    assert exact_groups(store) == []
    mark_not_duplicates(store, [paths["a"]], forget=True)
    assert mark_not_duplicates(store, [paths["b"]]) == {"pairs": 1, "added": 1}


def test_a_file_that_is_not_an_indexed_photo_cannot_be_marked(store: Store) -> None:
    paths = index(store, a="x")
    store.upsert_files([{"path": "/photos/broken.jpg", "status": "failed", "error": "bad"}])
    for other in ("/photos/unknown.jpg", "/photos/broken.jpg"):
        with pytest.raises(FindSimilarError, match=f"not an indexed photo: {other}"):
            mark_not_duplicates(store, [paths["a"], other])
    assert store.not_duplicates() == set()
