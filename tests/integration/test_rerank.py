"""Near-tied first results put in order by the pixel check (``daemon.rerank``), through
the real engine, model worker, store and index: an edited copy of one shot of a
same-scene pair finds its own original first, where the cosine order put the other shot
first; a search without a near tie checks nothing; a file that cannot be read keeps
the cosine order."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from findsimilar.config import Config
from findsimilar.daemon.engine import Engine

from ..conftest import shared
from ..photo_edits import apply_match_edit

ORIGINAL, SIBLING = "opencv/basketball1.png", "opencv/basketball2.png"
# Edited copies of ORIGINAL whose nearest photo by cosine is SIBLING, by 0.02 (bench/
# match_quality.py --misses, the default descriptor), and which the pixel check tells apart.
EDITS = ["border 15%", "rotation 180°"]
OTHERS = ["skimage/chelsea.png", "opencv/fruits.jpg", "mate/Storm.jpg", "sklearn/china.jpg"]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rerank")
    photos = root / "photos"
    photos.mkdir()
    for rel in [ORIGINAL, SIBLING, *OTHERS]:
        shutil.copy(shared(rel), photos / Path(rel).name)
    edited = {edit: apply_match_edit(edit, photos / Path(ORIGINAL).name, root / f"edit{i}",
                                     seed=17) for i, edit in enumerate(EDITS)}
    with Engine(Config(data_dir=root / "data")) as eng:
        eng.index_paths([str(photos)])
        yield eng, photos, edited


@pytest.mark.parametrize("edit", EDITS)
def test_an_edited_copy_finds_its_original_before_the_other_shot_of_the_scene(library, edit):
    eng, photos, edited = library
    result = eng.search(str(edited[edit]), k=3)
    first, second = result.results[:2]
    assert first.path == str(photos / "basketball1.png"), result.as_dict()
    # The cosine order had the other shot first (the scores stay the cosine scores).
    assert second.path == str(photos / "basketball2.png") and second.score > first.score
    assert result.reranked is True


def test_one_result_asked_for_is_the_original(library):
    eng, photos, edited = library
    result = eng.search(str(edited[EDITS[0]]), k=1)
    assert [m.path for m in result.results] == [str(photos / "basketball1.png")]


def test_a_copy_with_a_clear_first_result_checks_no_pixels(library, tmp_path):
    eng, photos, _ = library
    copy = apply_match_edit("JPEG quality 10", photos / "chelsea.png", tmp_path / "q", seed=17)
    result = eng.search(str(copy), k=3)
    scores = [m.score for m in result.results]
    assert result.results[0].path == str(photos / "chelsea.png")
    assert scores[0] - scores[1] > eng.spec.rerank.gap, scores  # (else it proves nothing)
    assert result.reranked is None


def test_a_photo_new_to_the_library_checks_no_pixels_among_its_weak_neighbours(library):
    eng, _, _ = library
    rule = eng.spec.rerank  # the default model's: gem512's first four within 0.10 from 0.4
    result = eng.search(str(shared("opencv/left01.jpg")), k=3)  # a chessboard
    scores = [m.score for m in result.results]
    assert scores[0] < rule.floor and scores[0] - scores[1] <= rule.gap, scores  # weak tie
    assert result.reranked is None


@pytest.mark.parametrize("damage", ["vanished", "unreadable"])
def test_an_original_that_cannot_be_read_at_search_time_keeps_the_cosine_order(
        library, damage):
    eng, photos, edited = library
    original = photos / "basketball1.png"
    kept = original.read_bytes()
    try:
        if damage == "vanished":
            original.unlink()
        else:
            original.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)  # no picture in it
        result = eng.search(str(edited[EDITS[0]]), k=3)
    finally:
        original.write_bytes(kept)
    first, second = result.results[:2]
    assert (first.path, second.path) == (str(photos / "basketball2.png"), str(original))
    assert first.score >= second.score
    assert result.reranked is False


def test_checks_not_done_in_time_leave_the_cosine_order(library):
    eng, photos, edited = library
    config = eng.config
    eng.config = replace(config, rerank_timeout=1e-4)  # no pixel check is that quick
    try:
        result = eng.search(str(edited[EDITS[0]]), k=3)
    finally:
        eng.config = config
    assert result.results[0].path == str(photos / "basketball2.png")
    assert result.reranked is False
