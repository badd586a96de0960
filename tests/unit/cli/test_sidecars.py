"""Sidecars travel with their photo (issue 16, item 3): which files belong to which photo,
by name (findsimilar.sidecars); which go with each step of a plan; and `dupes apply`
through the real command line in-process (click's runner, no daemon), on real files and
the real trash: trash, move and undo take and bring back every sidecar, a kept photo's
sidecars and a shared `NAME.xmp` still needed stay, and a sidecar that cannot go fails
its photo's step with nothing parted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from findsimilar.cli.actions.plan import PlannedStep, attach_sidecars, format_plan, plan_groups
from findsimilar.sidecars import (
    extends,
    is_sidecar,
    own_sidecars,
    sidecar_target,
    stem_holders,
    stem_sidecars,
)
from tests.conftest import own_home

from .test_dupes_apply import (
    NEWER_NS,
    group,
    photo,
    run,
    snapshot,
    trashed,
    write_plan,
)


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own home, trash and data folder, and no daemon."""
    return own_home(tmp_path, monkeypatch, findsimilar=True)


XMP = b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'


# -- which files are whose sidecars ----------------------------------------------------------

FOLDER = ["IMG_1.CR2", "IMG_1.JPG", "IMG_1.CR2.xmp", "IMG_1.jpg.XMP", "IMG_1.xmp",
          "IMG_1.CR2.pp3", "IMG_1.CR2.dop", "IMG_10.CR2", "IMG_10.CR2.xmp", "IMG_1.txt",
          "IMG_1.CR2.xmp.bak", "other.xmp"]


def test_a_photos_own_sidecars_are_its_name_plus_a_sidecar_extension_in_any_case():
    assert is_sidecar("a.XMP") and is_sidecar("a.Pp3") and is_sidecar("a.dop")
    assert not is_sidecar("a.xmp.bak") and not is_sidecar("xmp")
    assert own_sidecars("IMG_1.CR2", FOLDER) == ["IMG_1.CR2.dop", "IMG_1.CR2.pp3",
                                                 "IMG_1.CR2.xmp"]
    assert own_sidecars("IMG_1.JPG", FOLDER) == ["IMG_1.jpg.XMP"]
    assert own_sidecars("IMG_10.CR2", FOLDER) == ["IMG_10.CR2.xmp"]
    assert own_sidecars("photo", ["photo.xmp", "photo2.xmp"]) == ["photo.xmp"]


def test_a_sidecar_named_exactly_for_another_file_is_that_files_alone():
    """A kept IMG_1.JPG beside a copy IMG_1.jpg: IMG_1.JPG.xmp is the keeper's; a kept
    a.jpg beside a.jpg.png: a.jpg.xmp is a.jpg's own, not the shared one of a.jpg.png."""
    assert own_sidecars("IMG_1.jpg", ["IMG_1.JPG", "IMG_1.jpg", "IMG_1.JPG.xmp"]) == []
    assert own_sidecars("IMG_1.JPG", ["IMG_1.JPG", "IMG_1.jpg", "IMG_1.Jpg.xmp"]) == []
    assert stem_sidecars("a.jpg.png", ["a.jpg", "a.jpg.png", "a.jpg.xmp"]) == []
    assert extends("a.JPG.xmp", "a.jpg") and not extends("a.xmp", "a.jpg")


def test_a_stem_sidecar_belongs_to_every_file_of_its_stem():
    assert stem_sidecars("IMG_1.CR2", FOLDER) == ["IMG_1.xmp"]
    assert stem_sidecars("IMG_10.CR2", FOLDER) == []
    assert stem_holders("IMG_1.xmp", FOLDER) == ["IMG_1.CR2", "IMG_1.JPG", "IMG_1.txt"]


def test_a_sidecar_follows_its_photo_renamed_as_the_photo_was():
    assert sidecar_target("/p/a.jpg", "/m/p/a.jpg", "/p/a.JPG.xmp") == "/m/p/a.JPG.xmp"
    assert sidecar_target("/p/a.jpg", "/m/p/a (1).jpg", "/p/a.jpg.xmp") == "/m/p/a (1).jpg.xmp"
    assert sidecar_target("/p/a.jpg", "/m/p/a (1).jpg", "/p/a.xmp") == "/m/p/a (1).xmp"


