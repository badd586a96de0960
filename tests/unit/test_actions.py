"""Duplicate actions: trash, hardlink and move real files, log every step, and undo it all.

Everything happens in tmp_path: HOME and XDG_DATA_HOME point there, so the real trash is
never touched. Groups are built by hand the way the daemon returns them, with real hashes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

from findsimilar.cli.actions import actions, safefs
from findsimilar.cli.actions.actions import (
    NEEDS_SAME_BYTES,
    ActionError,
    apply_plan,
    format_plan,
    list_logs,
    plan_actions,
    undo,
)
from tests.conftest import own_home

OLD_MTIME_NS = 1_600_000_000_123_456_789  # nanoseconds a float cannot hold exactly


# -- helpers -------------------------------------------------------------------

def write(path: Path, data: bytes = b"\xff\xd8\xff photo bytes " * 64, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    return path


def member(path: Path, match: str, *, protected: bool = False) -> dict:
    st = path.stat()
    return {"path": str(path), "hash": hashlib.blake2b(path.read_bytes(), digest_size=16)
            .hexdigest(), "size": st.st_size, "mtime": st.st_mtime, "width": 8, "height": 8,
            "format": "JPEG", "match": match, "protected": protected}


def group(keep: Path, *others: Path, match: str = "exact", protected: tuple[Path, ...] = ()
          ) -> dict:
    members = [member(keep, "keep")]
    members += [member(p, match, protected=p in protected) for p in others]
    return {"tier": match, "keep": str(keep), "files": [m["path"] for m in members],
            "members": members}


def snapshot(root: Path) -> dict[str, tuple[int, int, int, bytes]]:
    return {str(p): (p.lstat().st_ino, p.lstat().st_mtime_ns, p.lstat().st_mode,
                     p.read_bytes() if p.is_file() else b"") for p in root.rglob("*")}


def read_log(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return own_home(tmp_path, monkeypatch)


@pytest.fixture
def pics(home: Path) -> Path:
    return home / "Pictures"


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    return tmp_path / "state" / "actions"


@pytest.fixture
def hard_links(pics: Path) -> None:
    """For tests of hard links: skipped where tmp is on a filesystem with reflinks
    (XFS, Btrfs), where `hardlink` makes reflinks instead (tested in
    tests/integration/test_action_facts.py)."""
    probe = write(pics / ".probe")
    fd = os.open(probe, os.O_RDONLY)
    try:
        if safefs.clone_into(fd, str(pics / ".probe-clone")):
            pytest.skip("tmp is on a filesystem with reflinks: hardlink clones there")
    finally:
        os.close(fd)
        for leftover in pics.glob(".probe*"):
            leftover.unlink()


def trash(home: Path) -> Path:
    return home / "data" / "Trash"


@pytest.fixture
def other_fs(tmp_path: Path) -> Iterator[Path]:
    """A second, private filesystem (a small tmpfs inside tmp_path), when we may mount one."""
    mnt = tmp_path / "other fs"
    mnt.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=8m", "findsimilar-test", str(mnt)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("needs a second filesystem: mount -t tmpfs (root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


# -- trash -----------------------------------------------------------------------

def test_trash_then_undo_restores_bytes_and_mtime(pics: Path, home: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "a" / "copy.jpg")
    result = apply_plan(plan_actions([group(keep, dupe)], "trash"), logs)

    assert (result.done, result.skipped, result.failed) == (1, 0, 0)
    assert not dupe.exists() and keep.exists()
    step = read_log(result.path)["steps"][0]
    assert step["target"] == str(trash(home) / "files" / "copy.jpg")
    info = Path(step["trash_info"]).read_text()
    assert f"Path={dupe}\n" in info and "DeletionDate=" in info

    assert undo(logs).undone == 1
    assert dupe.read_bytes() == keep.read_bytes()
    assert dupe.stat().st_mtime_ns == OLD_MTIME_NS
    assert not Path(step["trash_info"]).exists() and not Path(step["target"]).exists()


def test_trashing_two_files_with_the_same_name_keeps_both_and_undo_sorts_them_out(
        pics: Path, home: Path, logs: Path):
    keep = write(pics / "keep.jpg")
    one, two = write(pics / "a" / "x.jpg", b"one"), write(pics / "b" / "x.jpg", b"two")
    groups = [group(keep, one, two, match="similar")]
    apply_plan(plan_actions(groups, "trash"), logs)

    assert sorted(p.name for p in (trash(home) / "files").iterdir()) == ["x (1).jpg", "x.jpg"]
    undo(logs)
    assert (one.read_bytes(), two.read_bytes()) == (b"one", b"two")
    assert list((trash(home) / "info").iterdir()) == []


def test_undo_after_the_trash_was_emptied_says_so(pics: Path, home: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg")
    result = apply_plan(plan_actions([group(keep, dupe)], "trash"), logs)
    (trash(home) / "files" / "copy.jpg").unlink()

    outcome = undo(logs, result.path)
    assert (outcome.undone, outcome.failed, outcome.complete) == (0, 1, False)
    assert "no longer exists" in outcome.messages[0]


def test_trash_on_another_filesystem_uses_that_volumes_own_trash(other_fs: Path, home: Path,
                                                                  logs: Path):
    keep, dupe = write(other_fs / "keep.jpg"), write(other_fs / "photos" / "x.jpg")
    result = apply_plan(plan_actions([group(keep, dupe)], "trash"), logs)

    volume_trash = other_fs / f".Trash-{os.getuid()}"
    assert (volume_trash / "files" / "x.jpg").exists() and not trash(home).exists()
    assert "Path=photos/x.jpg\n" in (volume_trash / "info" / "x.jpg.trashinfo").read_text()
    assert stat.S_IMODE(volume_trash.stat().st_mode) == 0o700
    assert undo(logs, result.path).complete and dupe.stat().st_mtime_ns == OLD_MTIME_NS


def test_a_planted_volume_trash_symlink_is_refused(other_fs: Path, tmp_path: Path, logs: Path):
    keep, dupe = write(other_fs / "keep.jpg"), write(other_fs / "x.jpg")
    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    (other_fs / f".Trash-{os.getuid()}").symlink_to(elsewhere)

    result = apply_plan(plan_actions([group(keep, dupe)], "trash"), logs)
    assert result.failed == 1 and "refusing" in result.messages[0]
    assert dupe.exists() and list(elsewhere.iterdir()) == []


# -- what is never touched ------------------------------------------------------------

def test_keeper_and_keep_in_files_are_never_touched(pics: Path, logs: Path):
    keep = write(pics / "keep.jpg")
    kept_in = write(pics / "b" / "in-b.jpg")
    guarded = write(pics / "guarded.jpg")
    sibling = write(pics / "bc" / "not-in-b.jpg")  # /…/bc is not under /…/b
    groups = [group(keep, kept_in, guarded, sibling, protected=(guarded,))]
    steps = plan_actions(groups, "trash", keep_in=[str(pics / "b") + "/"])

    assert [s.path for s in steps] == [str(kept_in), str(guarded), str(sibling)]  # no keeper
    assert [bool(s.skip) for s in steps] == [True, True, False]
    apply_plan(steps, logs)
    assert keep.exists() and kept_in.exists() and guarded.exists() and not sibling.exists()


def test_a_keeper_of_another_group_is_never_acted_on(pics: Path, logs: Path):
    a, b, c = write(pics / "a.jpg", b"A"), write(pics / "b.jpg", b"B"), write(pics / "c.jpg", b"C")
    groups = [group(a, b, match="similar"), group(b, c, match="similar")]
    steps = plan_actions(groups, "trash")

    assert steps[0].skip == "it is the keeper of another group"
    apply_plan(steps, logs)
    assert a.exists() and b.exists() and not c.exists()


@pytest.mark.parametrize("change", ["deleted", "edited", "a directory now"])
def test_a_missing_or_changed_keeper_skips_the_whole_group(pics: Path, logs: Path,
                                                            change: str):
    keep = write(pics / "keep.jpg")
    dupes = [write(pics / "one.jpg"), write(pics / "two.jpg")]
    steps = plan_actions([group(keep, *dupes)], "trash")
    keep.unlink()
    if change == "edited":
        write(keep, b"different now")
    elif change == "a directory now":
        keep.mkdir()

    result = apply_plan(steps, logs)
    assert (result.done, result.skipped) == (0, 2)
    assert all(d.exists() for d in dupes)
    assert all("whole group skipped" in s["skip"] for s in read_log(result.path)["steps"])


@pytest.mark.parametrize("change", ["grown", "touched", "a symlink", "deleted", "a directory"])
def test_changed_file_is_skipped(pics: Path, logs: Path, change: str):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg")
    steps = plan_actions([group(keep, dupe)], "trash")
    if change == "grown":
        with dupe.open("ab") as f:
            f.write(b"more")
        os.utime(dupe, ns=(OLD_MTIME_NS, OLD_MTIME_NS))
    elif change == "touched":
        os.utime(dupe, ns=(OLD_MTIME_NS, OLD_MTIME_NS + 5_000_000))
    else:
        dupe.unlink()
        if change == "a symlink":
            dupe.symlink_to(keep)
        elif change == "a directory":
            dupe.mkdir()

    result = apply_plan(steps, logs)
    assert (result.done, result.skipped, result.failed) == (0, 1, 0)
    assert keep.exists()
    assert change == "deleted" or os.path.lexists(dupe)
    assert read_log(result.path)["steps"][0]["skip"]


def test_mtime_float_rounding_is_not_a_change(pics: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg")
    g = group(keep, dupe)
    g["members"][1]["mtime"] = OLD_MTIME_NS / 1e9 + 4e-4  # as a JSON float may drift

    assert apply_plan(plan_actions([g], "trash"), logs).done == 1


# -- the facts, checked again when acting (issue 12, case 2) ----------------------------------

def replace_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("action", ["trash", "move"])
def test_bytes_replaced_behind_same_size_and_mtime_are_never_acted_on(
        pics: Path, tmp_path: Path, logs: Path, action: str):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg")
    steps = plan_actions([group(keep, dupe)], action, move_to=str(tmp_path / "d"))
    unique = b"another picture".ljust(dupe.stat().st_size, b".")
    replace_keeping_size_and_mtime(dupe, unique)

    result = apply_plan(steps, logs)
    assert result.messages == [f"skipped: {dupe}: bytes changed since listing"]
    assert dupe.read_bytes() == unique


def test_a_near_copy_is_kept_when_its_keeper_is_no_longer_the_file_compared(
        pics: Path, logs: Path):
    keep, near = write(pics / "keep.jpg"), write(pics / "near.jpg", b"a resized copy")
    steps = plan_actions([group(keep, near, match="near")], "trash")
    replace_keeping_size_and_mtime(keep, b"x" * keep.stat().st_size)

    result = apply_plan(steps, logs)
    assert result.messages == [
        f"skipped: {near}: keeper changed since listing; whole group skipped"]
    assert near.exists()


def test_a_listing_without_hashes_is_not_acted_on(pics: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg")
    g = group(keep, dupe)
    del g["members"][1]["hash"]

    assert apply_plan(plan_actions([g], "trash"), logs).skipped == 1 and dupe.exists()


@pytest.mark.parametrize("action", ["trash", "move", "hardlink"])
def test_a_file_swapped_after_its_check_is_left_alone(
        pics: Path, home: Path, tmp_path: Path, logs: Path, action: str,
        monkeypatch: pytest.MonkeyPatch):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg")
    steps = plan_actions([group(keep, dupe)], action, move_to=str(tmp_path / "d"))
    real_verify = actions.FactChecker.verify

    def verify_then_swap(self: actions.FactChecker, step: actions.PlannedStep) -> tuple:
        facts = real_verify(self, step)
        swapped = write(pics / "other.jpg", b"a different picture")
        os.replace(swapped, dupe)  # another program saves over it, right now
        return facts

    monkeypatch.setattr(actions.FactChecker, "verify", verify_then_swap)
    result = apply_plan(steps, logs)
    assert result.messages == [f"skipped: {dupe}: {dupe} changed while being acted on; "
                               "left as it is"]
    assert dupe.read_bytes() == b"a different picture" and keep.exists()
    assert sorted(p.name for p in pics.iterdir()) == ["copy.jpg", "keep.jpg"]  # no temp
    assert not [p for p in trash(home).rglob("*") if p.is_file()]  # nor a .trashinfo
    assert not [p for p in tmp_path.glob("d/**/*") if p.is_file()]


# -- hardlink --------------------------------------------------------------------------

def test_hardlink_replaces_an_exact_copy_with_a_link_to_the_keeper(pics: Path, logs: Path,
        hard_links: None):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg", mode=0o600)
    result = apply_plan(plan_actions([group(keep, dupe)], "hardlink"), logs)

    assert result.done == 1
    assert dupe.stat().st_ino == keep.stat().st_ino
    step = read_log(result.path)["steps"][0]
    assert (step["mode"], step["mtime_ns"], step["uid"]) == (0o600, OLD_MTIME_NS, os.getuid())
    assert sorted(p.name for p in pics.iterdir()) == ["copy.jpg", "keep.jpg"]  # no temp left


def test_hardlink_refuses_near_duplicates(pics: Path, logs: Path):
    keep, near = write(pics / "keep.jpg"), write(pics / "near.jpg", b"resized copy")
    steps = plan_actions([group(keep, near, match="near")], "hardlink")

    assert steps[0].skip == NEEDS_SAME_BYTES
    before = near.stat().st_ino
    assert apply_plan(steps, logs).skipped == 1
    assert near.stat().st_ino == before and near.read_bytes() == b"resized copy"


def test_hardlink_rehashes_and_skips_bytes_changed_behind_same_size_and_mtime(
        pics: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg")
    steps = plan_actions([group(keep, dupe)], "hardlink")
    edited = bytearray(dupe.read_bytes())
    edited[0] ^= 0xFF
    write(dupe, bytes(edited))  # same size, mtime put back

    result = apply_plan(steps, logs)
    assert read_log(result.path)["steps"][0]["skip"] == "bytes changed since listing"
    assert dupe.stat().st_ino != keep.stat().st_ino


def test_hardlink_undo_gives_back_an_independent_file(pics: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg", mode=0o640)
    original = dupe.read_bytes()
    keep.chmod(0o644)
    apply_plan(plan_actions([group(keep, dupe)], "hardlink"), logs)

    assert undo(logs).complete
    assert dupe.stat().st_ino != keep.stat().st_ino
    assert dupe.read_bytes() == original
    assert stat.S_IMODE(dupe.stat().st_mode) == 0o640
    assert dupe.stat().st_mtime_ns == OLD_MTIME_NS
    keep.write_bytes(b"the keeper edited later")
    assert dupe.read_bytes() == original


def test_hardlink_undo_leaves_a_file_that_is_no_longer_the_link_alone(pics: Path, logs: Path,
        hard_links: None):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg")
    apply_plan(plan_actions([group(keep, dupe)], "hardlink"), logs)
    dupe.unlink()
    dupe.write_bytes(b"a new photo saved here")

    outcome = undo(logs)
    assert outcome.failed == 1 and "no longer a hard link" in outcome.messages[0]
    assert dupe.read_bytes() == b"a new photo saved here"


# -- move ------------------------------------------------------------------------------

def test_move_keeps_the_path_relative_to_home_and_undo_puts_it_back(
        pics: Path, tmp_path: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "a" / "x.jpg")
    dest = tmp_path / "dupes"
    steps = plan_actions([group(keep, dupe)], "move", move_to=str(dest))
    assert steps[0].target == str(dest / "Pictures" / "a" / "x.jpg")

    apply_plan(steps, logs)
    moved = dest / "Pictures" / "a" / "x.jpg"
    assert not dupe.exists() and moved.stat().st_mtime_ns == OLD_MTIME_NS
    undo(logs)
    assert dupe.read_bytes() == keep.read_bytes() and not moved.exists()


def test_move_outside_home_keeps_the_whole_path(tmp_path: Path):
    keep, dupe = write(tmp_path / "disk" / "keep.jpg"), write(tmp_path / "disk" / "x.jpg")
    steps = plan_actions([group(keep, dupe)], "move", move_to=str(tmp_path / "dupes"))

    assert steps[0].target == str(tmp_path / "dupes") + str(dupe)


def test_move_never_overwrites(pics: Path, tmp_path: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg", b"the duplicate")
    dest = tmp_path / "dupes" / "Pictures"
    write(dest / "x.jpg", b"was here first")
    write(dest / "x (1).jpg", b"also here first")

    result = apply_plan(plan_actions([group(keep, dupe, match="near")], "move",
                                     move_to=str(tmp_path / "dupes")), logs)
    assert (dest / "x.jpg").read_bytes() == b"was here first"
    assert (dest / "x (1).jpg").read_bytes() == b"also here first"
    assert (dest / "x (2).jpg").read_bytes() == b"the duplicate"
    assert read_log(result.path)["steps"][0]["target"] == str(dest / "x (2).jpg")


def test_move_across_filesystems_copies_then_removes_the_original(
        pics: Path, tmp_path: Path, logs: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(safefs, "same_device", lambda path, folder: False)
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg", mode=0o600)
    apply_plan(plan_actions([group(keep, dupe)], "move", move_to=str(tmp_path / "d")), logs)

    moved = tmp_path / "d" / "Pictures" / "x.jpg"
    assert not dupe.exists() and moved.read_bytes() == keep.read_bytes()
    assert (moved.stat().st_mtime_ns, stat.S_IMODE(moved.stat().st_mode)) == (OLD_MTIME_NS,
                                                                              0o600)
    assert undo(logs).complete and dupe.exists() and not moved.exists()
    assert [p.name for p in moved.parent.iterdir()] == []  # no temp copies left


def test_move_to_a_real_other_filesystem_and_back(pics: Path, other_fs: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg", mode=0o600)
    apply_plan(plan_actions([group(keep, dupe)], "move", move_to=str(other_fs)), logs)

    moved = other_fs / "Pictures" / "x.jpg"
    assert not dupe.exists() and moved.read_bytes() == keep.read_bytes()
    assert moved.stat().st_mtime_ns == OLD_MTIME_NS
    assert undo(logs).complete and dupe.stat().st_mtime_ns == OLD_MTIME_NS


def test_hardlink_across_filesystems_is_skipped(pics: Path, other_fs: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(other_fs / "x.jpg")
    result = apply_plan(plan_actions([group(keep, dupe)], "hardlink"), logs)

    assert result.skipped == 1 and "another filesystem" in result.messages[0]


def test_move_needs_a_usable_destination(pics: Path, tmp_path: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    groups = [group(keep, dupe)]
    with pytest.raises(ActionError, match="--move-to"):
        plan_actions(groups, "move")
    with pytest.raises(ActionError, match="not a folder"):
        plan_actions(groups, "move", move_to=str(keep))
    with pytest.raises(ActionError, match="inside"):
        plan_actions(groups, "move", move_to=str(dupe / "sub"))
    with pytest.raises(ActionError, match="unknown action"):
        plan_actions(groups, "delete")  # type: ignore[arg-type]


# -- names that break naive code ---------------------------------------------------------

@pytest.mark.parametrize("action", ["trash", "hardlink", "move"])
def test_paths_with_spaces_unicode_and_newlines_survive_apply_and_undo(
        pics: Path, home: Path, tmp_path: Path, logs: Path, action: str):
    keep = write(pics / "Ferien Ürlaub" / "keep 1.jpg")
    dupe = write(pics / "Ferien Ürlaub" / "copie été\nline two.jpg", mode=0o600)
    original = snapshot(pics)
    steps = plan_actions([group(keep, dupe)], action, move_to=str(tmp_path / "out dir"))
    assert len(format_plan(steps).splitlines()) == 3  # keeper, the file, the total: no breaks

    result = apply_plan(steps, logs)
    assert result.done == 1
    if action == "trash":
        info = Path(read_log(result.path)["steps"][0]["trash_info"]).read_text()
        assert unquote(info.split("Path=")[1].split("\n")[0]) == str(dupe)
    assert undo(logs).complete
    files = {p: v[1:] for p, v in snapshot(pics).items() if Path(p).is_file()}
    assert files == {p: v[1:] for p, v in original.items() if Path(p).is_file()}


# -- dry run and the summary --------------------------------------------------------------

def test_dry_run_touches_nothing(pics: Path, home: Path, tmp_path: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    near = write(pics / "near.jpg", b"near")
    groups = [group(keep, dupe), group(write(pics / "k2.jpg", b"k"), near, match="near")]
    before = snapshot(tmp_path)
    for action in ("trash", "hardlink", "move"):
        format_plan(plan_actions(groups, action, move_to=str(tmp_path / "dest")))  # type: ignore[arg-type]

    assert snapshot(tmp_path) == before
    assert not logs.exists() and not trash(home).exists() and not (tmp_path / "dest").exists()


def test_format_plan_says_what_would_happen_with_sizes_and_reasons(pics: Path):
    keep = write(pics / "keep.jpg")
    dupes = [write(pics / f"copy{i}.jpg", b"x" * 1_500_000) for i in range(2)]
    guarded = write(pics / "guarded.jpg")
    text = format_plan(plan_actions([group(keep, *dupes, guarded, protected=(guarded,))],
                                    "trash"))

    assert f"exact: keep {keep}" in text
    assert f"trash     {dupes[0]} (1.5 MB)" in text
    assert f"skip      {guarded}: protected" in text
    assert text.splitlines()[-1] == "would move 2 files (3.0 MB) to the trash; 1 skipped"
    assert format_plan([]) == "nothing to do"


def test_format_plan_for_hardlink_and_move(pics: Path, tmp_path: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    groups = [group(keep, dupe)]
    linked = format_plan(plan_actions(groups, "hardlink")).splitlines()[-1]
    moved = format_plan(plan_actions(groups, "move", move_to=str(tmp_path / "d")))

    assert linked.startswith("would replace 1 file (") and "hard links" in linked
    assert f"{dupe} -> {tmp_path / 'd' / 'Pictures' / 'x.jpg'}" in moved
    assert moved.splitlines()[-1].endswith(f"to {tmp_path / 'd' / 'Pictures'}; 0 skipped")


# -- the log and undo ----------------------------------------------------------------------

def test_log_is_one_private_json_file_with_every_step(pics: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    guarded = write(pics / "g.jpg")
    result = apply_plan(plan_actions([group(keep, dupe, guarded, protected=(guarded,))],
                                     "trash"), logs)

    assert [p.name for p in logs.iterdir()] == [result.path.name]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-[0-9a-f]{6}\.json", result.path.name)
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    log = read_log(result.path)
    assert (log["version"], log["action"], log["undone"]) == (2, "trash", False)
    done, skipped = log["steps"]
    assert {"action", "path", "keep", "target", "tier", "size", "mtime_ns", "hash", "done",
            "error", "trash_info", "undone"} <= done.keys()
    assert (done["done"], skipped["done"], skipped["skip"]) == (True, False,
                                                                "protected (in a --keep-in folder)")
    assert result.to_json()["path"] == str(result.path) and result.to_json()["done"] == 1
    outcome = undo(logs)
    assert json.loads(json.dumps(outcome.to_json()))["path"] == str(result.path)


def test_log_written_after_each_step_even_when_interrupted(pics: Path, logs: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    keep = write(pics / "keep.jpg")
    dupes = [write(pics / f"copy{i}.jpg") for i in range(3)]
    real_trash, calls = actions._APPLY["trash"], []

    def crash_on_second(step: actions.PlannedStep, record: dict, act: object) -> None:
        calls.append(step.path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies mid-run
        real_trash(step, record, act)

    monkeypatch.setitem(actions._APPLY, "trash", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        apply_plan(plan_actions([group(keep, *dupes)], "trash"), logs)

    (log_file,) = logs.glob("*.json")
    steps = read_log(log_file)["steps"]
    assert [s["done"] for s in steps] == [True, False, False]
    assert Path(steps[0]["target"]).exists() and steps[0]["trash_info"]
    monkeypatch.undo()
    assert undo(logs).undone == 1 and dupes[0].exists()


KILLED_MID_RUN = """
import json, os, sys
from pathlib import Path
from findsimilar.cli.actions import actions, safefs
real, calls = actions._APPLY["trash"], []
def die_on_second(step, record, act):
    calls.append(step)
    if len(calls) == 2:
        os._exit(9)  # no cleanup at all, as with SIGKILL or a power cut
    real(step, record, act)
