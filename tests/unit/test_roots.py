"""Watched folders: identity, availability and noticing changes (daemon/roots.py), on real
folders and plain rows."""

from __future__ import annotations

import os
from pathlib import Path

from findsimilar.daemon.indexing.roots import (
    Roots,
    availability,
    identify,
    mount_point_of,
    mount_points,
)


def row(path: Path, *, dev: int | None = None, mount: str | None = None) -> dict:
    return {"path": str(path), "dev": dev, "ino": None, "mount": mount, "excludes": []}


def test_mountinfo_mount_points_are_read_with_their_escapes_undone(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
        "40 22 0:35 / /media/me/My\\040Disk rw - vfat /dev/sdb1 rw\n"
        "41 22 0:36 / /mnt/back\\134slash rw - tmpfs tmpfs rw\n")
    assert mount_points(str(info)) == {"/", "/media/me/My Disk", "/mnt/back\\slash"}


def test_the_mount_point_of_a_path_is_the_deepest_one_holding_it():
    mounts = {"/", "/media", "/media/me/disk"}
    assert mount_point_of("/media/me/disk/photos/2024", mounts) == "/media/me/disk"
    assert mount_point_of("/media/me/diskette", mounts) == "/media"
    assert mount_point_of("/home/me", mounts) == "/"


def test_a_folder_is_available_while_its_path_holds_a_folder_on_its_recorded_mount(tmp_path):
    now = identify(str(tmp_path), {"/"})
    assert now is not None
    assert availability(row(tmp_path, mount="/"), now, {"/"}) is None
    assert availability(row(tmp_path, mount="/"), None, {"/"}).startswith("the folder is not")


def test_an_empty_mount_point_of_a_disk_that_is_not_mounted_is_unavailable(tmp_path):
    now = identify(str(tmp_path), {"/"})
    why = availability(row(tmp_path, mount=str(tmp_path)), now, {"/"})
    assert why is not None and f"mounted at {tmp_path} is not mounted" in why
    # Mounted again (whatever its device number now): available.
    assert availability(row(tmp_path, mount=str(tmp_path)), now, {"/", str(tmp_path)}) is None


def test_a_folder_from_before_mounts_were_recorded_on_another_device_counts_only_if_not_empty(
        tmp_path):
    now = identify(str(tmp_path), {"/"})
    assert now is not None
    other_device = row(tmp_path, dev=now[0] + 1)
    assert availability(other_device, now, {"/"}) is not None  # empty: a bare mount point
    (tmp_path / "a.jpg").write_bytes(b"x")
    assert availability(other_device, now, {"/"}) is None  # a disk mounted again


def test_a_watched_folder_renamed_away_or_replaced_is_reported_once_until_reconciled(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    changed: list[list[str]] = []
    roots = Roots(lambda: [row(lib)], changed.append)
    roots.set_watching(str(lib), identify(str(lib)), rescan_why=None)
    assert roots.check() == [] and roots.intact(str(lib / "a.jpg"))

    os.rename(lib, tmp_path / "lib.old")
    lib.mkdir()  # another folder at the path
    assert roots.check() == [str(lib)]
    assert not roots.intact(str(lib / "a.jpg"))  # events of the old watch do not apply
    assert roots.check() == []  # pending: once until its reconcile runs
    assert changed == [[str(lib)]]

    roots.reconciling(str(lib))
    roots.set_watching(str(lib), identify(str(lib)), rescan_why=None)
    assert roots.check() == [] and roots.intact(str(lib / "a.jpg"))


def test_an_unavailable_folder_is_reported_when_it_is_back(tmp_path):
    lib = tmp_path / "lib"
    roots = Roots(lambda: [row(lib, mount="/")], lambda paths: None)
    roots.set_unavailable(str(lib), "not there")
    assert roots.check() == []
    lib.mkdir()
    assert roots.check() == [str(lib)]
    assert roots.state(str(lib)).mode == "unavailable"  # until its reconcile decides