def step(path: Path, skip: str | None = None) -> PlannedStep:
    return PlannedStep("trash", str(path), "/keep.jpg", None, "exact", skip)


def test_a_shared_sidecar_goes_with_the_last_of_its_photos_only_when_all_go(tmp_path: Path):
    for name in ("IMG_1.CR2", "IMG_1.JPG", "IMG_1.xmp", "IMG_1.CR2.xmp", "IMG_2.CR2",
                 "IMG_2.JPG", "IMG_2.xmp"):
        (tmp_path / name).write_bytes(b"x")
    raw, jpeg, raw2 = tmp_path / "IMG_1.CR2", tmp_path / "IMG_1.JPG", tmp_path / "IMG_2.CR2"

    both = attach_sidecars([step(raw), step(jpeg), step(raw2)])
    assert [s.sidecars for s in both] == [(str(raw) + ".xmp",), (str(tmp_path / "IMG_1.xmp"),),
                                          ()]  # IMG_2.JPG stays: so does IMG_2.xmp
    one = attach_sidecars([step(raw), step(jpeg, skip="protected (in a --keep-in folder)")])
    assert [s.sidecars for s in one] == [(str(raw) + ".xmp",), ()]


def test_the_dry_run_lists_the_sidecars_of_each_file(tmp_path: Path):
    keep = photo(tmp_path / "keep.jpg", b"same bytes " * 40)
    copy = photo(tmp_path / "copy.jpg", b"same bytes " * 40, NEWER_NS)
    for name in ("keep.jpg.xmp", "copy.jpg.xmp", "copy.xmp", "copy.jpg.pp3"):
        (tmp_path / name).write_bytes(XMP)
    groups = [group("exact", keep, copy)]

    steps = plan_groups(groups, "trash")
    assert steps[0].sidecars == tuple(str(tmp_path / n) for n in (
        "copy.jpg.pp3", "copy.jpg.xmp", "copy.xmp"))
    text = format_plan(steps)
    assert "with its sidecars copy.jpg.pp3, copy.jpg.xmp, copy.xmp" in text
    assert "would move 1 file (440 B) and 3 sidecars to the trash" in text
    assert plan_groups(groups, "hardlink")[0].sidecars == ()  # the path keeps existing


# -- dupes apply, in-process ---------------------------------------------------------------

@pytest.fixture
def edited(home: Path) -> dict[str, Path]:
    """An exact pair of RAW stand-ins and a near pair (RAW+JPEG copy kept as a pair), each
    photo with sidecars of both forms; the keeper's own sidecars too."""
    pics = home / "Pictures"
    p = {"keep": photo(pics / "a" / "IMG_1.CR2", b"raw bytes " * 300),
         "copy": photo(pics / "b" / "IMG_1.CR2", b"raw bytes " * 300, NEWER_NS),
         "n_keep": photo(pics / "n" / "big.jpg", b"big picture " * 500),
         "n_copy": photo(pics / "n" / "small.jpg", b"small picture " * 100, NEWER_NS)}
    for name in ("a/IMG_1.CR2.xmp", "a/IMG_1.xmp", "b/IMG_1.CR2.xmp", "b/IMG_1.xmp",
                 "b/IMG_1.CR2.pp3", "n/big.jpg.xmp", "n/small.JPG.xmp", "n/small.pp3"):
        photo(pics / name, XMP + name.encode())
    return p


def listing(p: dict[str, Path]) -> list[dict]:
    return [group("exact", p["keep"], p["copy"]), group("near", p["n_keep"], p["n_copy"])]


