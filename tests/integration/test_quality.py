"""Edited copies of real photos find their original at rank 1 (a small slice of
bench/quality.py, which runs the full table)."""

from __future__ import annotations

from pathlib import Path

import pytest

from findsimilar.config import Config
from findsimilar.daemon.engine import Engine

from ..conftest import PHOTO_SET
from ..photo_edits import EDITS, apply_edit


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from ..conftest import shared

    root = tmp_path_factory.mktemp("quality")
    photos = root / "photos"
    photos.mkdir()
    for rel in PHOTO_SET:
        (photos / Path(rel).name).write_bytes(shared(rel).read_bytes())
    with Engine(Config(data_dir=root / "data")) as engine:
        engine.index_paths([str(photos)])
        yield engine, photos


@pytest.mark.parametrize("edit", list(EDITS))
def test_edited_copies_find_their_original_at_rank_one(engine, edit, tmp_path):
    eng, photos = engine
    misses = []
    for photo in sorted(photos.iterdir()):
        query = apply_edit(edit, photo, tmp_path / photo.stem)
        top = eng.search(str(query), k=1).results
        if top[0].path != str(photo):
            misses.append((photo.name, top[0].path))
    assert not misses, f"{edit}: {misses}"
