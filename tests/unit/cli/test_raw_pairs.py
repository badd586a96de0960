"""RAW+JPEG pairs (issue 16, item 2, in part): one photo in two files, as a camera writes
them, is never parted by `dupes apply` / `dupes --action` unless --include-raw-pairs;
what makes a pair (findsimilar/rawpairs.py). Real files, the real CLI in-process."""

from __future__ import annotations

from pathlib import Path

from findsimilar.rawpairs import raw_pairs

from .test_dupes_apply import (  # noqa: F401  (home: a fixture)
    NEWER_NS,
    group,
    home,
    photo,
    run,
    snapshot,
    write_plan,
)


def test_a_pair_is_a_raw_and_a_rendering_of_one_stem_in_one_folder() -> None:
    pairs = raw_pairs(["/p/IMG_1.CR2", "/p/IMG_1.JPG", "/p/IMG_2.nef", "/q/IMG_2.jpg",
                       "/p/IMG_3.dng", "/p/IMG_3.png", "/p/IMG_4.ARW", "/p/IMG_4.heic"])
    assert pairs == {"/p/IMG_1.CR2": "/p/IMG_1.JPG", "/p/IMG_1.JPG": "/p/IMG_1.CR2",
                     "/p/IMG_4.ARW": "/p/IMG_4.heic", "/p/IMG_4.heic": "/p/IMG_4.ARW"}


def test_a_raw_jpeg_pair_is_left_alone_unless_asked_and_other_copies_still_go(
        home: Path, tmp_path: Path) -> None:  # noqa: F811  (the fixture)
    pics = home / "Pictures"
    raw = photo(pics / "IMG_1.DNG", b"raw sensor data " * 400)
    jpeg = photo(pics / "IMG_1.JPG", b"the camera's jpeg " * 200, NEWER_NS)
    elsewhere = photo(home / "Backup" / "IMG_1.JPG", b"the camera's jpeg " * 200, NEWER_NS)
    plan = write_plan(tmp_path / "plan.json", [group("near", raw, jpeg, elsewhere)])
    before = snapshot(pics)

    dry = run("dupes", "apply", str(plan), "--action", "trash")
    assert dry.exit_code == 0, dry.output
    assert f"skip      {jpeg}: one photo with IMG_1.DNG (a RAW+JPEG pair" in dry.output
    assert f"trash     {elsewhere}" in dry.output
    done = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    assert done.exit_code == 0, done.output
    assert snapshot(pics) == before and not elsewhere.exists()  # the copy elsewhere went

    asked = run("dupes", "apply", str(plan), "--action", "trash", "--apply",
                "--include-raw-pairs")
    assert asked.exit_code == 0, asked.output
    assert raw.exists() and not jpeg.exists()
