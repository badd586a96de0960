"""Which copy `findsimilar dupes` keeps, on real photos and real edits: more picture,
colour over greyscale, the original over a conversion of its pixels, camera metadata;
facts that stay with the content when its files are relinked (moved out and back,
trashed and restored by `dupes undo`, indexed by an older version); hard links."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from tests.conftest import CliFn, shared


def _dupes(cli: CliFn, *args: str) -> dict:
    return json.loads(cli("dupes", *args, "--json", ok=True).stdout)


def _group_of(result: dict, name: str) -> dict:
    return next(g for g in result["groups"] if any(Path(p).name == name for p in g["files"]))


@pytest.fixture(scope="module")
def edits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Originals next to the edits users make of them (built once per module)."""
    root = tmp_path_factory.mktemp("keeper-edits")
    shutil.copy2(shared("opencv/fruits.jpg"), root / "fruits.jpg")  # 512x480
    with Image.open(root / "fruits.jpg") as im:
        im.resize((256, 240), Image.LANCZOS).save(root / "fruits small.jpg", quality=98)
        # A 90% crop saved at top quality: a bigger file, less picture.
        im.crop((26, 24, 486, 456)).save(root / "fruits crop.jpg", quality=100)
    shutil.copy2(shared("opencv/baboon.jpg"), root / "baboon.jpg")
    with Image.open(root / "baboon.jpg") as im:
        ImageOps.grayscale(im).save(root / "baboon.pgm")  # greyscale, lossless, bigger
        im.convert("RGBA").save(root / "baboon.png")  # the JPEG's pixels, with alpha
    # A camera photo (Canon EXIF) and a lossless conversion of it, without EXIF.
    shutil.copy2(shared("mate/Storm.jpg"), root / "IMG_4012.jpg")
    with Image.open(root / "IMG_4012.jpg") as im:
        im.save(root / "IMG_4012.png")
        # A re-encode at top quality: bigger, different pixels, its EXIF dropped.
        im.save(root / "IMG_4012 export.jpg", quality=100)
    return root