actions._APPLY["trash"] = die_on_second
actions.apply_plan(actions.plan_actions(json.loads(sys.argv[1]), "trash"), Path(sys.argv[2]))
"""


def test_a_killed_run_leaves_a_journal_that_list_and_undo_read(pics: Path, logs: Path):
    keep = write(pics / "keep.jpg")
    dupes = [write(pics / f"copy{i}.jpg") for i in range(3)]
    groups = json.dumps([group(keep, *dupes)])
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_RUN, groups, str(logs)])

    assert killed.returncode == 9 and not dupes[0].exists()
    (summary,) = list_logs(logs)
    assert (summary["done"], summary["to_undo"]) == (1, 1)
    assert undo(logs).complete and dupes[0].exists()
    assert [p.suffix for p in logs.iterdir()] == [".json"]  # the journal folded in and gone


KILLED_AT = """
import json, os, sys
from pathlib import Path
from findsimilar.cli.actions import actionlog, actions, safefs, trash
point, groups, action, logs, move_to, victim = sys.argv[1:7]
real_link, real_replace, real_unlink = os.link, os.replace, os.unlink
def die(*args, **kwargs):
    os._exit(9)  # no cleanup at all, as with SIGKILL
if point.startswith("across filesystems"):
    safefs.same_device = lambda path, folder: False
