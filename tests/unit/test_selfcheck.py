"""The self-check's parts on plain data: judging a run (a drop is reported, a small or
bursty library is not cried wolf over), the edited copies made in memory, the sample
and the runs kept in the store, and the status line."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from findsimilar.cli.commands.status import self_check_text
from findsimilar.daemon.model.verify import NEAR_SCORE, VERIFIER_ID
from findsimilar.daemon.service.edits import KINDS, MAX_SIDE, EditError, edited, load_picture
from findsimilar.daemon.service.selfcheck import binomial_cdf, judge, same_picture
from findsimilar.daemon.storage import selfchecks
from findsimilar.daemon.storage.store import Store

from ..conftest import shared

MODEL = "efficientnet-lite0-gem/v1"


def run(rank1: int, checked: int, top_k: int | None = None, *, vectors: int = 10_000,
        model: str = MODEL, problem: str | None = None) -> dict[str, Any]:
    return {"checked": checked, "rank1": rank1, "top_k": checked if top_k is None else top_k,
            "k": 10, "problem": problem, "when": 0.0,
            "index": {"model": model, "layout": "exact", "lists": 0, "vectors": vectors}}


# -- judging a run -------------------------------------------------------------------

def test_the_binomial_tail_is_exact_on_small_cases() -> None:
    assert binomial_cdf(0, 12, 0.5) == pytest.approx(0.5 ** 12)
    assert binomial_cdf(1, 3, 0.5) == pytest.approx(0.5)
    assert binomial_cdf(3, 3, 0.9) == 1.0 and binomial_cdf(2, 3, 1.0) == 0.0
    assert 0 < binomial_cdf(9000, 10_000, 0.95) < 1e-50  # no underflow to 0 at large n


def test_a_sound_run_is_no_problem() -> None:
    assert judge(run(198, 200), []) is None
    assert judge(run(198, 200), [run(200, 200)] * 5) is None


def test_a_library_of_bursts_losing_some_copies_to_a_sibling_shot_is_no_problem() -> None:
    assert judge(run(150, 200, 196), []) is None  # 75 % at rank 1, nearly all in the top 10
    assert judge(run(150, 200, 196), [run(155, 200, 197)] * 5) is None


def test_a_small_library_is_never_judged_on_a_handful_of_copies() -> None:
    assert judge(run(0, 9, 0, vectors=9), [run(9, 9, vectors=9)]) is None


def test_copies_mostly_lost_at_rank_one_are_a_problem() -> None:
    problem = judge(run(0, 10, 8, vectors=12), [])
    assert problem is not None and problem.startswith("0/10 edited copies found at rank 1")
    assert judge(run(90, 200), []) is not None


def test_copies_missing_from_the_top_k_are_a_problem_only_past_k_photos() -> None:
    assert "top 10" in (judge(run(190, 200, 160), []) or "")
    assert judge(run(14, 15, 10, vectors=15), []) is None  # the top 10 is most of it


def test_a_clear_drop_from_the_runs_before_is_a_problem_and_a_small_one_is_not() -> None:
    before = [run(200, 200)] * 5
    assert judge(run(191, 200), before) is None
    problem = judge(run(175, 200), before)
    assert problem == (
        "175/200 edited copies found at rank 1, down from 1000/1000 in the runs before")


def test_runs_with_a_problem_or_another_model_are_no_baseline() -> None:
    assert judge(run(175, 200), [run(200, 200, problem="damaged")]) is None
    assert judge(run(175, 200), [run(200, 200, model="other")]) is None


# -- edited copies ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return load_picture(shared("opencv/fruits.jpg").read_bytes())


def test_a_picture_is_loaded_upright_small_and_rgb(picture: Image.Image) -> None:
    big = Image.new("RGB", (1500, 500), (200, 10, 10))
    out = io.BytesIO()
    big.save(out, "JPEG")
    loaded = load_picture(out.getvalue())
    assert loaded.mode == "RGB" and max(loaded.size) == MAX_SIDE and loaded.size[1] in (170, 171)
    assert picture.mode == "RGB" and max(picture.size) <= MAX_SIDE


@pytest.mark.parametrize("kind", KINDS)
def test_each_edit_is_the_same_for_the_same_seed_and_another_for_another(
        picture: Image.Image, kind: str) -> None:
    first = edited(picture, kind, 7)  # type: ignore[arg-type]
    assert first == edited(picture, kind, 7)  # type: ignore[arg-type]
    assert first != edited(picture, kind, 8)  # type: ignore[arg-type]
    with Image.open(io.BytesIO(first)) as copy:
        assert copy.format == "JPEG"
        if kind == "crop":
            assert copy.width < picture.width and copy.height < picture.height
        if kind == "small":
            assert 160 <= max(copy.size) <= 320
        if kind in ("jpeg", "brightness"):
            assert copy.size == picture.size
        if kind == "brightness":
            before = np.asarray(picture, np.float32).mean()
            assert abs(np.asarray(copy.convert("RGB"), np.float32).mean() - before) > 10


def test_the_heavy_jpeg_is_much_smaller_than_the_others(picture: Image.Image) -> None:
    assert len(edited(picture, "jpeg", 1)) < len(edited(picture, "brightness", 1)) / 2


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header that declares ``width``×``height`` (and no pixels)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


@pytest.mark.parametrize("data", [png_declaring(10_000, 10_000), b"not a picture",
                                  shared("opencv/fruits.jpg").read_bytes()[:2000]])
def test_a_picture_too_big_or_not_readable_is_an_edit_error(data: bytes) -> None:
    with pytest.raises(EditError):
        edited(load_picture(data), "crop", 0)


# -- the store -------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "store.db")
    yield opened
    opened.close()


def library(store: Store, pictures: int) -> dict[str, int]:
    """``pictures`` contents, each in two files (a/NAME, b/NAME); their feature ids."""
    rows = [{"path": f"/{folder}/p{i:03d}.jpg", "size": 1, "mtime_ns": 1, "inode": i,
             "content_hash": f"h{i:03d}", "status": "ok", "error": None}
            for i in range(pictures) for folder in ("b", "a")]
    store.upsert_files(rows)
    vectors = np.eye(pictures, 8, dtype=np.float32)
    ids = store.add_features(MODEL, [(f"h{i:03d}", vectors[i]) for i in range(pictures)])
    return {f"h{i:03d}": fid for i, fid in enumerate(ids)}


def test_the_sample_is_distinct_pictures_the_same_for_a_seed(store: Store) -> None:
    ids = library(store, 50)
    first = selfchecks.sample(store, MODEL, 20, seed=3)
    assert len(first) == 20 and len({s.content_hash for s in first}) == 20
    assert first == selfchecks.sample(store, MODEL, 20, seed=3)
    assert first != selfchecks.sample(store, MODEL, 20, seed=4)
    assert all(s.feature_id == ids[s.content_hash] and s.path.startswith("/a/") for s in first)
    assert len(selfchecks.sample(store, MODEL, 200, seed=3)) == 50
    assert selfchecks.sample(store, "another-model", 20, seed=3) == []


def test_the_runs_are_kept_in_the_store_the_last_twenty(tmp_path, store: Store) -> None:
    for number in range(25):
        selfchecks.record_run(store, {**run(number, 30), "seed": number})
    store.close()
    reopened = Store(tmp_path / "store.db")
    try:
        kept = selfchecks.runs(reopened)
    finally:
        reopened.close()
    assert [r["seed"] for r in kept] == list(range(5, 25))


def test_the_original_is_its_content_its_raw_partner_or_a_confirmed_duplicate(
        store: Store) -> None:
    ids = library(store, 4)
    store.upsert_files([{"path": "/a/p000.nef", "size": 1, "mtime_ns": 1, "inode": 99,
                         "content_hash": "raw", "status": "ok", "error": None}])
    [raw] = store.add_features(MODEL, [("raw", np.ones(8, np.float32))])
    store.save_pair_scores(VERIFIER_ID, {("h000", "h001"): NEAR_SCORE,
                                         ("h000", "h002"): NEAR_SCORE - 0.01})
    item = selfchecks.Sampled(ids["h000"], "h000", "/a/p000.jpg")
    assert same_picture(store, item, ids["h000"])  # its own content, whichever file
    assert same_picture(store, item, raw)  # p000.nef beside p000.jpg
    assert same_picture(store, item, ids["h001"])  # confirmed the same picture
    assert not same_picture(store, item, ids["h002"])  # checked: not the same
    assert not same_picture(store, item, ids["h003"])  # never checked
    assert not same_picture(store, selfchecks.Sampled(ids["h001"], "h001", "/a/p001.jpg"),
                            raw)


# -- the status line -------------------------------------------------------------------

def test_the_status_line_says_the_counts_and_how_long_ago() -> None:
    last = {**run(198, 200, 200), "when": 1000.0, "skipped": 0}
    text = self_check_text({"last": last, "running": False}, now=1000.0 + 2 * 3600 + 5)
    assert text == "198/200 edited copies found at rank 1 (200 in the top 10), 2 h ago"
    assert self_check_text({"last": None, "running": True}) == "not run yet; running now"