@pytest.fixture
def library(edits: Path, tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    shutil.copytree(edits, root, copy_function=shutil.copy2)
    return root


def test_keepers_are_the_copies_a_photographer_would_keep_and_say_why(
        cli: CliFn, data_dir: Path, library: Path) -> None:
    cli("index", "-q", str(library), ok=True)
    result = _dupes(cli)
    fruits = _group_of(result, "fruits.jpg")
    assert Path(fruits["keep"]).name == "fruits.jpg"
    assert sorted(Path(p).name for p in fruits["files"]) == [
        "fruits crop.jpg", "fruits small.jpg", "fruits.jpg"]
    assert fruits["reason"].startswith("most pixels (512×480 vs ")

    baboon = _group_of(result, "baboon.jpg")
    assert Path(baboon["keep"]).name == "baboon.jpg"
    assert baboon["reason"] == ("colour (baboon.pgm is greyscale); "
                                "the original: baboon.png holds the same pixels converted")
    facts = {Path(m["path"]).name: m for m in baboon["members"]}
    assert (facts["baboon.png"]["alpha"], facts["baboon.png"]["lossless"]) == (True, True)
    assert facts["baboon.pgm"]["colour"] is False and facts["baboon.jpg"]["colour"] is True

    camera = _group_of(result, "IMG_4012.jpg")
    assert Path(camera["keep"]).name == "IMG_4012.jpg"
    assert camera["reason"] == (
        "the original: IMG_4012.png holds the same pixels converted; "
        "camera metadata (Canon EOS 400D DIGITAL; IMG_4012 export.jpg has none)")
    assert {m["camera"] for m in camera["members"]} == {"Canon EOS 400D DIGITAL", None}
    text = cli("dupes", "--html", str(library.parent / "review.html"), ok=True).stdout
    assert "kept: colour (baboon.pgm is greyscale)" in text
    page = (library.parent / "review.html").read_text()
    assert "Kept: most pixels (512×480 vs " in page
    assert "the original: IMG_4012.png holds the same pixels converted" in page


def test_a_relinked_original_keeps_its_facts_and_stays_the_keeper(
        local_cli: CliFn, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's case: fruits.jpg moved out of the tree and back (its content relinked,
    not decoded), then a small copy added: the small copy must not be kept."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    photos, away = tmp_path / "photos", tmp_path / "away"
    photos.mkdir()
    away.mkdir()
    shutil.copy2(shared("opencv/fruits.jpg"), photos / "fruits.jpg")
    local_cli("index", "-q", str(photos), ok=True)
    os.rename(photos / "fruits.jpg", away / "fruits.jpg")
    local_cli("index", "-q", str(photos), ok=True)  # gone: its content's facts stay
    os.rename(away / "fruits.jpg", photos / "fruits.jpg")
    with Image.open(photos / "fruits.jpg") as im:
        im.resize((256, 240)).save(photos / "small copy.jpg", quality=98)
    local_cli("index", "-q", str(photos), ok=True)
    group = _group_of(_dupes(local_cli), "fruits.jpg")
    assert group["keep"] == str(photos / "fruits.jpg")
    assert (group["members"][0]["width"], group["members"][0]["height"]) == (512, 480)

    # Trashed (the small copy kept by a reference folder), restored by undo, relinked.
    ref = photos / "ref"
    ref.mkdir()
    os.rename(photos / "small copy.jpg", ref / "small copy.jpg")
    local_cli("index", "-q", str(photos), ok=True)
    _dupes(local_cli, "--keep-in", str(ref), "--action", "trash", "--apply")
    assert not (photos / "fruits.jpg").exists()
    local_cli("index", "-q", str(photos), ok=True)
    local_cli("dupes", "undo", ok=True)
    local_cli("index", "-q", str(photos), ok=True)
    group = _group_of(_dupes(local_cli), "fruits.jpg")
    assert group["keep"] == str(photos / "fruits.jpg")
    assert group["members"][0]["width"] == 512 and group["reason"].startswith("most pixels")


def test_facts_an_older_version_did_not_keep_are_learnt_before_a_keeper_is_chosen(
        local_cli: CliFn, data_dir: Path, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy2(shared("opencv/baboon.jpg"), photos / "baboon.jpg")
    with Image.open(photos / "baboon.jpg") as im:
        ImageOps.grayscale(im).save(photos / "baboon.pgm")
    local_cli("index", "-q", str(photos), ok=True)
    # The store as an older version left it: sizes per file, no colour, nothing else.
    with sqlite3.connect(data_dir / "store.db") as db:
        db.execute("update pictures set colour = null, alpha = null, sharpness = null, "
                   "lossless = null, pixel_digest = null")
    group = _group_of(_dupes(local_cli), "baboon.jpg")
    assert Path(group["keep"]).name == "baboon.jpg"
    assert group["reason"] == "colour (baboon.pgm is greyscale)"
    with sqlite3.connect(data_dir / "store.db") as db:
        assert db.execute("select count(*) from pictures where colour is null").fetchone() == (0,)

    # A picture whose facts are unknown and whose file cannot be read: no keeper is
    # chosen; the group is left out, and the listing says why.
    with sqlite3.connect(data_dir / "store.db") as db:
        db.execute("update pictures set colour = null")
    (photos / "baboon.pgm").write_bytes(b"not a picture any more")
    result = _dupes(local_cli)
    assert result["groups"] == []
    [why] = result["stats"]["left_out"]
    assert str(photos / "baboon.pgm") in why["reason"]
    assert "no keeper is chosen on unknown facts" in why["reason"]


def test_hard_links_of_one_file_are_not_duplicates(local_cli: CliFn, data_dir: Path,
                                                   tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy2(shared("opencv/fruits.jpg"), photos / "a.jpg")
    os.link(photos / "a.jpg", photos / "b.jpg")
    local_cli("index", "-q", str(photos), ok=True)
    assert _dupes(local_cli)["groups"] == []
    assert "no duplicates found" in local_cli("dupes", ok=True).stdout.lower()
    shutil.copy2(photos / "a.jpg", photos / "c.jpg")  # a real copy: two files, one group
    local_cli("index", "-q", str(photos), ok=True)
    [group] = _dupes(local_cli)["groups"]
    assert group["tier"] == "exact" and len(group["files"]) == 2
    assert [m.get("links") for m in group["members"] if m["path"].endswith("a.jpg")] == [
        [str(photos / "b.jpg")]]
    assert "1 duplicate files, 82.4 kB reclaimable" in local_cli("dupes", ok=True).stderr