def test_trash_takes_every_sidecar_and_undo_brings_all_back(
        edited: dict[str, Path], home: Path, tmp_path: Path) -> None:
    pics = home / "Pictures"
    before = snapshot(pics)
    plan = write_plan(tmp_path / "plan.json", listing(edited))

    dry = run("dupes", "apply", str(plan), "--action", "trash", "--json")
    steps = json.loads(dry.stdout)["actions"]["plan"]
    assert [sorted(os.path.basename(s) for s in st["sidecars"]) for st in steps] == [
        ["IMG_1.CR2.pp3", "IMG_1.CR2.xmp", "IMG_1.xmp"], ["small.JPG.xmp", "small.pp3"]]
    done = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    assert done.exit_code == 0, done.output
    assert "trash: 2 done, 0 skipped, 0 failed" in done.stderr
    assert f"trashed with it: {pics / 'b' / 'IMG_1.xmp'}" in done.stdout
    assert sorted(p.name for p in pics.rglob("*")) == [
        "IMG_1.CR2", "IMG_1.CR2.xmp", "IMG_1.xmp", "a", "b", "big.jpg", "big.jpg.xmp", "n"]
    assert len(trashed(home)) == 7

    undo = run("dupes", "undo")
    assert undo.exit_code == 0, undo.output
    assert "undid 7 of 7 steps" in undo.stdout
    assert {k: v[1:] for k, v in snapshot(pics).items()} == {
        k: v[1:] for k, v in before.items()}
    assert trashed(home) == []
    assert list((home / "data" / "Trash" / "info").iterdir()) == []


def test_move_takes_the_sidecars_beside_the_photo_and_undo_brings_them_back(
        edited: dict[str, Path], home: Path, tmp_path: Path) -> None:
    pics, dest = home / "Pictures", tmp_path / "dupes"
    before = snapshot(pics)
    plan = write_plan(tmp_path / "plan.json", listing(edited))
    (dest / "Pictures" / "b").mkdir(parents=True)
    (dest / "Pictures" / "b" / "IMG_1.CR2").write_bytes(b"already there")

    done = run("dupes", "apply", str(plan), "--move-to", str(dest), "--apply")
    assert done.exit_code == 0, done.output
    moved = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert moved == ["Pictures/b/IMG_1 (1).CR2", "Pictures/b/IMG_1 (1).CR2.pp3",
                     "Pictures/b/IMG_1 (1).CR2.xmp", "Pictures/b/IMG_1 (1).xmp",
                     "Pictures/b/IMG_1.CR2", "Pictures/n/small.JPG.xmp",
                     "Pictures/n/small.jpg", "Pictures/n/small.pp3"]
    assert (dest / "Pictures/b/IMG_1 (1).xmp").read_bytes() == XMP + b"b/IMG_1.xmp"

    assert run("dupes", "undo").exit_code == 0
    assert {k: v[1:] for k, v in snapshot(pics).items()} == {
        k: v[1:] for k, v in before.items()}
    assert [p.name for p in dest.rglob("*") if p.is_file()] == ["IMG_1.CR2"]


