"""The pixel-level second opinion: same picture vs different shots, on real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from findsimilar.daemon.dupes import neighbours
from findsimilar.daemon.dupes.neighbours import neighbour_pairs
from findsimilar.daemon.model.verify import NEAR_SCORE, compare, load_preview
from findsimilar.errors import ImageDecodeError
from tests.conftest import shared

from ..photo_edits import apply_edit, apply_seeded_edit

MP = 250_000_000


def _preview(path: Path):
    return load_preview(path, max_pixels=MP)


@pytest.mark.parametrize("edit", ["resize 30%", "JPEG quality 15", "centre crop 75%", "mirror",
                                  "caption bar", "letterbox border", "EXIF-rotated",
                                  "greyscale", "blur"])
def test_an_edited_copy_is_the_same_picture(edit: str, tmp_path: Path) -> None:
    original = shared("mate/Storm.jpg")
    copy = apply_edit(edit, original, tmp_path / "copy")
    assert compare(_preview(original), _preview(copy)) >= NEAR_SCORE


@pytest.mark.parametrize("a,b", [("opencv/rubberwhale1.png", "opencv/rubberwhale2.png"),
                                 ("opencv/basketball1.png", "opencv/basketball2.png"),
                                 ("opencv/left01.jpg", "opencv/right01.jpg"),
                                 ("skimage/motorcycle_left.png", "skimage/motorcycle_right.png"),
                                 ("opencv/aloeL.jpg", "opencv/aloeR.jpg")])
def test_two_shots_of_one_scene_are_not_the_same_picture(a: str, b: str) -> None:
    assert compare(_preview(shared(a)), _preview(shared(b))) < NEAR_SCORE


def test_unrelated_photos_score_low() -> None:
    a, b = _preview(shared("opencv/fruits.jpg")), _preview(shared("mate/Aqua.jpg"))
    assert compare(a, b) < 0.5


def test_a_pasted_patch_of_colour_is_a_sticker_not_another_picture(tmp_path: Path) -> None:
    # Until issue 14 a pasted rectangle made a copy "another picture"; a sticker or a
    # logo over part of the picture leaves an edited copy of it.
    from PIL import Image

    original = shared("opencv/building.jpg")
    with Image.open(original) as im:
        im = im.convert("RGB")
        w, h = im.size
        im.paste((250, 20, 20), (w // 3, h // 3, w // 3 + w // 6, h // 3 + h // 6))
        im.save(tmp_path / "tampered.jpg", quality=92)
    assert compare(_preview(original), _preview(tmp_path / "tampered.jpg")) >= NEAR_SCORE


@pytest.mark.parametrize("edit", ["caption band 20%", "watermark 70%", "logo 20%",
                                  "sticker 20%"])
@pytest.mark.parametrize("photo", ["opencv/fruits.jpg", "mate/LadyBird.jpg"])
def test_a_copy_with_an_overlay_is_the_same_picture(edit: str, photo: str,
                                                     tmp_path: Path) -> None:
    original = shared(photo)
    copy = apply_seeded_edit(edit, original, tmp_path / "copy", seed=0)
    assert compare(_preview(original), _preview(copy)) >= NEAR_SCORE


@pytest.mark.parametrize("edit", ["crop 50% area", "crop 60% area, other shape"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_half_area_off_centre_crop_is_the_same_picture(edit: str, seed: int,
                                                          tmp_path: Path) -> None:
    original = shared("mate/Storm.jpg")
    copy = apply_seeded_edit(edit, original, tmp_path / "copy", seed=seed)
    assert compare(_preview(original), _preview(copy)) >= NEAR_SCORE


@pytest.mark.parametrize("edit", ["JPEG quality 12", "blur 0.5%", "brightness -40%",
                                  "contrast -40%", "rotation 5°", "small 15%"])
def test_a_heavily_degraded_copy_is_the_same_picture(edit: str, tmp_path: Path) -> None:
    original = shared("opencv/fruits.jpg")
    copy = apply_seeded_edit(edit, original, tmp_path / "copy", seed=0)
    assert compare(_preview(original), _preview(copy)) >= NEAR_SCORE


@pytest.mark.parametrize("photo", ["opencv/fruits.jpg", "opencv/building.jpg",
                                   "mate/LadyBird.jpg"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_moved_object_is_another_picture(photo: str, seed: int, tmp_path: Path) -> None:
    # What differs is in one place, like an overlay, but it is the picture's own content
    # moved: a second shot.
    original = shared(photo)
    moved = apply_seeded_edit("moved object", original, tmp_path / "moved", seed=seed)
    assert compare(_preview(original), _preview(moved)) < NEAR_SCORE


def test_an_undecodable_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageDecodeError):
        _preview(bad)


# -- neighbour pairs ----------------------------------------------------------------------

def _planted(n: int, seed: int = 3) -> tuple[np.ndarray, set[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 64)).astype(np.float32)
    pairs = set()
    for a in range(0, n - 1, 10):  # every 10th vector gets a close twin
        x[a + 1] = x[a] + 0.1 * rng.standard_normal(64)
        pairs.add((a, a + 1))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, pairs


@pytest.mark.parametrize("exact_limit", [10_000, 100])
def test_neighbour_pairs_find_planted_twins_exactly_or_approximately(
        exact_limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neighbours, "EXACT_LIMIT", exact_limit)
    monkeypatch.setattr(neighbours, "REDUCED_DIM", 32)
    x, planted = _planted(3000)
    i, j, scores = neighbour_pairs(len(x), lambda rows: x[rows], k=5, min_score=0.8)
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    assert (i < j).all()
    assert len(planted & found) >= 0.95 * len(planted)
    assert found <= planted  # random 64-d vectors are never that close
    np.testing.assert_allclose(scores, np.einsum("ij,ij->i", x[i], x[j]), rtol=1e-5)


def test_neighbour_pairs_of_fewer_than_two_vectors_are_empty() -> None:
    i, j, s = neighbour_pairs(1, lambda rows: np.ones((len(rows), 8), np.float32), k=5,
                              min_score=0.5)
    assert len(i) == len(j) == len(s) == 0


def test_odd_shapes_are_refused_or_scored_never_crash(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((8, 4000)) * 255).astype(np.uint8)).save(tmp_path / "sliver.png")
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(ImageDecodeError, match="too small"):
        _preview(tmp_path / "sliver.png")
    photo, blank = _preview(shared("opencv/fruits.jpg")), _preview(tmp_path / "blank.png")
    # Nothing to compare on a blank picture: never "the same picture".
    assert compare(photo, blank) < NEAR_SCORE and compare(blank, blank) < NEAR_SCORE