if point == "intent journaled":
    real_intent = actionlog.LogWriter.intent
    def intent(self, *args, **kwargs):
        real_intent(self, *args, **kwargs)
        die()
    actionlog.LogWriter.intent = intent
elif point == "trashinfo reserved":
    trash.rename_no_clobber = die
elif point == "linked, not yet unlinked":
    def link(src, dst, **kwargs):
        real_link(src, dst, **kwargs)
        die()
    os.link = link
elif point == "done, outcome not journaled":
    actionlog.LogWriter.step = die
elif point == "temp file made, not yet in place":
    def replace(src, dst, *args, **kwargs):
        die() if dst == victim else real_replace(src, dst, *args, **kwargs)
    os.replace = replace
elif point == "across filesystems: copy in the temp file":
    safefs.rename_no_clobber = die
elif point == "across filesystems: copy in place, original still there":
    def unlink(path, *args, **kwargs):
        die() if path == victim else real_unlink(path, *args, **kwargs)
    os.unlink = unlink
steps = actions.plan_actions(json.loads(groups), action, move_to=move_to)
actions.apply_plan(steps, Path(logs))
"""

KILL_POINTS = [
    ("trash", "intent journaled", 0), ("trash", "trashinfo reserved", 0),
    ("trash", "linked, not yet unlinked", 0), ("trash", "done, outcome not journaled", 1),
    ("move", "intent journaled", 0), ("move", "linked, not yet unlinked", 0),
    ("move", "done, outcome not journaled", 1),
    ("move", "across filesystems: copy in the temp file", 0),
    ("move", "across filesystems: copy in place, original still there", 0),
    ("hardlink", "intent journaled", 0), ("hardlink", "temp file made, not yet in place", 0),
    ("hardlink", "done, outcome not journaled", 1)]


@pytest.mark.parametrize(("action", "point", "done"), KILL_POINTS)
def test_a_run_killed_at_any_point_of_a_step_is_settled_and_undone(
        pics: Path, home: Path, tmp_path: Path, logs: Path, action: str, point: str,
        done: int):
    keep = write(pics / "keep.jpg")
    dupes = [write(pics / f"copy{i}.jpg", mode=0o600) for i in range(2)]
    original = {p: v[1:] for p, v in snapshot(pics).items()}
    dest = tmp_path / "dest"
    killed = subprocess.run([sys.executable, "-c", KILLED_AT, point,
                             json.dumps([group(keep, *dupes)]), action, str(logs), str(dest),
                             str(dupes[0])])
    assert killed.returncode == 9

    (summary,) = list_logs(logs)  # reading settles the interrupted step from the disk
    assert (summary["done"], summary["to_undo"], summary["in_progress"]) == (done, done, False)
    assert undo(logs, Path(summary["path"])).undone == done
    assert {p: v[1:] for p, v in snapshot(pics).items()} == original  # bytes, mtime, mode
    assert dupes[0].stat().st_ino != keep.stat().st_ino
    leftovers = [p for root in (trash(home), dest) for p in root.rglob("*") if p.is_file()]
    assert leftovers == []  # no .trashinfo, no second name, no copy, no temp file
    assert [p.suffix for p in logs.iterdir()] == [".json"]


def test_a_log_whose_run_is_still_going_is_neither_settled_nor_undone(pics: Path,
                                                                       logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    result = apply_plan(plan_actions([group(keep, dupe)], "trash"), logs)
    with open(result.path.with_suffix(".journal"), "w") as journal:
        fcntl.flock(journal, fcntl.LOCK_EX)  # as a run (or undo) of it in another process

        assert list_logs(logs)[0]["in_progress"] is True
        with pytest.raises(ActionError, match="in use by another findsimilar process"):
            undo(logs, result.path)
    assert undo(logs, result.path).complete and dupe.exists()


def test_undo_leaves_a_relocated_file_whose_bytes_changed_since(pics: Path, home: Path,
                                                                logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    apply_plan(plan_actions([group(keep, dupe)], "trash"), logs)
    in_trash = trash(home) / "files" / "x.jpg"
    replace_keeping_size_and_mtime(in_trash, b"z" * in_trash.stat().st_size)

    outcome = undo(logs)
    assert outcome.failed == 1 and "is not the one put there" in outcome.messages[0]
    assert not dupe.exists() and in_trash.exists()


def test_hardlink_undo_does_not_claim_to_restore_bytes_edited_through_the_keeper(
        pics: Path, logs: Path, hard_links: None):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "copy.jpg")
    apply_plan(plan_actions([group(keep, dupe)], "hardlink"), logs)
    with keep.open("r+b") as f:
        f.write(b"EDITED")
    edited = snapshot(pics)

    outcome = undo(logs)
    assert (outcome.undone, outcome.failed, outcome.complete) == (0, 1, False)
    assert "the original bytes exist nowhere else" in outcome.messages[0]
    assert snapshot(pics) == edited


def test_version_1_logs_still_undo(pics: Path, home: Path, logs: Path):
    """A log as the previous release wrote it: a trashed file (whose listed hash may be a
    stale store's) and a hard link."""
    keep = write(pics / "keep.jpg")
    trashed, linked = write(pics / "a.jpg"), write(pics / "b.jpg", mode=0o640)
    files = trash(home) / "files"
    files.mkdir(parents=True)
    (trash(home) / "info").mkdir()
    os.rename(trashed, files / "a.jpg")
    info = trash(home) / "info" / "a.jpg.trashinfo"
    info.write_text(f"[Trash Info]\nPath={trashed}\nDeletionDate=2025-01-01T00:00:00\n")
    digest = member(keep, "keep")["hash"]
    os.link(keep, pics / "link")
    os.replace(pics / "link", linked)
    record = {"keep": str(keep), "tier": "exact", "size": keep.stat().st_size,
              "mtime_ns": OLD_MTIME_NS, "done": True, "skip": None, "error": None,
              "undone": False, "undo_error": None}
    log = {"version": 1, "created": "2025-01-01T00:00:00+00:00", "action": "trash",
           "undone": False, "steps": [
               {**record, "action": "trash", "path": str(trashed), "hash": "0" * 32,
                "target": str(files / "a.jpg"), "trash_info": str(info)},
               {**record, "action": "hardlink", "path": str(linked), "hash": digest,
                "target": str(keep), "trash_info": None, "mode": 0o640, "uid": os.getuid(),
                "gid": os.getgid()}]}
    logs.mkdir(parents=True)
    (logs / "old.json").write_text(json.dumps(log))

    outcome = undo(logs, logs / "old.json")
    assert (outcome.undone, outcome.complete) == (2, True)
    assert trashed.read_bytes() == keep.read_bytes() and not info.exists()
    assert linked.stat().st_ino != keep.stat().st_ino
    assert stat.S_IMODE(linked.stat().st_mode) == 0o640


def test_a_failing_step_is_logged_and_the_run_continues(pics: Path, tmp_path: Path,
                                                       logs: Path):
    keep = write(pics / "keep.jpg")
    blocked, fine = write(pics / "a" / "x.jpg"), write(pics / "b" / "y.jpg")
    write(tmp_path / "dest" / "Pictures" / "a", b"a file where a folder must go")
    steps = plan_actions([group(keep, blocked, fine)], "move", move_to=str(tmp_path / "dest"))

    result = apply_plan(steps, logs)
    assert (result.done, result.failed) == (1, 1)
    assert blocked.exists() and not fine.exists()
    assert read_log(result.path)["steps"][0]["error"]
    assert undo(logs).complete and fine.exists()


def test_an_unwritable_log_stops_before_anything_is_done(pics: Path, tmp_path: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    not_a_folder = write(tmp_path / "logs", b"")
    with pytest.raises(ActionError, match="action log"):
        apply_plan(plan_actions([group(keep, dupe)], "trash"), not_a_folder)
    assert dupe.exists()


def test_undo_twice_is_a_noop(pics: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    result = apply_plan(plan_actions([group(keep, dupe)], "trash"), logs)
    first = undo(logs, result.path)
    before = snapshot(pics)

    again = undo(logs, result.path)
    assert (first.undone, first.complete, read_log(result.path)["undone"]) == (1, True, True)
    assert (again.undone, again.failed, again.complete) == (0, 0, True)
    assert "already undone" in again.message
    assert undo(logs).message.startswith("nothing to undo")
    assert snapshot(pics) == before


def test_undo_never_overwrites_a_new_file(pics: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    result = apply_plan(plan_actions([group(keep, dupe)], "trash"), logs)
    dupe.write_bytes(b"a new photo with the old name")

    outcome = undo(logs)
    assert (outcome.undone, outcome.failed, outcome.complete) == (0, 1, False)
    assert "not overwriting" in outcome.messages[0]
    assert dupe.read_bytes() == b"a new photo with the old name"
    assert not read_log(result.path)["undone"]

    dupe.unlink()  # once the place is free, undo can be run again and finishes the job
    assert undo(logs).complete and dupe.read_bytes() == keep.read_bytes()


def test_undo_without_a_log_takes_the_newest_one_with_something_to_undo(pics: Path,
                                                                          logs: Path):
    keep = write(pics / "keep.jpg")
    first, second = write(pics / "1.jpg"), write(pics / "2.jpg")
    apply_plan(plan_actions([group(keep, first)], "trash"), logs)
    apply_plan(plan_actions([group(keep, second)], "trash"), logs)
    apply_plan([], logs)  # an empty run: nothing in it to undo

    assert undo(logs).undone == 1 and second.exists() and not first.exists()
    assert undo(logs).undone == 1 and first.exists()
    assert undo(logs).path is None


def test_list_logs_shows_newest_first_with_counts(pics: Path, logs: Path):
    keep, dupe = write(pics / "keep.jpg"), write(pics / "x.jpg")
    groups = [group(keep, dupe)]
    older = apply_plan(plan_actions(groups, "trash"), logs)
    newer = apply_plan(plan_actions(groups, "hardlink"), logs)  # skipped: the dupe is gone
    undo(logs, older.path)
    (logs / "garbage.json").write_text("{not json")

    summaries = [s for s in list_logs(logs) if "error" not in s]
    assert [s["path"] for s in summaries] == [str(newer.path), str(older.path)]
    assert summaries[0]["skipped"] == 1 and summaries[0]["to_undo"] == 0
    assert summaries[1]["done"] == 1 and summaries[1]["undone"]
    assert any("error" in s for s in list_logs(logs))
    assert list_logs(logs.parent / "missing") == []


def test_the_module_imports_no_heavy_libraries():
    code = ("import sys, findsimilar.cli.actions.actions; "
            "print(sorted({'numpy', 'torch', 'faiss', 'PIL', 'cv2'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
