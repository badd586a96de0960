"""JPEG XL through the real command line, in-process and through a real daemon: `.jxl`
files written from real photos (lossy and lossless, by libjxl's encoder) are indexed,
found, listed as near copies of their JPEG and shown; hostile `.jxl` files fail with
their reasons and the model worker decodes on. HEIC and AVIF (written here by
pillow-heif and Pillow) keep working beside them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from findsimilar.daemon.model.decode import register_plugins

from ..conftest import CliFn, shared
from ..jxl_samples import codestream_header, write_jxl

register_plugins()  # lets Pillow write HEIC
# Small photos: libjxl's encoder takes ~0.1 s on each.
JPEGS = ["opencv/fruits.jpg", "opencv/baboon.jpg", "opencv/butterfly.jpg",
         "opencv/building.jpg", "skimage/coffee.png"]
HEIF_SOURCES = {"china.heic": ("sklearn/china.jpg", "HEIF"),
                "chelsea.avif": ("skimage/chelsea.png", "AVIF")}


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """photos/: the JPEGs (and one PNG), a lossy JXL of fruits, a lossless JXL of baboon,
    a HEIC and an AVIF whose sources wait in outside/, and four hostile `.jxl` files."""
    photos, outside = tmp_path / "photos", tmp_path / "outside"
    photos.mkdir()
    outside.mkdir()
    for rel in JPEGS:
        shutil.copy(shared(rel), photos / Path(rel).name)
    write_jxl(photos / "fruits.jpg", photos / "fruits.jxl")
    write_jxl(photos / "baboon.jpg", photos / "baboon lossless.jxl", lossless=True)
    for name, (rel, fmt) in HEIF_SOURCES.items():
        source = outside / Path(rel).name
        shutil.copy(shared(rel), source)
        with Image.open(source) as im:
            im.convert("RGB").save(photos / name, fmt, quality=80)
    data = (photos / "fruits.jxl").read_bytes()
    (photos / "truncated.jxl").write_bytes(data[: len(data) // 2])
    damaged = bytearray(data)
    damaged[20:600] = bytes(580)
    (photos / "damaged.jxl").write_bytes(bytes(damaged))
    (photos / "notes.jxl").write_text("shopping list: milk, eggs\n")
    (photos / "bomb.jxl").write_bytes(codestream_header(100_000, 100_000))
    return tmp_path


def first_hit(cli: CliFn, query: Path) -> str:
    line = json.loads(cli("--json", "-k", "3", str(query), ok=True).stdout)
    return line["results"][0]["path"]


def test_jpeg_xl_files_are_indexed_found_listed_and_shown_and_hostile_ones_fail(
        cli: CliFn, data_dir: Path, library: Path) -> None:
    photos, outside = library / "photos", library / "outside"
    summary = json.loads(cli("index", "--json", str(photos), ok=True).stdout)
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert set(reasons) == {"truncated.jxl", "damaged.jxl", "notes.jxl", "bomb.jxl"}, reasons
    assert reasons["truncated.jxl"].startswith("truncated or damaged image data")
    assert reasons["damaged.jxl"].startswith("truncated or damaged image data")
    assert reasons["notes.jxl"] == "not a recognised image format"
    assert "decompression bomb: 100000x100000" in reasons["bomb.jxl"]
    assert summary["new"] == len(JPEGS) + 2 + len(HEIF_SOURCES)

    # Each JXL is its source's best match, and the other way round.
    assert first_hit(cli, photos / "fruits.jpg") == str(photos / "fruits.jxl")
    assert first_hit(cli, photos / "baboon.jpg") == str(photos / "baboon lossless.jxl")
    assert first_hit(cli, photos / "fruits.jxl") == str(photos / "fruits.jpg")
    # HEIC and AVIF still work: their sources, from outside the index, find them first.
    for name, (rel, _) in HEIF_SOURCES.items():
        assert first_hit(cli, outside / Path(rel).name) == str(photos / name)

    groups = json.loads(cli("dupes", "--json", ok=True).stdout)["groups"]
    listed = {frozenset(Path(p).name for p in g["files"]): g["tier"] for g in groups}
    assert listed.get(frozenset({"fruits.jpg", "fruits.jxl"})) == "near", groups
    assert listed.get(frozenset({"baboon.jpg", "baboon lossless.jxl"})) == "near", groups

    shown = json.loads(cli("show", "--json", "-k", "2", str(photos / "baboon lossless.jxl"),
                           ok=True).stdout)
    (query,) = shown["queries"]
    assert query["results"][0]["path"] == str(photos / "baboon.jpg")
    assert query["results"][0]["tier"] == "near"
    assert Path(shown["page"]).is_file()

    status = json.loads(cli("status", "--json", ok=True).stdout)
    assert status["failed"] == 4
    if status.get("daemon"):  # only the model worker decodes: the daemon loads no libjxl
        maps = Path(f"/proc/{status['daemon']['pid']}/maps").read_text()
        assert "pillow_jxl" not in maps and "_imaging" not in maps
