"""Never lose track of a photo under ordinary file operations (issue 12, cases 1, 3, 4, 5).

One real `findsimilar daemon run` serves the module; each test watches a folder of its
own and stops watching it at the end. Files are changed the way users and their tools
change them: rewritten in place with the mtime put back, edited by exiftool, renamed while
the first scan runs, whole watched folders renamed away, deleted and recreated, a disk
unmounted and mounted again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ..conftest import shared
from .daemon_harness import (
    DaemonProcess,
    daemon_env,
    make_photos,
    module_daemon,
    store_rows,
    top_paths,
    wait_until,
)

EXIFTOOL = shutil.which("exiftool")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with module_daemon(tmp_path_factory.mktemp("churn")) as daemon:
        yield daemon


@pytest.fixture
def lib(daemon: DaemonProcess, tmp_path: Path) -> Iterator[Path]:
    """An empty folder for the test to fill and watch; unwatched afterwards."""
    folder = tmp_path / "lib"
    folder.mkdir()
    yield folder
    for root in daemon.call("watch_list"):
        daemon.call("watch_remove", path=root["path"])


@pytest.fixture
def generated(tmp_path: Path, request: pytest.FixtureRequest) -> list[Path]:
    """Small JPEGs no other test has (content already seen is linked, not read through
    the model): enough that a first scan takes a few seconds."""
    seed = 100 + len(request.node.name)
    return make_photos(tmp_path / "gen", 240, seed=seed, size=(160, 120),
                       prefix=request.node.name[:12])


def blake(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def rows_under(daemon: DaemonProcess, folder: Path) -> dict[str, dict[str, Any]]:
    return {p: r for p, r in store_rows(daemon.data_dir).items()
            if p.startswith(str(folder) + os.sep)}


def watch(daemon: DaemonProcess, folder: Path, files: list[Path] | None = None) -> None:
    """Watch ``folder`` and wait until its scan is over and ``files`` are indexed."""
    daemon.call("watch_add", path=str(folder))
    daemon.barrier(folder.parent / "empty")
    if files is not None:
        ok = {p for p, r in rows_under(daemon, folder).items() if r["status"] == "ok"}
        assert ok == {str(f) for f in files}


def bmp(source: str, dest: Path) -> Path:
    """A 320x240 BMP of a shared photo: every such BMP has the same size in bytes."""
    with Image.open(shared(source)) as im:
        im.convert("RGB").resize((320, 240)).save(dest, format="BMP")
    return dest


def rewrite_keeping_size_and_mtime(path: Path, new_bytes: bytes) -> None:
    """What `cat other > path; touch -d "$M" path` does: same inode, size and mtime."""
    st = os.stat(path)
    assert len(new_bytes) == st.st_size
    with open(path, "r+b") as fh:
        fh.write(new_bytes)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def exif_jpeg(dest: Path, colour: tuple[int, int, int]) -> Path:
    exif = Image.Exif()
    exif[0x8769] = {0x9003: "2020:01:01 00:00:00"}  # DateTimeOriginal
    Image.new("RGB", (96, 64), colour).save(dest, exif=exif, quality=90)
    return dest


def mode_of(daemon: DaemonProcess, folder: Path) -> dict[str, Any]:
    [entry] = [r for r in daemon.call("watch_list") if r["path"] == str(folder)]
    return entry


def all_indexed(daemon: DaemonProcess, folder: Path, wanted: set[str]) -> None:
    """Wait until the rows under ``folder`` are exactly ``wanted``, all indexed; fail with
    what is wrong (rows failed under paths that exist, rows missing, stale paths)."""
    def right() -> bool:
        rows = rows_under(daemon, folder)
        return set(rows) == wanted and all(r["status"] == "ok" for r in rows.values())

    def wrong() -> str:
        rows = rows_under(daemon, folder)
        failed = [(p, r["error"]) for p, r in rows.items() if r["status"] != "ok"]
        return (f"{len(failed)} failed {failed[:3]}, {len(wanted - set(rows))} missing, "
                f"{len(set(rows) - wanted)} stale {sorted(set(rows) - wanted)[:3]}")

    wait_until(right, 60, 0.2, wrong)
    daemon.wait_idle()


def figure(what: str, since: float) -> None:
    """Print a measured figure for RELIABILITY.md (pytest -s shows it)."""
    print(f"\nfigure: {what}: {time.monotonic() - since:.2f} s")


def mid_pass(daemon: DaemonProcess, at_least: int) -> bool:
    """True once the folder's first scan has committed ``at_least`` files and has at
    least 100 more to go: the moment to pull the rug."""
    p = daemon.status()["progress"]
    return p["state"] == "reconciling" and at_least <= p["done"] <= p["total"] - 100


# --- case 1: a change that keeps size and mtime --------------------------------------------

def test_a_rewrite_keeping_size_and_mtime_is_seen_while_watching(daemon, lib, tmp_path):
    target = bmp("opencv/fruits.jpg", lib / "b.bmp")
    other = bmp("mate/Storm.jpg", tmp_path / "other.bmp")
    watch(daemon, lib, [target])

    rewrite_keeping_size_and_mtime(target, other.read_bytes())
    began = time.monotonic()

    wait_until(lambda: store_rows(daemon.data_dir)[str(target)]["content_hash"] == blake(target),
               20, message="the rewrite was never noticed")
    figure("a rewrite keeping size and mtime, re-indexed", began)
    assert str(target) in top_paths(daemon.search(other))


def test_changes_made_while_stopped_that_keep_size_and_mtime_are_seen_at_start(
        daemon, lib, tmp_path):
    """Also the one case ctime cannot show (a store from before ctimes were recorded,
    where the bytes changed meanwhile): `reindex --rehash` reads the files again."""
    rewritten = bmp("opencv/fruits.jpg", lib / "rewritten.bmp")
    upgraded = bmp("opencv/baboon.jpg", lib / "upgraded.bmp")
    other = bmp("mate/Storm.jpg", tmp_path / "other.bmp")
    other2 = bmp("skimage/coffee.png", tmp_path / "other2.bmp")
    edited = exif_jpeg(lib / "edited.jpg", (200, 40, 90))
    left_failed = Path(shutil.copyfile(shared("mate/Aqua.jpg"), lib / "left-failed.jpg"))
    watch(daemon, lib, [rewritten, upgraded, edited, left_failed])
    assert daemon.terminate() == 0

    rewrite_keeping_size_and_mtime(rewritten, other.read_bytes())
    rewrite_keeping_size_and_mtime(upgraded, other2.read_bytes())
    if EXIFTOOL:  # an EXIF edit in place: same inode, size and mtime (-P)
        subprocess.run([EXIFTOOL, "-q", "-P", "-overwrite_original_in_place",
                        "-DateTimeOriginal=2001:02:03 04:05:06", str(edited)], check=True)
    conn = sqlite3.connect(daemon.data_dir / "store.db")
    with conn:  # as a rename mid-scan left rows before: failed, with the real size and mtime
        conn.execute("update files set status = 'failed', error = 'cannot open: No such "
                     "file or directory', content_hash = null where path = ?",
                     [str(left_failed)])
    with conn, contextlib.suppress(sqlite3.OperationalError):  # (no such column before)
        conn.execute("update files set ctime_ns = null where path in (?, ?)",
                     [str(upgraded), str(left_failed)])
    conn.close()

    daemon.start()
    daemon.barrier(tmp_path / "empty")
    rows = store_rows(daemon.data_dir)
    assert rows[str(rewritten)]["content_hash"] == blake(rewritten)
    assert str(rewritten) in top_paths(daemon.search(other))
    assert rows[str(edited)]["content_hash"] == blake(edited)
    assert rows[str(left_failed)]["status"] == "ok"  # a failure of a file there is retried
    # The upgraded store's row is taken as it was (re-reading every photo at an upgrade
    # would cost hours); a re-hash reads it.
    assert rows[str(upgraded)]["content_hash"] != blake(upgraded)

    cli = subprocess.run([sys.executable, "-m", "findsimilar", "reindex", "--rehash",
                          str(upgraded)], env=daemon_env(daemon.data_dir, daemon.socket_path),
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    wait_until(lambda: store_rows(daemon.data_dir)[str(upgraded)]["content_hash"]
               == blake(upgraded), 20, message="reindex --rehash did not read the file")
    assert str(upgraded) in top_paths(daemon.search(other2))


# --- case 3: renames while the first scan runs --------------------------------------------

def test_a_folder_renamed_during_the_first_scan_is_indexed_under_its_new_name(
        daemon, lib, generated):
    sub = lib / "sub"
    sub.mkdir()
    for photo in generated:
        shutil.copyfile(photo, sub / photo.name)
    daemon.call("watch_add", path=str(lib))
    wait_until(lambda: mid_pass(daemon, 20), 60, 0.01, "no mid-scan moment caught")

    os.rename(sub, lib / "renamed")
    began = time.monotonic()

    all_indexed(daemon, lib, {str(lib / "renamed" / p.name) for p in generated})
    figure(f"{len(generated)} photos, folder renamed mid-scan, all indexed", began)


def test_files_renamed_one_by_one_during_the_first_scan_are_all_indexed(
        daemon, lib, generated):
    for photo in generated:
        shutil.copyfile(photo, lib / photo.name)
    daemon.call("watch_add", path=str(lib))
    wait_until(lambda: mid_pass(daemon, 20), 60, 0.01, "no mid-scan moment caught")

    for photo in generated:
        os.rename(lib / photo.name, lib / f"r-{photo.name}")
    began = time.monotonic()

    all_indexed(daemon, lib, {str(lib / f"r-{p.name}") for p in generated})
    figure(f"{len(generated)} photos renamed one by one mid-scan, all indexed", began)


# --- case 4: a watched folder renamed away, deleted, recreated ---------------------------

def test_a_watched_folder_renamed_away_and_recreated_is_watched_again(daemon, lib, tmp_path):
    first = [Path(shutil.copyfile(shared(r), lib / Path(r).name))
             for r in ("opencv/fruits.jpg", "mate/Aqua.jpg", "skimage/chelsea.png")]
    watch(daemon, lib, first)

    old = tmp_path / "lib.old"
    os.rename(lib, old)  # mv lib lib.old; mkdir lib; cp photos lib/
    lib.mkdir()
    second = [Path(shutil.copyfile(shared(r), lib / Path(r).name))
              for r in ("opencv/building.jpg", "mate/LadyBird.jpg")]
    # The same name in both folders: an event in lib.old must not touch lib/'s row.
    same = Path(shutil.copyfile(shared("sklearn/china.jpg"), lib / "fruits.jpg"))
    began = time.monotonic()

    wanted = {str(p) for p in [*second, same]}
    wait_until(lambda: {p for p, r in rows_under(daemon, lib).items() if r["status"] == "ok"}
               == wanted, 20, message=lambda: f"{sorted(rows_under(daemon, lib))}")
    figure("folder renamed away and recreated, new photos indexed", began)
    assert mode_of(daemon, lib)["mode"] == "watch"
    os.unlink(old / "fruits.jpg")
    os.unlink(old / "Aqua.jpg")
    daemon.barrier(tmp_path / "empty")
    assert set(rows_under(daemon, lib)) == wanted
    # Searches name files that exist: none of lib.old's photos under lib/ paths.
    for query in ("mate/Aqua.jpg", "sklearn/china.jpg"):
        assert all(os.path.exists(m["path"]) for m in daemon.search(shared(query)))
    assert "is another folder now" in daemon.log() or "is gone" in daemon.log()


def test_a_watched_folder_renamed_away_is_unavailable_and_its_events_are_ignored(
        daemon, lib, tmp_path):
    photos = [Path(shutil.copyfile(shared(r), lib / Path(r).name))
              for r in ("opencv/butterfly.jpg", "mate/Storm.jpg")]
    watch(daemon, lib, photos)

    old = tmp_path / "elsewhere"
    os.rename(lib, old)
    began = time.monotonic()
    wait_until(lambda: mode_of(daemon, lib)["mode"] == "unavailable", 10,
               message="the folder renamed away is still said to be watched")
    figure("folder renamed away, unavailable", began)
    os.unlink(old / "butterfly.jpg")  # reported by the old watch as lib/butterfly.jpg
    shutil.copyfile(shared("opencv/fruits.jpg"), old / "new.jpg")
    daemon.barrier(tmp_path / "empty")
    # Its photos are kept (a disk unplugged looks the same), nothing of lib.old applied.
    assert set(rows_under(daemon, lib)) == {str(p) for p in photos}
    assert not rows_under(daemon, old)

    os.rename(old, lib)  # back: watched again, and brought in step
    wait_until(lambda: mode_of(daemon, lib)["mode"] == "watch", 10)
    daemon.barrier(tmp_path / "empty")
    assert set(rows_under(daemon, lib)) == {str(lib / "Storm.jpg"), str(lib / "new.jpg")}


def test_a_watched_folder_deleted_and_recreated_is_picked_up_within_seconds(
        daemon, lib, tmp_path):
    watch(daemon, lib, [Path(shutil.copyfile(shared("opencv/baboon.jpg"), lib / "a.jpg"))])

    shutil.rmtree(lib)
    lib.mkdir()
    new = Path(shutil.copyfile(shared("skimage/coffee.png"), lib / "b.png"))
    began = time.monotonic()

    wait_until(lambda: set(rows_under(daemon, lib)) == {str(new)}, 15,
               message=lambda: f"{rows_under(daemon, lib)}")
    figure("folder deleted and recreated, new photo indexed", began)
    assert mode_of(daemon, lib)["mode"] == "watch"


def test_an_event_of_a_subfolder_moved_out_of_the_tree_never_touches_its_old_path(
        daemon, lib, tmp_path):
    """watchdog keeps watching a subfolder moved out of the watched tree and reports its
    events under the old path; a file now at that path must not lose its row."""
    (lib / "sub").mkdir()
    photo = Path(shutil.copyfile(shared("opencv/fruits.jpg"), lib / "sub" / "x.jpg"))
    watch(daemon, lib, [photo])

    outside = tmp_path / "outside"
    outside.mkdir()
    os.rename(lib / "sub", outside / "sub")
    (lib / "sub").mkdir()
    again = Path(shutil.copyfile(shared("mate/Aqua.jpg"), lib / "sub" / "x.jpg"))
    wait_until(lambda: rows_under(daemon, lib).get(str(again), {}).get("content_hash")
               == blake(again), 20)
    os.unlink(outside / "sub" / "x.jpg")
    daemon.barrier(tmp_path / "empty")
    assert rows_under(daemon, lib)[str(again)]["status"] == "ok"


# --- case 5: a disk unmounted and mounted again ---------------------------------------------

@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    """A folder to mount tmpfs filesystems on (root only); unmounted at the end."""
    point = tmp_path / "disk"
    point.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(point)],
            capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    subprocess.run(["umount", str(point)], check=True)
    yield point
    while subprocess.run(["umount", str(point)], capture_output=True).returncode == 0:
        pass


def test_a_remounted_disk_is_noticed_and_its_new_photos_indexed(daemon, mount_point, tmp_path):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount_point)],
                   check=True)
    first = [Path(shutil.copyfile(shared(r), mount_point / Path(r).name))
             for r in ("opencv/fruits.jpg", "mate/LadyBird.jpg")]
    try:
        watch(daemon, mount_point, first)

        subprocess.run(["umount", str(mount_point)], check=True)
        began = time.monotonic()
        wait_until(lambda: mode_of(daemon, mount_point)["mode"] == "unavailable", 10,
                   message="the unmounted disk is still said to be watched")
        figure("disk unmounted, unavailable", began)
        daemon.barrier(tmp_path / "empty")
        assert set(rows_under(daemon, mount_point)) == {str(p) for p in first}  # kept

        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs",
                        str(mount_point)], check=True)  # a new device number
        for p in first:
            shutil.copyfile(shared("opencv/fruits.jpg" if "fruits" in p.name
                                   else "mate/LadyBird.jpg"), p)
        new = Path(shutil.copyfile(shared("skimage/astronaut.png"), mount_point / "new.png"))
        began = time.monotonic()
        wanted = {str(p) for p in [*first, new]}
        wait_until(lambda: {p for p, r in rows_under(daemon, mount_point).items()
                            if r["status"] == "ok"} == wanted, 20,
                   message=lambda: f"{rows_under(daemon, mount_point)}")
        figure("disk mounted again (new device number), photos indexed", began)
        assert mode_of(daemon, mount_point)["mode"] == "watch"
        assert str(new) in top_paths(daemon.search(shared("skimage/astronaut.png")))
    finally:
        daemon.call("watch_remove", path=str(mount_point))
