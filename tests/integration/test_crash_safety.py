"""Crash safety (issue 7, item 1): SIGKILL at random moments of indexing, damaged index and
store files, a full disk. Real daemon processes, real SQLite and FAISS files; the store and
the index are inspected read-only, or after the daemon has gone.

Figures (kills, restarts, wall times) are printed; RELIABILITY.md records them.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from findsimilar.cli.client import RemoteError

from ..conftest import DEFAULT_DIM, PHOTO_SET, small_tmpfs
from .daemon_harness import (
    DaemonProcess,
    daemon_env,
    indexed_paths,
    make_photos,
    saved_index_ids,
    top_paths,
    wait_until,
)

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
KILL_PHOTOS = 2000
KILLS = 50
SEED = 20261128


# --- fixtures ---------------------------------------------------------------------------

def readonly(data_dir: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{data_dir / 'store.db'}?mode=ro", uri=True, timeout=30)


def integrity(data_dir: Path) -> str:
    conn = readonly(data_dir)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def ok_count(data_dir: Path) -> int:
    if not (data_dir / "store.db").exists():
        return 0
    conn = readonly(data_dir)
    try:
        return conn.execute("select count(*) from files where status = 'ok'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        conn.close()


def saved_ids_are_known(data_dir: Path) -> None:
    """The index file as a kill left it (if any) loads, holds no id twice and no id the
    store does not know: an old save, never a damaged or invented one."""
    from findsimilar.daemon.storage.index import VectorIndex

    files = list(data_dir.glob("index-*.faiss"))
    if not files:
        return
    ids = VectorIndex.load(files[0], DEFAULT_DIM).ids()
    conn = readonly(data_dir)
    try:
        known = {r[0] for r in conn.execute("select id from features")}
    finally:
        conn.close()
    assert len(set(ids.tolist())) == len(ids), "an id twice in the saved index"
    assert set(ids.tolist()) <= known, "the saved index holds ids the store does not know"


# --- SIGKILL at 50 random moments ---------------------------------------------------------

def kill_at_a_random_moment(daemon: DaemonProcess, rng: random.Random, target: int,
                            early: bool) -> str:
    """Start the daemon and SIGKILL it: ``early``, at a random time in its start-up
    (imports, opening and repairing the index, the first scan); otherwise once ``target``
    files are committed, plus a random few milliseconds (mid-batch, mid-commit)."""
    daemon.spawn()
    started = time.monotonic()
    if early:
        time.sleep(rng.uniform(0.3, 4.0))
        moment = f"{time.monotonic() - started:.2f} s after start"
    else:
        def reached() -> bool:
            if not daemon.alive():
                raise AssertionError(f"the daemon died by itself:\n{daemon.log()}")
            return ok_count(daemon.data_dir) >= target

        wait_until(reached, 120, 0.01, daemon.log)
        time.sleep(rng.uniform(0.0, 0.25))
        moment = f"at {target}+ committed"
    assert daemon.alive(), f"the daemon exited before the kill:\n{daemon.log()}"
    daemon.kill()
    return moment


@pytest.mark.slow
def test_sigkill_at_50_random_moments_of_indexing_2000_photos_loses_and_repeats_nothing(
        make_daemon, tmp_path):
    folder = tmp_path / "photos"
    make_photos(folder, KILL_PHOTOS, seed=3, size=(320, 240), prefix="k")
    began = time.monotonic()
    daemon = make_daemon().start()
    daemon.call("watch_add", path=str(folder))
    daemon.kill()  # the first kill comes from the loop; the folder is now in the store

    rng = random.Random(SEED)
    early = [rng.random() < 0.2 for _ in range(KILLS)]
    targets = iter(sorted(rng.sample(range(1, KILL_PHOTOS - 300), KILLS - sum(early))))
    committed = [0]
    for n in range(KILLS):
        moment = kill_at_a_random_moment(daemon, rng, 0 if early[n] else next(targets),
                                         early[n])
        # Cheap checks after every kill: a sound file, nothing committed ever lost, an
        # index file that is an old save at worst.
        assert integrity(daemon.data_dir) == "ok", f"after kill {n + 1} ({moment})"
        committed.append(ok_count(daemon.data_dir))
        assert committed[-1] >= committed[-2], f"kill {n + 1} ({moment}) lost files"
        saved_ids_are_known(daemon.data_dir)
    assert committed[-1] < KILL_PHOTOS, "indexing was over before the last kill"

    daemon.start()
    wait_until(lambda: daemon.status()["indexed"] == KILL_PHOTOS, 180, 0.2,
               lambda: f"{daemon.status()}\n{daemon.log()}")
    daemon.barrier(tmp_path / "empty")
    status = daemon.status()
    assert (status["files"], status["indexed"], status["failed"]) == (KILL_PHOTOS,) * 2 + (0,)
    assert status["unique_images"] == status["vectors"] == KILL_PHOTOS
    assert daemon.terminate() == 0
    have, wanted, check = saved_index_ids(daemon.data_dir)
    assert check == "ok"
    assert have == wanted and len(have) == KILL_PHOTOS  # one vector per photo, none twice
    on_disk = {str(p) for p in folder.iterdir()}
    assert indexed_paths(daemon.data_dir) == on_disk
    conn = readonly(daemon.data_dir)
    vectors = conn.execute("select count(*) from features").fetchone()[0]
    conn.close()
    assert vectors == KILL_PHOTOS  # no picture went through the model into the store twice
    assert not list(daemon.data_dir.glob("*.tmp"))
    log = daemon.log_path.read_text()
    print(f"\nkills: {KILLS} ({sum(early)} during start-up), restarts: {KILLS + 1}, "
          f"integrity_check ok after each; committed before each kill: {committed[1:]}; "
          f"index repaired at start {log.count('out of step')} times, rebuilt "
          f"{log.count('rebuilt the index')} times; wall {time.monotonic() - began:.0f} s")


# --- a damaged index file ---------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_index_file_is_rebuilt_from_the_store_when_the_daemon_starts(
        make_daemon, photo_dir, damage):
    daemon = make_daemon().start()
    daemon.call("index", paths=[str(photo_dir)])
    query = photo_dir / "fruits.jpg"
    before = [m["path"] for m in daemon.search(query)]
    assert daemon.terminate() == 0
    [index_file] = daemon.data_dir.glob("index-*.faiss")
    good = index_file.read_bytes()
    index_file.write_bytes(good[:len(good) // 2] if damage == "truncated"
                           else b"\x00not an index" * 1000)

    log_before = len(daemon.log_path.read_text())
    daemon.start()
    status = daemon.status()
    assert status["vectors"] == status["unique_images"] == len(PHOTO_SET)
    assert [m["path"] for m in daemon.search(query)] == before
    assert status["extracted_since_start"] == 0  # rebuilt from the store, not the photos
    assert "rebuilt the index from the store" in daemon.log_path.read_text()[log_before:]
    assert daemon.terminate() == 0
    have, wanted, check = saved_index_ids(daemon.data_dir)
    assert check == "ok" and have == wanted and len(have) == len(PHOTO_SET)


# --- a damaged store ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def healthy_data_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data dir whose store knows a watched folder of generated photos (made once):
    (data dir, photo folder)."""
    base = tmp_path_factory.mktemp("healthy")
    photos = base / "photos"
    make_photos(photos, 40, seed=5, size=(320, 240), prefix="h")
    sock = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp")) / "h.sock"
    daemon = DaemonProcess(base / "data", sock, base / "healthy.log")
    try:
        daemon.start()
        daemon.call("watch_add", path=str(photos))
        wait_until(lambda: daemon.status()["indexed"] == 40, 120)
        daemon.barrier(base / "empty")
        assert daemon.terminate() == 0
    finally:
        daemon.cleanup()
        shutil.rmtree(sock.parent, ignore_errors=True)
    assert not (base / "data" / "store.db-wal").exists()  # checkpointed at exit
    return base / "data", photos


