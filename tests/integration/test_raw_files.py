"""A folder of camera RAW files (real DNGs written by tests/raw_files.py, read by LibRaw)
through the real CLI, in-process and through a real daemon: indexed, found by their
photos the right way up, grouped by `dupes`, shown by `show`; hostile RAWs are recorded
as failed with a reason and the daemon stays up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ..conftest import CliFn, json_lines, shared
from ..raw_files import hostile_raws, write_dng

# (shared photo, EXIF orientation the camera was held at, embedded preview or not)
RAWS = {
    "fruits.dng": ("opencv/fruits.jpg", 1, True),
    "butterfly.dng": ("opencv/butterfly.jpg", 6, False),
    "coffee.dng": ("skimage/coffee.png", 8, True),
    "chelsea.dng": ("skimage/chelsea.png", 3, False),
}
DISTRACTORS = ["opencv/baboon.jpg", "mate/Aqua.jpg", "sklearn/china.jpg"]
HOSTILE = {"truncated.dng": "truncated", "garbage.dng": "damaged", "huge.dng": "bomb",
           "fuji-garbage.raf": "LibRaw", "header-only.nef": "damaged"}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library once per module (DNG writing is the slow part); tests copy it."""
    root = tmp_path_factory.mktemp("raw-library")
    lib = root / "lib"
    lib.mkdir()
    for name, (rel, orientation, preview) in RAWS.items():
        write_dng(lib / name, shared(rel), orientation=orientation,
                  preview=1024 if preview else None)
    for rel in DISTRACTORS:
        shutil.copy(shared(rel), lib / Path(rel).name)
    shutil.copy(lib / "fruits.dng", lib / "fruits copy.dng")  # an exact duplicate
    # The same picture as a JPEG elsewhere: a near duplicate of a turned RAW.
    Image.open(shared("opencv/butterfly.jpg")).save(lib / "butterfly export.jpg", quality=85)
    hostile_raws(lib / "broken", lib / "fruits.dng")
    (lib / "broken" / "not-raw.cr2").unlink()  # an ordinary TIFF: indexed, not hostile
    queries = root / "queries"
    queries.mkdir()
    for name, (rel, _, _) in RAWS.items():
        upright = Image.open(shared(rel)).convert("RGB")
        upright.save(queries / f"{Path(name).stem}.jpg", quality=90)
        upright.transpose(Image.Transpose.ROTATE_90).save(
            queries / f"{Path(name).stem} turned.jpg", quality=90)
    return root


@pytest.fixture
def library(made: Path, tmp_path: Path) -> Path:
    shutil.copytree(made, tmp_path / "raw", copy_function=shutil.copy2)
    return tmp_path / "raw"


def _scores(cli: CliFn, query: Path) -> dict[str, float]:
    (line,) = json_lines(cli("--json", "-k", "20", str(query), ok=True).stdout)
    return {Path(r["path"]).name: r["score"] for r in line["results"]}


def test_a_folder_of_raws_is_indexed_searched_grouped_and_shown(cli: CliFn,
                                                                library: Path) -> None:
    lib = library / "lib"
    summary = json.loads(cli("index", "--json", str(lib), ok=True).stdout)
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert set(reasons) == set(HOSTILE)
    for name, word in HOSTILE.items():
        assert word in reasons[name], reasons
    assert summary["new"] == len(RAWS) + len(DISTRACTORS) + 2
    # The photo finds its RAW first (beside other copies of the same picture), whichever
    # way the camera was held; the RAW is stored upright: the photo turned a quarter
    # matches it less.
    same = {"fruits copy.dng", "butterfly export.jpg"}
    for name in RAWS:
        upright = _scores(cli, library / "queries" / f"{Path(name).stem}.jpg")
        others = {f: s for f, s in upright.items() if f not in same - {name}}
        assert max(others, key=others.get) == name, upright
        assert upright[name] > 0.85
        turned = _scores(cli, library / "queries" / f"{Path(name).stem} turned.jpg")
        assert turned.get(name, -1) < upright[name] - 0.05, (name, turned[name], upright[name])
    # A RAW as the query finds its copy first.
    by_raw = _scores(cli, lib / "fruits.dng")
    assert max(by_raw, key=by_raw.get) == "fruits copy.dng" and by_raw["fruits copy.dng"] > 0.999
    groups = json.loads(cli("dupes", str(lib), "--json", ok=True).stdout)["groups"]
    by_file = {Path(f).name: g["tier"] for g in groups for f in g["files"]}
    assert by_file.get("fruits copy.dng") == "exact" and by_file.get("fruits.dng") == "exact"
    # the pixel check read the turned RAW (no preview: demosaiced) the right way up
    assert by_file.get("butterfly.dng") == "near" == by_file.get("butterfly export.jpg")
    # `show`: a RAW without a preview (Pillow cannot decode its mosaic) gets a thumbnail
    shown = json.loads(cli("show", "--json", "-k", "3", str(library / "queries/chelsea.jpg"),
                           "--out", str(library / "page"), ok=True).stdout)
    assert Path(shown["queries"][0]["results"][0]["path"]).name == "chelsea.dng"
    page = (library / "page" / "index.html").read_text()
    assert 'aria-label="no preview"' not in page and page.count("<img src=") == 4
    status = json.loads(cli("status", "--json", ok=True).stdout)  # the daemon is still up
    assert status["failed"] == len(HOSTILE)
