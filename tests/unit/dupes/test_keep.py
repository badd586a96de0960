"""daemon/dupes/keep.py: which file of a duplicate group is kept, rule by rule, on plain
rows (no model, no store)."""

from __future__ import annotations

from typing import Any

import pytest

from findsimilar.daemon.dupes.grouping import FileRow
from findsimilar.daemon.dupes.keep import (
    DEFAULT_KEEP,
    KEEP_RULES,
    choose_keeper,
    listed_group,
    pick_keeper,
)


def row(path: str, **facts: Any) -> FileRow:
    """An indexed file as the store lists it; unspecified facts are those of a 4000x3000
    JPEG of 2 MB from the same moment."""
    base = {"path": path, "size": 2_000_000, "mtime_ns": 1_700_000_000_000_000_000,
            "content_hash": f"hash of {path}", "format": "JPEG", "width": 4000, "height": 3000,
            "content_width": None, "content_height": None}
    return FileRow({**base, **facts})


def photo(path: str, **facts: Any) -> FileRow:
    """A file whose picture facts are known: a colour JPEG without camera metadata,
    unless ``facts`` say otherwise."""
    base = {"facts_known": 1, "colour": 1, "alpha": 0, "lossless": 0, "sharpness": 100.0}
    return row(path, **{**base, **facts})


def keeper(rows: list[FileRow], rules: tuple[str, ...] = DEFAULT_KEEP) -> str:
    return pick_keeper(rows, rules)["path"]


def test_a_downscale_or_a_crop_never_wins_however_big_its_file() -> None:
    small = row("/p/small.jpg", width=2000, height=1500, size=9_000_000)
    assert keeper([small, row("/p/big.jpg")]) == "/p/big.jpg"
    # 3840x2880 has 92% of the pixels (a slight downscale or crop): still fewer.
    nearly = row("/p/nearly.jpg", width=3840, height=2880, size=3_000_000)
    assert keeper([row("/p/big.jpg"), nearly]) == "/p/big.jpg"
    # The same pixels, turned by EXIF: as much picture, so the next rule decides.
    turned = row("/p/turned.jpg", width=3000, height=4000, size=3_000_000)
    assert keeper([row("/p/big.jpg"), turned]) == "/p/turned.jpg"
    # Only a size estimated inside a frame is fuzzy: within 10% counts as equal.
    framed = row("/p/framed.jpg", width=4200, height=3150, content_width=3840,
                 content_height=2880, size=3_000_000)
    assert keeper([row("/p/small-plain.jpg", width=3900, height=2925), framed],
                  ("resolution", "size")) == "/p/small-plain.jpg"


def test_the_reason_names_the_sizes_that_decided() -> None:
    keep, reason = choose_keeper([photo("/p/fruits.jpg", width=512, height=480),
                                  photo("/p/fruits small.jpg", width=256, height=240,
                                        size=9_000_000)], DEFAULT_KEEP)
    assert (keep["path"], reason) == ("/p/fruits.jpg", "most pixels (512×480 vs 256×240)")


def test_colour_is_kept_over_greyscale_whatever_the_bytes() -> None:
    colour = photo("/p/baboon.jpg", width=512, height=512, size=100_000)
    grey = photo("/p/baboon.pgm", width=512, height=512, size=262_000, format="PPM",
                 colour=0, lossless=1)
    keep, reason = choose_keeper([grey, colour], DEFAULT_KEEP)
    assert (keep["path"], reason) == ("/p/baboon.jpg", "colour (baboon.pgm is greyscale)")


def test_the_original_is_kept_over_a_lossless_file_holding_its_pixels() -> None:
    jpeg = photo("/p/baboon.jpg", size=180_000, pixel_digest="d1")
    png = photo("/p/baboon.png", size=613_000, format="PNG", lossless=1, alpha=1,
                pixel_digest="d1")
    keep, reason = choose_keeper([png, jpeg], DEFAULT_KEEP)
    assert (keep["path"], reason) == (
        "/p/baboon.jpg", "the original: baboon.png holds the same pixels converted")
    # Pixels that differ (an edit saved as PNG): not a conversion; the next rules decide.
    edited = photo("/p/edited.png", size=613_000, format="PNG", lossless=1, pixel_digest="d2")
    assert keeper([edited, jpeg]) == "/p/edited.png"
    # Unknown digests (the JPEG's was not computed) prove nothing either.
    assert keeper([png, photo("/p/other.jpg", size=180_000)]) == "/p/baboon.png"