def test_a_shared_sidecar_stays_while_a_photo_of_its_stem_stays(
        home: Path, tmp_path: Path) -> None:
    """A RAW+JPEG pair shares IMG_1.xmp; when only the JPEG is a duplicate, or when the
    RAW's step is skipped at the moment of acting, the sidecar stays with the RAW."""
    pics = home / "Pictures"
    keep = photo(pics / "k" / "IMG_1.JPG", b"jpeg bytes " * 100)
    raw = photo(pics / "p" / "IMG_1.CR2", b"raw bytes " * 300)
    jpeg = photo(pics / "p" / "IMG_1.JPG", b"jpeg bytes " * 100, NEWER_NS)
    raw_keep = photo(pics / "k" / "IMG_1.CR2", b"raw bytes " * 300)
    shared = photo(pics / "p" / "IMG_1.xmp", XMP)
    only_jpeg = write_plan(tmp_path / "jpeg.json", [group("exact", keep, jpeg)])

    done = run("dupes", "apply", str(only_jpeg), "--action", "trash", "--apply")
    assert done.exit_code == 0, done.output
    assert not jpeg.exists() and shared.read_bytes() == XMP and raw.exists()
    assert run("dupes", "undo").exit_code == 0

    both = write_plan(tmp_path / "both.json", [group("exact", raw_keep, raw),
                                               group("exact", keep, jpeg)])
    raw.write_bytes(b"RAW bytes " * 300)  # edited since: its step is skipped when acting
    os.utime(raw, ns=(NEWER_NS, NEWER_NS))
    done = run("dupes", "apply", str(both), "--action", "trash", "--apply")
    assert "trash: 1 done, 1 skipped, 0 failed" in done.stderr
    assert f"left: {shared}: stays with {raw}, which shares its name and stays" in done.stdout
    assert raw.exists() and shared.read_bytes() == XMP and not jpeg.exists()


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], Path]]:
    """Makes files immutable (chattr +i, root); skips where that cannot be done."""
    made: list[Path] = []

    def make(path: Path) -> Path:
        if os.geteuid() != 0:
            pytest.skip("needs root to make a file immutable (chattr +i)")
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot chattr +i here: {done.stderr.strip()}")
        made.append(path)
        return path

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_sidecar_that_cannot_go_fails_the_step_and_leaves_photo_and_sidecars_together(
        edited: dict[str, Path], home: Path, tmp_path: Path, immutable) -> None:
    pics = home / "Pictures"
    stuck = immutable(pics / "b" / "IMG_1.xmp")
    before = snapshot(pics)
    plan = write_plan(tmp_path / "plan.json", listing(edited))

    done = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    assert done.exit_code == 1
    assert "trash: 1 done, 0 skipped, 1 failed" in done.stderr
    assert (f"failed: {edited['copy']}: its sidecar {stuck} cannot go with it (Operation not "
            f"permitted: {stuck}); put back with its sidecars, as it was") in done.stdout
    assert {k: v[1:] for k, v in snapshot(pics).items() if "/b/" in k} == {
        k: v[1:] for k, v in before.items() if "/b/" in k}
    assert len(trashed(home)) == 3  # the near copy and its two sidecars only
    info = home / "data" / "Trash" / "info"
    assert sorted(p.name for p in info.iterdir()) == sorted(
        p.name + ".trashinfo" for p in (home / "data" / "Trash" / "files").iterdir())

    assert "undid 3 of 3 steps" in run("dupes", "undo").stdout
    assert {k: v[1:] for k, v in snapshot(pics).items()} == {
        k: v[1:] for k, v in before.items()}


KILLED_AT = """
import json, os, sys
from pathlib import Path
from findsimilar.cli.actions import actionlog, actions
point, nth, groups, logs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
calls = []
def dying(real):
    def call(*args, **kwargs):
        calls.append(1)
        if point.startswith("after") and len(calls) == nth:
            real(*args, **kwargs)
        if len(calls) == nth:
            os._exit(9)  # no cleanup at all, as with SIGKILL
        return real(*args, **kwargs)
    return call
if point == "after the intent is journaled":
    actionlog.LogWriter.intent = dying(actionlog.LogWriter.intent)
else:  # between the link to the new name and the unlink of the old one
    os.link = dying(os.link)
actions.apply_plan(actions.plan_groups(json.loads(groups), "trash"), Path(logs))
"""


@pytest.mark.parametrize(("point", "nth"), [
    ("after the intent is journaled", 2), ("after the intent is journaled", 3),
    ("after linking", 2), ("after linking", 3)])
def test_a_run_killed_while_taking_the_sidecars_along_is_undone_completely(
        edited: dict[str, Path], home: Path, tmp_path: Path, point: str, nth: int) -> None:
    """The photo went first; the run dies at its first or second sidecar. Reading the log
    settles the step from the disk; undo gives every byte back and leaves nothing."""
    pics, logs = home / "Pictures", tmp_path / "fs-data" / "actions"
    before = snapshot(pics)
    killed = subprocess.run([sys.executable, "-c", KILLED_AT, point, str(nth),
                             json.dumps(listing(edited)[:1]), str(logs)])
    assert killed.returncode == 9
    assert not edited["copy"].exists()

    assert run("dupes", "logs").exit_code == 0  # reading it settles the interrupted step
    undone = run("dupes", "undo")
    assert undone.exit_code == 0, undone.output
    assert {k: v[1:] for k, v in snapshot(pics).items()} == {
        k: v[1:] for k, v in before.items()}
    assert trashed(home) == []
    assert list((home / "data" / "Trash" / "info").iterdir()) == []
