"""The cosine thresholds of `dupes` are the extractor's (daemon/model/spec.py): the same
store and the same cached verdicts give other groups under v1's spec than under gem512's,
whose scores sit lower. A real SQLite store; the pixel checks' verdicts are cached in it,
so no model runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from findsimilar.daemon.dupes.grouping import DupesOptions, find_duplicates
from findsimilar.daemon.model.spec import ModelSpec, model_spec
from findsimilar.daemon.model.verify import VERIFIER_ID
from findsimilar.daemon.storage.store import Store

V1, GEM512 = "efficientnet-lite0-gem", "efficientnet-lite0-gem512"
FACTS = {"width": 10, "height": 10, "format": "JPEG", "content_width": 10,
         "content_height": 10, "colour": True, "alpha": False, "sharpness": 1.0,
         "lossless": False}


class NoModel:
    """The verdicts are cached and the facts known: no model is asked."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"no model call expected (asked for {name})")


def pair(cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors of 4 dimensions at ``cosine``."""
    return (np.array([1.0, 0, 0, 0], np.float32),
            np.array([cosine, np.sqrt(1 - cosine ** 2), 0, 0], np.float32))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "store.db")
    yield store
    store.close()


def library(store: Store, spec: ModelSpec, copy_cosine: float, scene_cosine: float,
            ) -> dict[int, np.ndarray]:
    """Files a ~ b (one picture: their check passes, at ``copy_cosine``) and c ~ d (two
    shots of a scene: the check fails, at ``scene_cosine``), orthogonal to each other."""
    (a, b), (c, d) = pair(copy_cosine), pair(scene_cosine)
    c, d = np.roll(c, 2), np.roll(d, 2)
    names = dict(zip("abcd", (a, b, c, d), strict=True))
    store.upsert_files([{"path": f"/p/{n}.jpg", "size": 100, "mtime_ns": 0, "status": "ok",
                         "content_hash": f"h{n}", "format": "JPEG", "width": 10,
                         "height": 10} for n in names])
    store.save_picture_facts({f"h{n}": FACTS for n in names})
    ids = store.add_features(spec.id, [(f"h{n}", v) for n, v in names.items()])
    store.save_pair_scores(VERIFIER_ID, {("ha", "hb"): 0.95, ("hc", "hd"): 0.30})
    return dict(zip(ids, names.values(), strict=True))


def tiers(store: Store, spec: ModelSpec, vectors: dict[int, np.ndarray]) -> list[tuple]:
    result = find_duplicates(store, spec, lambda ids: np.stack([vectors[int(i)] for i in ids]),
                             DupesOptions(tiers=("exact", "near", "similar")),
                             model=NoModel())  # type: ignore[arg-type]
    return [(g["tier"], sorted(g["files"])) for g in result["groups"]]


def test_v1_keeps_the_thresholds_it_was_tuned_with_and_gem512_sits_lower() -> None:
    v1, gem512 = model_spec(V1), model_spec(GEM512)
    assert (v1.candidate_cosine, v1.similar_cosine) == (0.60, 0.80)
    assert gem512.candidate_cosine < v1.candidate_cosine
    assert gem512.similar_cosine < v1.similar_cosine
    mirror = model_spec("efficientnet-lite0-mirror-gem512")
    assert (mirror.candidate_cosine, mirror.similar_cosine) == (
        gem512.candidate_cosine, gem512.similar_cosine)


@pytest.mark.parametrize("name", [V1, GEM512])
def test_dupes_groups_by_the_thresholds_of_the_extractor_that_answers(
        store: Store, name: str) -> None:
    v1, gem512 = model_spec(V1), model_spec(GEM512)
    # Between the two extractors' thresholds: a candidate and a scene for gem512 only.
    copy = (v1.candidate_cosine + gem512.candidate_cosine) / 2
    scene = (v1.similar_cosine + gem512.similar_cosine) / 2
    spec = model_spec(name)
    vectors = library(store, spec, copy, scene)
    found = tiers(store, spec, vectors)
    if name == V1:
        assert found == []
    else:
        assert found == [("near", ["/p/a.jpg", "/p/b.jpg"]),
                         ("similar", ["/p/c.jpg", "/p/d.jpg"])]