def test_camera_metadata_wins_before_the_bytes() -> None:
    camera = photo("/p/IMG_0001.jpg", size=3_000_000, make="Canon", model="EOS 5D",
                   taken="2008:04:20 19:12:06")
    converted = photo("/p/IMG_0001.png", size=15_000_000, format="PNG", lossless=1)
    keep, reason = choose_keeper([converted, camera], DEFAULT_KEEP)
    assert (keep["path"], reason) == (
        "/p/IMG_0001.jpg", "camera metadata (Canon EOS 5D; IMG_0001.png has none)")


def test_facts_not_known_drop_no_file() -> None:
    # Content indexed by an older version: only its sizes are known.
    old = row("/p/old.png", size=5_000_000, format="PNG")
    grey = photo("/p/grey.jpg", colour=0)
    assert keeper([old, grey], ("colour", "camera", "size")) == "/p/old.png"


def test_picture_pixels_count_not_the_bars_around_them() -> None:
    # The letterboxed copy is a bigger file in a bigger canvas, with a smaller picture.
    boxed = row("/p/boxed.jpg", width=4000, height=4600, content_width=3000,
                content_height=2250, size=5_000_000)
    assert keeper([boxed, row("/p/plain.jpg")]) == "/p/plain.jpg"


def test_among_equally_sharp_copies_one_without_a_frame_is_kept() -> None:
    framed = row("/a/framed.jpg", width=4100, height=3100, content_width=4000,
                 content_height=3000, size=9_000_000)
    assert keeper([framed, row("/b/plain.jpg")]) == "/b/plain.jpg"
    # A border of under 1.5% is not a frame: the bigger file wins again.
    rim = row("/a/rim.jpg", width=4040, height=3030, content_width=4000,
              content_height=3000, size=9_000_000)
    assert keeper([rim, row("/b/plain.jpg")]) == "/a/rim.jpg"


@pytest.mark.parametrize(("rule", "winner"), [
    ("size", "/p/large.png"),
    ("format", "/p/camera.jpg"),
    ("oldest", "/p/camera.jpg"),
    ("newest", "/p/large.png"),
    ("shortest-path", "/p/b.webp"),
])
def test_each_rule_alone_picks_its_file(rule: str, winner: str) -> None:
    rows = [row("/p/camera.jpg", size=1_000, mtime_ns=1),
            row("/p/large.png", format="PNG", size=3_000, mtime_ns=3),
            row("/p/b.webp", format="WEBP", size=2_000, mtime_ns=2)]
    assert keeper(rows, (rule,)) == winner


def test_formats_rank_camera_originals_first_and_unknown_ones_last() -> None:
    ranked = ["JPEG", "PNG", "WEBP", "BMP", "XCF"]
    for better, worse in zip(ranked, ranked[1:], strict=False):
        # The path would pick /p/a: only the format can pick /p/b.
        assert keeper([row("/p/a", format=worse), row("/p/b", format=better)],
                      ("format",)) == "/p/b"
    # Case does not matter; MPO (a camera's JPEG) ranks with JPEG, so the path decides.
    assert keeper([row("/p/z", format="MPO"), row("/p/a", format="jpeg")], ("format",)) == "/p/a"


def test_rules_apply_in_the_order_given() -> None:
    sharp = row("/p/sharp.jpg", size=1_000_000)
    heavy = row("/p/heavy.png", width=1000, height=750, size=8_000_000, format="PNG")
    assert keeper([sharp, heavy], ("resolution", "size")) == "/p/sharp.jpg"
    assert keeper([sharp, heavy], ("size", "resolution")) == "/p/heavy.png"


def test_a_tie_on_every_rule_ends_on_the_path_and_missing_facts_do_not_crash() -> None:
    assert keeper([row("/p/b.jpg"), row("/p/a.jpg")], KEEP_RULES) == "/p/a.jpg"
    blank = {"size": None, "mtime_ns": None, "format": None, "width": None, "height": None}
    assert keeper([row("/p/y", **blank), row("/p/x", **blank)], KEEP_RULES) == "/p/x"


