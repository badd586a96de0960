"""Destructive actions act only on facts checked at that moment, and undo is true
(issue 12, cases 2 and 8).

Through one real daemon shared by the module and the real CLI in its own process, on real
files; as root also on real tmpfs, read-only and XFS (reflink) mounts, skipped with the
reason elsewhere. Each test indexes its own folder with `findsimilar index DIR`, which the
daemon does not watch: a change made behind its back afterwards keeps the store stale,
whatever change detection does, exactly like the stale store of issue 12 case 1.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import shared

from .daemon_harness import DaemonProcess, daemon_env, module_daemon, wait_until

OLD_NS = 1_600_000_000_123_456_789  # keepers: the oldest file of each group keeps
NEWER_NS = OLD_NS + 86_400 * 10**9

Cli = Callable[..., subprocess.CompletedProcess]


# -- fixtures ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with module_daemon(tmp_path_factory.mktemp("action-facts")) as daemon:
        yield daemon


def _cli_with(env: dict[str, str]) -> Cli:
    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "findsimilar", *args], env=env,
                              capture_output=True, text=True, timeout=300)
        assert "Traceback" not in done.stderr, done.stderr
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done
    return run


def own_env(daemon: DaemonProcess, tmp_path: Path) -> dict[str, str]:
    """The daemon's environment with this test's own home and desktop trash."""
    (tmp_path / "home").mkdir()
    return {**daemon.env, "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "xdg")}


@pytest.fixture
def env(daemon: DaemonProcess, tmp_path: Path) -> dict[str, str]:
    return own_env(daemon, tmp_path)


@pytest.fixture
def cli(env: dict[str, str]) -> Cli:
    return _cli_with(env)


@pytest.fixture
def trash(tmp_path: Path) -> Path:
    return tmp_path / "xdg" / "Trash"


def _root_mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount filesystems")
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount ({' '.join(args)}): {done.stderr.strip()}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def tmpfs() -> Iterator[Callable[..., Path]]:
    """Mounts small tmpfs filesystems (as root; skips otherwise); unmounted at the end."""
    mounted: list[Path] = []

    def mount(where: Path, size: str = "16m") -> Path:
        where.mkdir(parents=True, exist_ok=True)
        _root_mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "findsimilar-test",
                    str(where))
        mounted.append(where)
        return where

    yield mount
    for where in reversed(mounted):
        _umount(where)


# -- pictures ------------------------------------------------------------------------------

def bmp(path: Path, source: str, size: tuple[int, int] = (96, 64)) -> Path:
    """A real photo as a small 24-bit BMP: every one of a size has the same byte count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(shared(source)).convert("RGB").resize(size).save(path, format="BMP")
    return path


def pair(folder: Path, source: str) -> tuple[Path, Path]:
    """(keeper, byte-identical copy): the keeper is older, so it is the one kept."""
    keep = bmp(folder / "keep.bmp", source)
    copy = folder / "copy.bmp"
    shutil.copyfile(keep, copy)
    os.utime(keep, ns=(OLD_NS, OLD_NS))
    os.utime(copy, ns=(NEWER_NS, NEWER_NS))
    return keep, copy


