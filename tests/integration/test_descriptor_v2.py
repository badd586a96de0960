"""A library indexed with the 512-d descriptor of issue 17 (``efficientnet-lite0-gem512``)
through the real pipeline (model worker, store, index): hard edited copies find their
original at rank 1 (a small slice of bench/match_quality.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from findsimilar.config import Config
from findsimilar.daemon.engine import Engine

from ..conftest import PHOTO_SET
from ..photo_edits import apply_match_edit

HARD_EDITS = ["blur 5 px", "small 10%", "JPEG quality 10", "crop 50% area", "rotation 90°",
              "border 15%"]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from ..conftest import shared

    root = tmp_path_factory.mktemp("descriptor-v2")
    photos = root / "photos"
    photos.mkdir()
    for rel in PHOTO_SET:
        (photos / Path(rel).name).write_bytes(shared(rel).read_bytes())
    with Engine(Config(data_dir=root / "data", extractor="efficientnet-lite0-gem512")) as eng:
        eng.index_paths([str(photos)])
        yield eng, photos


def test_the_library_holds_512_d_vectors_of_the_new_extractor_id(engine) -> None:
    eng, photos = engine
    status = eng.status()
    assert (status["model"], status["dim"]) == ("efficientnet-lite0-gem512/v2", 512)
    assert status["vectors"] == len(list(photos.iterdir()))


@pytest.mark.parametrize("edit", HARD_EDITS)
def test_hard_edited_copies_find_their_original_at_rank_one(engine, edit, tmp_path) -> None:
    eng, photos = engine
    misses = []
    for photo in sorted(photos.iterdir()):
        query = apply_match_edit(edit, photo, tmp_path / photo.stem, seed=17)
        top = eng.search(str(query), k=1).results
        if top[0].path != str(photo):
            misses.append((photo.name, top[0].path))
    assert not misses, f"{edit}: {misses}"