def test_a_reference_folder_file_is_kept_however_poor_and_every_member_is_described() -> None:
    best = row("/photos/best.jpg", content_hash="h1")
    copy = row("/photos/copy.jpg", content_hash="h1")
    poor = row("/ref/poor.jpg", content_hash="h2", width=800, height=600, size=90_000)
    group = listed_group("near", [best, poor, copy], ["/ref"], DEFAULT_KEEP, score=0.91234)
    assert group["keep"] == "/ref/poor.jpg"
    assert group["reason"] == "in a reference folder (--keep-in)"
    assert group["files"] == ["/ref/poor.jpg", "/photos/best.jpg", "/photos/copy.jpg"]
    assert group["score"] == 0.9123
    assert [(m["match"], m["protected"]) for m in group["members"]] == [
        ("keep", True), ("near", False), ("near", False)]
    assert group["members"][1] == {
        "path": "/photos/best.jpg", "hash": "h1", "size": 2_000_000, "mtime": 1.7e9,
        "width": 4000, "height": 3000, "format": "JPEG", "match": "near", "protected": False}


def test_without_a_reference_folder_the_rules_choose_and_byte_twins_are_exact() -> None:
    best = row("/photos/best.jpg", content_hash="h1")
    twin = row("/photos/twin.jpg", content_hash="h1")
    small = row("/photos/small.jpg", content_hash="h2", width=800, height=600)
    group = listed_group("near", [small, twin, best], ["/elsewhere"], DEFAULT_KEEP, None)
    assert group["keep"] == "/photos/best.jpg" and group["score"] is None
    assert group["reason"] == "most pixels (4000×3000 vs 800×600)"
    assert {m["path"]: m["match"] for m in group["members"]} == {
        "/photos/best.jpg": "keep", "/photos/twin.jpg": "exact", "/photos/small.jpg": "near"}


def test_the_command_line_offers_the_daemons_rules_and_default() -> None:
    # The CLI keeps its own copy (it never imports the daemon): the two must agree.
    from findsimilar.cli.commands import dupes

    assert dupes.KEEP_RULES == KEEP_RULES
    keep_by = next(p for p in dupes.list_cmd.params if p.name == "keep_by")
    assert tuple(keep_by.default.split(",")) == DEFAULT_KEEP


def test_a_file_with_a_hard_link_in_a_reference_folder_is_protected() -> None:
    linked = row("/photos/a.jpg", content_hash="h1")
    linked.links = ["/ref/a.jpg"]  # one inode, listed by its first path
    other = row("/photos/b.jpg", content_hash="h1")
    group = listed_group("exact", [other, linked], ["/ref"], DEFAULT_KEEP, 1.0)
    assert group["keep"] == "/photos/a.jpg"
    assert [(m["path"], m["protected"]) for m in group["members"]] == [
        ("/photos/a.jpg", True), ("/photos/b.jpg", False)]


def test_the_camera_raw_is_kept_over_any_rendering_of_it() -> None:
    from findsimilar.daemon.dupes.keep import choose_keeper

    raw = photo("/p/IMG_1.CR2", format="CR2", size=25_000_000, lossless=1, make="Canon")
    camera_jpeg = photo("/p/IMG_1.JPG", size=8_000_000, make="Canon")
    bigger_export = photo("/exports/IMG_1.jpg", width=8000, height=6000, size=30_000_000)
    kept, why = choose_keeper([camera_jpeg, bigger_export, raw], DEFAULT_KEEP)
    assert kept["path"] == "/p/IMG_1.CR2"
    assert why.startswith("the camera RAW (IMG_1.JPG and IMG_1.jpg are a rendering")
    # A DNG is known by its format too, whatever its name; two RAWs go on by the rules.
    dng = photo("/p/scan", format="DNG", width=3000, height=2000)
    assert keeper([camera_jpeg, dng]) == "/p/scan"
    assert keeper([raw, photo("/q/IMG_1.NEF", format="NEF", width=6000, height=4000)]) \
        == "/q/IMG_1.NEF"  # then the most pixels


def test_jpeg_xl_ranks_with_the_modern_conversions() -> None:
    jxl = photo("/p/a.jxl", format="JPEG XL")
    assert keeper([jxl, photo("/p/a.bmp", format="BMP")], ("format",)) == "/p/a.jxl"
    assert keeper([jxl, photo("/p/a.png", format="PNG")], ("format",)) == "/p/a.png"
