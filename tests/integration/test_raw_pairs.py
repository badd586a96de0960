"""RAW+JPEG pairs through the real CLI (issue 16, item 2): a DNG written from a shared
photo (tests/raw_files.py; LibRaw reads it) and the camera's JPEG of it beside it, same
stem, are one photo: one search result (the other file its `pair`), both files in
`--paths`; `dupes` marks the pair, keeps the RAW and acts on neither unless asked;
in-process and through a real daemon."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image

from ..conftest import CliFn, json_lines, shared
from ..raw_files import write_dng


def test_a_raw_jpeg_pair_is_one_result_one_pair_and_never_parted_unless_asked(
        cli: CliFn, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    source = shared("opencv/fruits.jpg")
    raw = write_dng(lib / "IMG_0042.DNG", source)
    jpeg = lib / "IMG_0042.JPG"
    with Image.open(source) as im:
        im.save(jpeg, quality=90)
    for rel in ("skimage/coffee.png", "opencv/baboon.jpg"):
        shutil.copy(shared(rel), lib / Path(rel).name)
    cli("index", "-q", str(lib), ok=True)

    (line,) = json_lines(cli("--json", "-k", "2", str(source), ok=True).stdout)
    first = line["results"][0]
    assert {first["path"], first["pair"]} == {str(raw), str(jpeg)}  # one place, both files
    assert len(line["results"]) == 2 and "pair" not in line["results"][1]
    paths = cli("--paths", "-k", "1", str(source), ok=True).stdout.splitlines()
    assert sorted(paths) == sorted([str(raw), str(jpeg)])

    listing = json.loads(cli("dupes", str(lib), "--json", ok=True).stdout)
    (group,) = [g for g in listing["groups"] if str(raw) in g["files"]]
    assert group["keep"] == str(raw) and group["reason"].startswith("the camera RAW")
    assert {m["path"]: m.get("raw_pair") for m in group["members"]} == {
        str(raw): str(jpeg), str(jpeg): str(raw)}
    dry = cli("dupes", str(lib), "--action", "trash", ok=True)
    assert f"skip      {jpeg}: one photo with IMG_0042.DNG" in dry.stdout
    cli("dupes", str(lib), "--action", "trash", "--apply", ok=True)
    assert jpeg.exists() and raw.exists()
    cli("dupes", str(lib), "--action", "trash", "--apply", "--include-raw-pairs", ok=True)
    assert raw.exists() and not jpeg.exists()