def damage_store(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "garbage header":
        data[:100] = b"\x8fthis is not SQLite anymore".ljust(100, b"\x00")
    elif how == "truncated":
        del data[len(data) // 3:]
    else:
        page, size = page_to_damage(path, how)
        data[(page - 1) * size:page * size] = bytes([0xA5]) * size
    path.write_bytes(bytes(data))


def page_to_damage(path: Path, how: str) -> tuple[int, int]:
    """(page number, page size): the unique path index's b-tree (read by every scan of
    a folder), or a leaf of the features table (vectors; read as the index is checked)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        if how == "damaged index page":
            return conn.execute("select rootpage from sqlite_master "
                                "where name = 'idx_files_path'").fetchone()[0], size
        try:
            return conn.execute("select pageno from dbstat where name = 'features' "
                                "and pagetype = 'leaf' limit 1").fetchone()[0], size
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table to find a page of the features")
    finally:
        conn.close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "findsimilar", *args], env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize("how", ["garbage header", "truncated", "damaged index page"])
def test_a_damaged_store_stops_the_daemon_with_exit_6_and_recovery_steps_never_a_wipe(
        make_daemon, healthy_data_dir, tmp_path, how):
    data = tmp_path / "data"
    shutil.copytree(healthy_data_dir[0], data)
    store = data / "store.db"
    damage_store(store, how)
    damaged = sha256(store)

    daemon = make_daemon(data_dir=data)
    daemon.spawn()
    code = daemon.proc.wait(120)
    log = daemon.log()
    assert code == 6, log
    assert f"findsimilar: error: the store {store} is damaged" in log
    assert "To recover" in log and ".dump" in log and "Traceback" not in log
    assert sha256(store) == damaged  # left exactly as it was: never wiped or rewritten

    # The command line says the same, with the same exit code, whether it starts the
    # daemon itself (a search) or reads the store without one (status).
    env = daemon_env(data, daemon.socket_path)
    search = cli(env, str(healthy_data_dir[1] / "h-5-0000.jpg"))
    assert search.returncode == 6, search.stderr
    assert "is damaged" in search.stderr and "mkdir" in search.stderr
    status = cli(env, "status")
    if how != "damaged index page":  # status counts rows without touching that index
        assert status.returncode == 6, status.stderr
        assert "is damaged" in status.stderr and "mkdir" in status.stderr
    assert sha256(store) == damaged


@pytest.mark.skipif(SOCKET_ACTIVATE is None,
                    reason="systemd-socket-activate not installed (Debian: systemd)")
def test_a_socket_activated_daemon_on_a_damaged_store_leaves_the_cli_saying_what_to_do(
        make_daemon, healthy_data_dir, tmp_path):
    """Under systemd the daemon's words go to the journal; the client that woke it only
    sees its connection dropped, and must still tell the user what is wrong."""
    data = tmp_path / "data"
    shutil.copytree(healthy_data_dir[0], data)
    damage_store(data / "store.db", "garbage header")
    daemon = make_daemon(data_dir=data)
    passed = [f"--setenv={k}" for k in daemon.env if k.startswith(("FINDSIMILAR_", "XDG_"))]
    daemon.spawn([SOCKET_ACTIVATE, "-l", str(daemon.socket_path), *passed,
                  sys.executable, "-m", "findsimilar", "daemon", "run"])
    wait_until(daemon.socket_path.exists, 30)

    search = cli(daemon_env(data, daemon.socket_path),
                 str(healthy_data_dir[1] / "h-5-0000.jpg"))

    assert daemon.proc.wait(60) == 6
    assert search.returncode == 6, search.stderr
    assert "is damaged" in search.stderr and "mkdir" in search.stderr


@pytest.mark.skipif(shutil.which("sqlite3") is None,
                    reason="the sqlite3 program is not installed (Debian: sqlite3)")
@pytest.mark.parametrize("how", ["damaged index page", "damaged feature page"])
def test_the_printed_recovery_steps_salvage_a_damaged_store_and_its_features(
        make_daemon, healthy_data_dir, tmp_path, how):
    data = tmp_path / "data"
    shutil.copytree(healthy_data_dir[0], data)
    damage_store(data / "store.db", how)
    daemon = make_daemon(data_dir=data)
    daemon.spawn()
    assert daemon.proc.wait(120) == 6
    message = daemon.log().split("findsimilar: error: ")[-1]

    lines = message.splitlines()
    [step1] = [line.split(": ", 1)[1] for line in lines if "1. move the damaged" in line]
    [step2] = [line.strip() for line in lines if line.strip().startswith("sqlite3 ")]
    for command in (step1, step2):
        subprocess.run(["bash", "-c", command], check=True, timeout=60)
    conn = sqlite3.connect(data / "store.db")
    salvaged = conn.execute("select count(*) from features").fetchone()[0]
    conn.close()
    daemon.start()
    daemon.barrier(tmp_path / "empty")
    status = daemon.status()
    assert status["indexed"] == status["vectors"] == 40 and status["failed"] == 0
    # Only the pictures whose vectors were on the damaged page go through the model again.
    assert status["extracted_since_start"] == 40 - salvaged
    assert salvaged == 40 if how == "damaged index page" else 0 < salvaged < 40
    assert (data / "damaged" / "store.db").exists()


# --- a full disk --------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """A 3 MB tmpfs at tmp_path/disk; yields a function that resizes it (``"64m"``)."""
    with small_tmpfs(tmp_path / "disk", "3m") as resize:
        yield resize


@pytest.mark.slow
def test_a_full_disk_pauses_indexing_with_a_clear_error_and_no_damage_and_queries_go_on(
        make_daemon, small_disk, photo_dir, tmp_path):
    data = tmp_path / "disk" / "data"
    many = tmp_path / "many"
    make_photos(many, 600, seed=11, size=(160, 120), prefix="f")
    daemon = make_daemon(data_dir=data).start()
    daemon.call("index", paths=[str(photo_dir)])
    query = Path(shutil.copyfile(photo_dir / "fruits.jpg", tmp_path / "query.jpg"))

    daemon.call("watch_add", path=str(many))
    status = wait_until(lambda: (s := daemon.status())["problem"] and s, 120, 0.2,
                        lambda: f"{daemon.status()}\n{daemon.log()}")
    problem = status["problem"]
    assert "is full" in problem and str(data) in problem
    full_at = len(indexed_paths(data)) - len(PHOTO_SET)
    assert 0 < full_at < 600, "the disk never filled up"
    # Searches go on; more work is refused with the reason; one line in the log.
    assert top_paths(daemon.search(query)) == {str(photo_dir / "fruits.jpg")}
    with pytest.raises(RemoteError, match="is full"):
        daemon.call("index", paths=[str(photo_dir)])
    text = cli(daemon_env(data, daemon.socket_path), "status").stdout
    assert "problem:    the disk holding" in text
    assert integrity(data) == "ok"
    assert daemon.log().count("is full (") == 1, daemon.log()
    assert "Traceback" not in daemon.log()

    small_disk("64m")  # space is freed: indexing resumes by itself
    wait_until(lambda: daemon.status()["indexed"] == len(PHOTO_SET) + 600, 180, 0.2,
               lambda: f"{daemon.status()}\n{daemon.log()}")
    daemon.barrier(tmp_path / "empty")
    status = daemon.status()
    assert status["problem"] is None and status["failed"] == 0
    assert status["vectors"] == status["unique_images"] == len(PHOTO_SET) + 600
    assert daemon.terminate() == 0
    daemon.start()
    status = daemon.status()
    assert status["vectors"] == status["unique_images"] == len(PHOTO_SET) + 600
    assert daemon.terminate() == 0
    have, wanted, check = saved_index_ids(data)
    assert check == "ok" and have == wanted and len(have) == len(PHOTO_SET) + 600
    print(f"\ndisk full after {full_at} of 600 photos ({problem!r}); indexing resumed "
          "by itself once the tmpfs grew, and finished")