def replace_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """As `M=$(stat -c %y f); cat other > f; touch -d "$M" f` (issue 12, case 1)."""
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def state(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: (bytes, mtime_ns)."""
    return {str(p): (p.read_bytes(), p.lstat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def files_in(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())


def new_log(daemon: DaemonProcess, before: set[Path]) -> Path:
    (log,) = set((daemon.data_dir / "actions").glob("*.json")) - before
    return log


def logs_now(daemon: DaemonProcess) -> set[Path]:
    return set((daemon.data_dir / "actions").glob("*.json"))


# -- case 2: stale facts never reach a destructive action ---------------------------------

def stale_library(root: Path) -> dict[str, Path]:
    """An indexed-looking library whose store will be stale: four groups, then three files'
    bytes replaced keeping size and mtime (a unique picture each time)."""
    lib, outside = root / "lib", root / "outside"
    x_keep, x_copy = pair(lib / "x", "skimage/chelsea.png")
    y_keep, y_copy = pair(lib / "y", "skimage/coffee.png")
    z_keep, z_copy = pair(lib / "z", "skimage/astronaut.png")
    n_keep = lib / "n" / "fruits.jpg"
    n_keep.parent.mkdir()
    shutil.copy2(shared("opencv/fruits.jpg"), n_keep)
    n_copy = lib / "n" / "fruits-small.jpg"
    with Image.open(n_keep) as im:
        im.resize((im.width // 2, im.height // 2)).save(n_copy, quality=90)
    return {"lib": lib, "outside": outside, "x_keep": x_keep, "x_copy": x_copy,
            "y_keep": y_keep, "y_copy": y_copy, "z_keep": z_keep, "z_copy": z_copy,
            "n_keep": n_keep, "n_copy": n_copy}


def make_stale(p: dict[str, Path]) -> dict[str, bytes]:
    """Replace, behind the store's back: the copy of exact pair x, the keeper of exact
    pair y, the near copy in n (by another small JPEG padded to the same size)."""
    out = p["outside"]
    new = {"x_copy": bmp(out / "rocket.bmp", "skimage/rocket.jpg").read_bytes(),
           "y_keep": bmp(out / "baboon.bmp", "opencv/baboon.jpg").read_bytes()}
    small = out / "storm.jpg"
    Image.open(shared("mate/Storm.jpg")).convert("RGB").resize((40, 30)).save(small)
    jpeg = small.read_bytes()
    new["n_copy"] = jpeg + b"\0" * (p["n_copy"].stat().st_size - len(jpeg))
    for name, data in new.items():
        replace_keeping_size_and_mtime(p[name], data)
    return new


@pytest.mark.parametrize("how", ["trash", "move", "trash --no-daemon"])
def test_a_unique_picture_behind_a_stale_listing_is_never_trashed_or_moved(
        daemon: DaemonProcess, env: dict[str, str], tmp_path: Path, trash: Path,
        how: str) -> None:
    p = stale_library(tmp_path)
    if how.endswith("--no-daemon"):
        env = {**daemon_env(tmp_path / "own-data", None), "HOME": env["HOME"],
               "XDG_DATA_HOME": env["XDG_DATA_HOME"], "FINDSIMILAR_NO_DAEMON": "1"}
    cli = _cli_with(env)
    cli("index", "-q", str(p["lib"]))
    # The user looks at the listing first (its pixel verdicts are cached by content hash).
    listed = json.loads(cli("dupes", str(p["lib"]), "--json").stdout)["groups"]
    assert sorted(g["tier"] for g in listed) == ["exact", "exact", "exact", "near"], listed
    new = make_stale(p)
    if how == "trash":  # once is enough (each command without the daemon loads the model)
        still = json.loads(cli("dupes", str(p["lib"]), "--json").stdout)["groups"]
        assert [g["files"] for g in still] == [g["files"] for g in listed]  # stale store

    dest = tmp_path / "set aside"
    action = ["--move-to", str(dest)] if how == "move" else ["--action", "trash"]
    run = cli("dupes", str(p["lib"]), *action, "--apply")

    out = run.stdout
    assert f"skipped: {p['x_copy']}: bytes changed since listing" in out
    assert f"skipped: {p['y_copy']}: keeper changed since listing; whole group skipped" in out
    assert f"skipped: {p['n_copy']}: bytes changed since listing" in out
    for name, data in new.items():  # the unique pictures are where they were
        assert p[name].read_bytes() == data, name
    assert p["y_copy"].exists() and p["x_keep"].exists() and p["n_keep"].exists()
    # The one group whose facts still hold was acted on.
    assert not p["z_copy"].exists()
    gone_to = trash / "files" if how.startswith("trash") else dest
    assert [f.read_bytes() for f in files_in(gone_to)] == [p["z_keep"].read_bytes()]
    assert "1 done, 3 skipped, 0 failed" in run.stderr


# -- case 8a and 8d: hardlink and reflink, and their undo ----------------------------------

def test_undo_of_a_hard_link_whose_keeper_was_edited_in_place_does_not_claim_restored(
        daemon: DaemonProcess, cli: Cli, tmp_path: Path) -> None:
    keep, copy = pair(tmp_path / "lib", "skimage/chelsea.png")
    cli("index", "-q", str(tmp_path / "lib"))
    before = logs_now(daemon)
    run = cli("dupes", str(tmp_path / "lib"), "--action", "hardlink", "--apply")
    assert copy.stat().st_ino == keep.stat().st_ino  # ext4: no reflink, a hard link
    log = new_log(daemon, before)

    with keep.open("r+b") as f:  # an editor that writes in place, as many do
        f.seek(200)
        f.write(b"\x00" * 64)
    edited = state(tmp_path / "lib")

    undo = cli("dupes", "undo", str(log), check=False)
    assert undo.returncode == 1
    assert "restored" not in undo.stdout
    assert f"not undone: {copy}: its bytes are no longer those the log recorded" in undo.stdout
    assert "original bytes exist nowhere else; left as it is" in undo.stdout
    assert state(tmp_path / "lib") == edited  # nothing written, no mtime put back
    assert copy.stat().st_ino == keep.stat().st_ino
    # And the run had said so: hard-linked files are one file.
    assert f"hard-linked to its keeper (one file now: edit one, both change): {copy}" in (
        run.stdout)
    assert "one file now: editing either changes both" in run.stderr


@pytest.fixture
def xfs_reflink(tmp_path: Path) -> Iterator[Path]:
    """An XFS filesystem with reflink on a loop device (root, mkfs.xfs from xfsprogs)."""
    if shutil.which("mkfs.xfs") is None:
        pytest.skip("needs mkfs.xfs (Debian package xfsprogs)")
    image, mnt = tmp_path / "xfs.img", tmp_path / "xfs"
    with image.open("wb") as f:
        f.truncate(300 * 2**20)  # XFS needs ~300 MB; sparse, so it costs no disk
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"mkfs.xfs failed: {made.stderr.strip()}")
    mnt.mkdir()
    _root_mount("-o", "loop", str(image), str(mnt))
    try:
        yield mnt
    finally:
        _umount(mnt)


def test_hardlink_makes_a_reflink_where_the_filesystem_can_and_undo_is_true(
        daemon: DaemonProcess, cli: Cli, xfs_reflink: Path) -> None:
    lib = xfs_reflink / "lib"
    keep, copy = pair(lib, "skimage/coffee.png")
    copy.chmod(0o600)
    original = state(lib)
    cli("index", "-q", str(lib))
    before = logs_now(daemon)

    run = cli("dupes", str(lib), "--action", "hardlink", "--apply")
    assert f"reflinked to its keeper (a separate file sharing its storage): {copy}" in run.stdout
    assert "one file" not in run.stdout + run.stderr
    assert copy.stat().st_ino != keep.stat().st_ino
    assert state(lib) == original and (copy.stat().st_mode & 0o777) == 0o600
    extents = subprocess.run(["filefrag", "-v", str(copy)], capture_output=True, text=True)
    assert "shared" in extents.stdout, extents.stdout  # the storage really is shared

    with keep.open("r+b") as f:  # editing the keeper leaves the reflinked copy alone
        f.seek(200)
        f.write(b"\x00" * 64)
    assert state(lib)[str(copy)] == original[str(copy)]

    undo = cli("dupes", "undo", str(new_log(daemon, before)))
    assert f"restored: {copy}" in undo.stdout
    assert state(lib)[str(copy)] == original[str(copy)]
    assert copy.stat().st_ino != keep.stat().st_ino


# -- case 8c: a cross-filesystem move that fails leaves nothing behind -----------------------

def test_a_cross_filesystem_move_that_cannot_remove_the_original_leaves_no_copy(
        cli: Cli, tmp_path: Path, tmpfs: Callable[..., Path]) -> None:
    source, dest = tmpfs(tmp_path / "source fs"), tmpfs(tmp_path / "dest fs")
    keep, copy = pair(source / "lib", "skimage/chelsea.png")
    original = state(source)
    cli("index", "-q", str(source / "lib"))
    _root_mount("-o", "remount,ro", str(source))  # the original cannot be unlinked now

    run = cli("dupes", str(source / "lib"), "--move-to", str(dest), "--apply", check=False)
    assert run.returncode == 1  # a step failed: a script must see it
    assert f"failed: {copy}: Read-only file system: {copy}" in run.stdout
    assert "0 done, 0 skipped, 1 failed" in run.stderr
    assert files_in(dest) == []  # no copy, no temp file
    assert state(source) == original


# -- case 8b: a run stopped anywhere stays undoable ------------------------------------------

def exact_pairs(lib: Path, count: int, seed: int) -> None:
    """``count`` distinct small pictures, each with a byte-identical copy."""
    rng = random.Random(seed)
    for i in range(count):
        image = Image.new("RGB", (24, 24))
        image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(24 * 24)])
        keep = lib / f"{i:02d}" / "keep.png"
        keep.parent.mkdir(parents=True)
        image.save(keep)
        shutil.copyfile(keep, keep.with_name("copy.png"))
        os.utime(keep, ns=(OLD_NS + i, OLD_NS + i))
        os.utime(keep.with_name("copy.png"), ns=(NEWER_NS + i, NEWER_NS + i))


def assert_all_back(lib: Path, original: dict[str, tuple[bytes, int]], trash: Path) -> None:
    """Every file at its place with its bytes and mtime; nothing left in the trash."""
    assert state(lib) == original
    assert files_in(lib) == sorted(Path(p) for p in original)  # no temp files either
    assert files_in(trash) == []


def test_a_full_disk_between_steps_leaves_every_change_undoable(
        daemon: DaemonProcess, cli: Cli, tmp_path: Path, trash: Path,
        tmpfs: Callable[..., Path]) -> None:
    lib = tmp_path / "lib"
    exact_pairs(lib, 24, seed=1)
    original = state(lib)
    cli("index", "-q", str(lib))
    apply = ("dupes", str(lib), "--tier", "exact", "--action", "trash", "--apply")
    # Calibrate on a roomy disk: how big is this run's log?
    before = logs_now(daemon)
    cli(*apply)
    log = new_log(daemon, before)
    log_pages = -(-log.stat().st_size // 4096)
    cli("dupes", "undo", str(log))
    assert_all_back(lib, original, trash)

    # Room for the log as that run left it (bigger than when it starts: targets filled
    # in) and one page more: far less than the journal needs for all the steps (a log
    # entry each, or two), so the disk fills up part-way.
    actions = tmpfs(daemon.data_dir / "actions", size=f"{(log_pages + 1) * 4}k")
    run = cli(*apply, check=False)
    assert run.returncode != 0
    assert "cannot write the action log" in run.stderr and str(actions) in run.stderr
    trashed = len(files_in(trash / "files"))
    assert 0 < trashed < 24, f"the disk did not fill up mid-run ({trashed} trashed)"
    (log,) = actions.glob("*.json")
    still_full = cli("dupes", "undo", str(log), check=False)  # says so, changes nothing
    assert still_full.returncode != 0 and str(actions) in still_full.stderr
    assert len(files_in(trash / "files")) == trashed

    _root_mount("-o", "remount,size=4m", str(actions))
    undo = cli("dupes", "undo", str(log))
    assert undo.stdout.count("restored: ") == trashed
    assert_all_back(lib, original, trash)


def test_sigkill_at_any_moment_of_a_run_leaves_every_file_in_place_or_undoable(
        daemon: DaemonProcess, env: dict[str, str], cli: Cli, tmp_path: Path,
        trash: Path) -> None:
    lib = tmp_path / "lib"
    exact_pairs(lib, 40, seed=2)
    original = state(lib)
    cli("index", "-q", str(lib))
    command = [sys.executable, "-m", "findsimilar", "dupes", str(lib), "--tier", "exact",
               "--action", "trash", "--apply", "-q"]
    rng = random.Random(12)
    window, kills = 0.0, []
    for attempt in range(40):
        before = logs_now(daemon)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        wait_until(lambda b=before, p=proc: logs_now(daemon) - b or p.poll() is not None,
                   60, 0.0005)
        started = time.monotonic()
        if attempt:  # the first run goes to its end: it measures how long the steps take
            time.sleep(rng.uniform(0, window))  # the steps take most of it
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert b"Traceback" not in err, err
        if not attempt:
            assert proc.returncode == 0, err
            window = (time.monotonic() - started) * 0.8  # not the exit at the end
        missing = sum(not os.path.lexists(p) for p in original)
        kills.append(missing)
        # Whatever the moment: `dupes undo` brings every file back, and nothing is left.
        log = new_log(daemon, before)
        undo = cli("dupes", "undo", str(log))
        assert undo.stdout.count("restored: ") == missing, (attempt, undo.stdout)
        assert_all_back(lib, original, trash)
        assert not log.with_suffix(".journal").exists()
    assert kills[0] == 40
    print(f"files trashed when killed: {kills[1:]} (window {window:.3f} s)")
