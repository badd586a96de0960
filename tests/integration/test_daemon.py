"""The daemon as a user meets it: a real `findsimilar daemon run` process, real folders,
real inotify events through watchdog, the real model, SQLite and FAISS.

Each test starts its own daemon (data dir under tmp_path, socket under /tmp) unless it
only reads; nothing sleeps for a fixed time where a condition can be polled instead.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from findsimilar.cli.client import RemoteError
from findsimilar.config import default_socket_path

from ..conftest import PHOTO_SET, shared
from .daemon_harness import (
    DaemonProcess,
    TwinLibrary,
    daemon_env,
    indexed_paths,
    make_photos,
    saved_index_ids,
    store_rows,
    top_paths,
    twin_library_daemon,
    wait_until,
)

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
INOTIFY_WATCHES = Path("/proc/sys/fs/inotify/max_user_watches")
MANY = 150  # generated photos for the long indexing jobs
# Photos that are not in PHOTO_SET (so not in photo_dir): new content for a watched folder.
NEW_PHOTOS = ["skimage/astronaut.png", "opencv/messi5.jpg", "sklearn/flower.jpg",
              "opencv/starry_night.jpg"]
EXCLUDED_DIRS = [".hidden", "@eaDir", ".thumbnails", ".Trash-1000", "sub/@eaDir"]


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess]) -> DaemonProcess:
    return make_daemon().start()


@pytest.fixture(scope="session")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MANY distinct JPEGs, made once; tests copy them (they move and delete files)."""
    folder = tmp_path_factory.mktemp("generated") / "many"
    make_photos(folder, MANY, seed=7)
    return folder


@pytest.fixture
def many(generated: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(generated, tmp_path / "many"))


@pytest.fixture
def queries(tmp_path: Path) -> Callable[[str], Path]:
    """A copy of a shared photo outside every indexed folder: a query by content."""
    folder = tmp_path / "queries"

    def copy(rel: str) -> Path:
        folder.mkdir(exist_ok=True)
        return Path(shutil.copyfile(shared(rel), folder / Path(rel).name))

    return copy


def watched(daemon: DaemonProcess, folder: Path, count: int,
            excludes: list[str] | None = None) -> None:
    """Watch ``folder`` and wait until its ``count`` photos are indexed."""
    result = daemon.call("watch_add", path=str(folder), excludes=excludes or [])
    assert result["path"] == str(folder)
    wait_until(lambda: len(indexed_paths(daemon.data_dir)) == count, 60,
               message=lambda: f"{len(indexed_paths(daemon.data_dir))} of {count} indexed")
    daemon.barrier(folder.parent / "empty")


def mode_of(daemon: DaemonProcess, root: Path) -> dict[str, Any]:
    [entry] = [r for r in daemon.call("watch_list") if r["path"] == str(root)]
    return entry


# --- 1-6: following a watched folder -------------------------------------------------------

def test_a_photo_copied_into_a_watched_folder_becomes_searchable(daemon, photo_dir, queries):
    watched(daemon, photo_dir, len(PHOTO_SET))
    query = queries(NEW_PHOTOS[0])
    assert not top_paths(daemon.search(query))
    before = daemon.status()["extracted_since_start"]

    new = Path(shutil.copyfile(query, photo_dir / "sub" / "just-copied.png"))

    wait_until(lambda: str(new) in top_paths(daemon.search(query)), 20,
               message="the new photo never showed up in search results")
    # Searching by the file's own path finds its identical copy (the query file).
    daemon.call("index", paths=[str(query.parent)])
    assert str(query) in top_paths(daemon.search(new))
    assert daemon.status()["extracted_since_start"] == before + 1


def test_a_photo_overwritten_with_another_picture_is_found_by_its_new_content(
        daemon, photo_dir, queries):
    target = photo_dir / "Aqua.jpg"
    target.chmod(0o644)  # copy2 kept the shared photo's read-only mode
    watched(daemon, photo_dir, len(PHOTO_SET))
    old_query, new_query = queries("mate/Aqua.jpg"), queries(NEW_PHOTOS[1])
    assert str(target) in top_paths(daemon.search(old_query))
    old_hash = store_rows(daemon.data_dir)[str(target)]["content_hash"]

    with open(target, "wb") as fh:
        fh.write(new_query.read_bytes())

    wait_until(lambda: str(target) in top_paths(daemon.search(new_query)), 20,
               message="the new content was not indexed at the old path")
    assert str(target) not in top_paths(daemon.search(old_query))
    row = store_rows(daemon.data_dir)[str(target)]
    assert row["status"] == "ok" and row["content_hash"] != old_hash


def test_a_half_written_photo_is_neither_failed_nor_indexed_until_it_is_closed(
        daemon, photo_dir):
    watched(daemon, photo_dir, len(PHOTO_SET))
    data = shared("opencv/starry_night.jpg").read_bytes()
    path = photo_dir / "downloading.jpg"
    before = daemon.status()["extracted_since_start"]

    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        # The watcher has seen the file and waits for it to settle...
        wait_until(lambda: daemon.status()["queued"] >= 1, 10)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # ...and, while it stays open, keeps waiting.
            assert str(path) not in store_rows(daemon.data_dir)
            assert daemon.status()["failed"] == 0
            time.sleep(0.1)
        fh.write(data[len(data) // 2:])

    wait_until(lambda: str(path) in indexed_paths(daemon.data_dir), 20)
    daemon.barrier(photo_dir.parent / "empty")
    status = daemon.status()
    assert status["failed"] == 0
    assert status["extracted_since_start"] == before + 1  # indexed exactly once
    assert status["indexed"] == len(PHOTO_SET) + 1


def test_moved_files_and_folders_keep_their_features_without_the_model(
        daemon, photo_dir, queries):
    watched(daemon, photo_dir, len(PHOTO_SET))
    # A folder with several photos, and a file into a new folder.
    (photo_dir / "sub" / "more").mkdir()
    for rel in NEW_PHOTOS[:2]:
        shutil.copyfile(shared(rel), photo_dir / "sub" / "more" / Path(rel).name)
    wait_until(lambda: len(indexed_paths(daemon.data_dir)) == len(PHOTO_SET) + 2, 20)
    daemon.barrier(photo_dir.parent / "empty")
    extracted = daemon.status()["extracted_since_start"]
    assert extracted == len(PHOTO_SET) + 2
    old = indexed_paths(daemon.data_dir)

    (photo_dir / "album").mkdir()
    os.rename(photo_dir / "Storm.jpg", photo_dir / "album" / "Storm-renamed.jpg")
    os.rename(photo_dir / "sub", photo_dir / "album" / "sub-moved")

    expected = {p.replace(f"{photo_dir}/sub/", f"{photo_dir}/album/sub-moved/")
                .replace(f"{photo_dir}/Storm.jpg", f"{photo_dir}/album/Storm-renamed.jpg")
                for p in old}
    wait_until(lambda: indexed_paths(daemon.data_dir) == expected, 20,
               message=lambda: str(indexed_paths(daemon.data_dir) ^ expected))
    daemon.wait_idle()
    daemon.barrier(photo_dir.parent / "empty")
    status = daemon.status()
    assert status["extracted_since_start"] == extracted  # no picture went through the model
    assert status["indexed"] == len(expected) and status["vectors"] == status["unique_images"]
    found = top_paths(daemon.search(queries("skimage/chelsea.png")))
    assert found == {f"{photo_dir}/album/sub-moved/chelsea.png"}
    found = top_paths(daemon.search(queries("mate/Storm.jpg")))
    assert found == {f"{photo_dir}/album/Storm-renamed.jpg"}


def test_deleted_files_and_folders_leave_the_results_and_the_counts(daemon, photo_dir, queries):
    watched(daemon, photo_dir, len(PHOTO_SET))
    in_sub = {str(p) for p in (photo_dir / "sub").iterdir()}
    assert len(in_sub) == 3

    (photo_dir / "Storm.jpg").unlink()
    shutil.rmtree(photo_dir / "sub")

    left = len(PHOTO_SET) - 4
    wait_until(lambda: daemon.status()["indexed"] == left, 20,
               message=lambda: str(daemon.status()["indexed"]))
    assert not in_sub & set(store_rows(daemon.data_dir))
    assert str(photo_dir / "Storm.jpg") not in store_rows(daemon.data_dir)
    status = daemon.status()
    assert status["vectors"] == status["unique_images"] == left
    assert not top_paths(daemon.search(queries("skimage/chelsea.png")))
    assert not top_paths(daemon.search(queries("mate/Storm.jpg")))
    assert top_paths(daemon.search(queries("mate/Aqua.jpg"))) == {str(photo_dir / "Aqua.jpg")}


def test_hidden_cache_trash_and_user_excluded_folders_are_never_indexed(daemon, photo_dir):
    def fill(names: list[str], tag: str) -> None:
        for i, name in enumerate(names):
            folder = photo_dir / name
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared(PHOTO_SET[i % len(PHOTO_SET)]), folder / f"{tag}{i}.jpg")

    fill([*EXCLUDED_DIRS, "exports-2024", "sub/exports-old"], "before")  # seen by the scan
    watched(daemon, photo_dir, len(PHOTO_SET), excludes=["exports*"])

    # Seen by the watcher: into existing excluded folders, and into new ones...
    fill([*EXCLUDED_DIRS, "exports-2024", ".new-hidden", "exports-new", "sub/.cache"], "after")
    # ...and a folder moved in from elsewhere with excluded folders inside.
    album = photo_dir.parent / "elsewhere" / "album"
    for name in (".hidden", "@eaDir", "exports-x"):
        (album / name).mkdir(parents=True)
        shutil.copyfile(shared(PHOTO_SET[0]), album / name / "after-move.jpg")
    os.rename(album, photo_dir / "album")
    sentinel = Path(shutil.copyfile(shared(NEW_PHOTOS[2]), photo_dir / "sentinel.jpg"))
    wait_until(lambda: str(sentinel) in indexed_paths(daemon.data_dir), 20)
    daemon.wait_idle()
    daemon.barrier(photo_dir.parent / "empty")

    def check() -> None:
        rows = store_rows(daemon.data_dir)
        assert not [p for p in rows if "before" in p or "after" in p], sorted(rows)
        assert len(rows) == len(PHOTO_SET) + 1, sorted(rows)
        assert daemon.status()["failed"] == 0

    check()
    daemon.call("reindex")  # and a full rescan agrees
    daemon.barrier(photo_dir.parent / "empty")
    check()


def test_new_excludes_for_a_watched_folder_apply_to_files_that_arrive_later(daemon, photo_dir):
    (photo_dir / "exports-1").mkdir()
    watched(daemon, photo_dir, len(PHOTO_SET))
    daemon.call("watch_add", path=str(photo_dir), excludes=["exports*"])
    daemon.barrier(photo_dir.parent / "empty")

    shutil.copyfile(shared(NEW_PHOTOS[0]), photo_dir / "exports-1" / "late.png")
    sentinel = Path(shutil.copyfile(shared(NEW_PHOTOS[1]), photo_dir / "sentinel.jpg"))
    wait_until(lambda: str(sentinel) in indexed_paths(daemon.data_dir), 20)
    daemon.wait_idle()
    assert set(store_rows(daemon.data_dir)) == {str(p) for p in photo_dir.rglob("*")
                                               if p.is_file() and "exports-1" not in str(p)}


# --- 7-11: crashes, restarts, shutdown --------------------------------------------------------

@pytest.mark.slow
def test_kill_9_at_three_moments_of_indexing_still_indexes_every_file_exactly_once(
        make_daemon, many):
    daemon = make_daemon().start()
    daemon.call("watch_add", path=str(many))
    # Moments: in the first batches; half-way (after a restart); near the end.
    for at_least in (1, MANY // 2, MANY - 30):
        wait_until(lambda n=at_least: daemon.status()["indexed"] >= n, 60, 0.01)
        daemon.kill()
        assert len(indexed_paths(daemon.data_dir)) < MANY, "the moment was missed"
        daemon.start()

    wait_until(lambda: daemon.status()["indexed"] == MANY, 60,
               message=lambda: str(daemon.status()))
    daemon.barrier(many.parent / "empty")
    status = daemon.status()
    assert (status["files"], status["indexed"], status["failed"]) == (MANY, MANY, 0)
    assert status["unique_images"] == status["vectors"] == MANY
    assert daemon.terminate() == 0
    have, wanted, integrity = saved_index_ids(daemon.data_dir)
    assert integrity == "ok"
    assert have == wanted and len(have) == MANY  # one vector per file, no duplicates
    assert not list(daemon.data_dir.glob("*.tmp"))


def test_files_moved_while_the_daemon_was_down_are_relinked_without_the_model(
        daemon, photo_dir, queries):
    watched(daemon, photo_dir, len(PHOTO_SET))
    assert daemon.terminate() == 0

    os.rename(photo_dir / "Aqua.jpg", photo_dir / "Aqua-renamed.jpg")
    os.rename(photo_dir / "LadyBird.jpg", photo_dir / "sub" / "LadyBird.jpg")
    os.rename(photo_dir / "sub", photo_dir / "renamed-sub")

    daemon.start()
    daemon.barrier(photo_dir.parent / "empty")  # after the start-up reconcile
    on_disk = {str(p) for p in photo_dir.rglob("*") if p.is_file()}
    assert indexed_paths(daemon.data_dir) == on_disk
    assert set(store_rows(daemon.data_dir)) == on_disk
    status = daemon.status()
    assert status["extracted_since_start"] == 0
    assert status["indexed"] == len(PHOTO_SET) and status["vectors"] == len(PHOTO_SET)
    assert top_paths(daemon.search(queries("mate/LadyBird.jpg"))) == {
        str(photo_dir / "renamed-sub" / "LadyBird.jpg")}


def test_a_watched_folder_missing_at_start_is_kept_and_watched_again_when_back(
        daemon, photo_dir, queries):
    watched(daemon, photo_dir, len(PHOTO_SET))
    assert daemon.terminate() == 0
    away = photo_dir.with_name("unplugged")
    os.rename(photo_dir, away)

    daemon.start()
    daemon.barrier(photo_dir.parent / "empty")
    assert mode_of(daemon, photo_dir)["mode"] == "unavailable"
    assert daemon.status()["indexed"] == len(PHOTO_SET)  # not a mass deletion
    assert len(indexed_paths(daemon.data_dir)) == len(PHOTO_SET)

    os.rename(away, photo_dir)
    daemon.call("reindex")
    wait_until(lambda: mode_of(daemon, photo_dir)["mode"] == "watch", 20)
    daemon.barrier(photo_dir.parent / "empty")
    assert daemon.status()["extracted_since_start"] == 0
    new = Path(shutil.copyfile(shared(NEW_PHOTOS[0]), photo_dir / "after-return.png"))
    wait_until(lambda: str(new) in indexed_paths(daemon.data_dir), 20,
               message="the folder is not watched again")
    assert str(new) in top_paths(daemon.search(queries(NEW_PHOTOS[0])))


@pytest.mark.slow
def test_sigterm_during_indexing_exits_0_within_5_s_with_the_index_saved(daemon, many):
    daemon.call("index", paths=[str(many)], wait=False)
    wait_until(lambda: daemon.status()["progress"]["done"] >= 30, 60, 0.01)

    started = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.proc.wait(10)
    took = time.monotonic() - started

    assert code == 0, daemon.log()
    assert took < 5, f"took {took:.1f} s to stop"
    have, wanted, integrity = saved_index_ids(daemon.data_dir)
    assert integrity == "ok"
    assert have == wanted  # the saved file matches the store
    assert 0 < len(have) < MANY, "indexing was over before SIGTERM came"
    print(f"stopped {took:.2f} s after SIGTERM with {len(have)} of {MANY} indexed")
    indexed = len(indexed_paths(daemon.data_dir))

    log_before = len(daemon.log_path.read_text())
    daemon.start()  # `index` is not `watch`: nothing resumes, so the counts stay put
    status = daemon.status()
    assert status["indexed"] == status["vectors"] == status["unique_images"] == indexed
    restart_log = daemon.log_path.read_text()[log_before:]
    assert "rebuilt" not in restart_log and "out of step" not in restart_log, restart_log


def test_a_second_daemon_on_the_same_data_dir_exits_with_a_clear_message(
        daemon, make_daemon):
    second = make_daemon("second", socket_path=daemon.socket_path)
    second.spawn()
    code = second.proc.wait(60)
    assert code != 0
    assert f"(pid {daemon.pid}) already serves {daemon.data_dir}" in second.log()
    assert daemon.socket_path.exists()  # the loser did not take the winner's socket
    assert daemon.call("ping")["pid"] == daemon.pid


# --- 12-13: sockets ---------------------------------------------------------------------------

@pytest.mark.skipif(SOCKET_ACTIVATE is None,
                    reason="systemd-socket-activate not installed (Debian: systemd)")
def test_a_socket_activated_daemon_answers_and_leaves_the_socket_to_systemd(
        make_daemon, photo_dir, queries):
    daemon = make_daemon("activated")
    # systemd-socket-activate gives the child a clean environment but for these.
    passed = [f"--setenv={k}" for k in daemon.env if k.startswith(("FINDSIMILAR_", "XDG_"))]
    daemon.spawn([SOCKET_ACTIVATE, "-l", str(daemon.socket_path), *passed,
                  sys.executable, "-m", "findsimilar", "daemon", "run"])
    wait_until(daemon.socket_path.exists, 30)
    inode = daemon.socket_path.stat().st_ino

    assert daemon.wait_ready()["data_dir"] == str(daemon.data_dir)  # the first connection
    summary = daemon.call("index", paths=[str(photo_dir)])
    assert summary["new"] == len(PHOTO_SET)
    assert daemon.status()["indexed"] == len(PHOTO_SET)
    assert top_paths(daemon.search(queries("mate/Aqua.jpg"))) == {str(photo_dir / "Aqua.jpg")}

    assert daemon.terminate() == 0
    assert daemon.socket_path.exists() and daemon.socket_path.stat().st_ino == inode


def test_a_self_bound_socket_is_0600_in_a_0700_folder_of_the_runtime_dir(
        make_daemon, tmp_path, monkeypatch):
    runtime = Path(tempfile.mkdtemp(prefix="fs-rt-", dir="/tmp"))
    try:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        monkeypatch.delenv("FINDSIMILAR_SOCKET", raising=False)
        data = tmp_path / "data"
        expected = default_socket_path(data)
        assert expected.parent == runtime / "findsimilar"
        assert expected.name.startswith("daemon-") and expected.name.endswith(".sock")
        daemon = make_daemon("default", data_dir=data, socket_path=expected,
                             XDG_RUNTIME_DIR=str(runtime))
        del daemon.env["FINDSIMILAR_SOCKET"]
        daemon.spawn(umask=0)  # even a careless umask must not open it up
        daemon.wait_ready()

        assert stat.S_ISSOCK(expected.stat().st_mode)
        assert stat.S_IMODE(expected.stat().st_mode) == 0o600
        assert stat.S_IMODE(expected.parent.stat().st_mode) == 0o700
        assert daemon.status()["daemon"]["socket"] == str(expected)
        assert daemon.terminate() == 0
        assert not expected.exists()  # its own socket: removed on the way out
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


# --- 14-16: the protocol and the client ---------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinLibrary]:
    """One daemon for the read-only tests: PHOTO_SET, each photo with an identical twin."""
    with twin_library_daemon(tmp_path_factory.mktemp("served"),
                             [shared(rel) for rel in PHOTO_SET]) as daemon:
        yield daemon


def raw_exchange(path: Path, payload: bytes, timeout: float = 20) -> dict[str, Any]:
    """Send raw bytes, read one framed reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(payload)
        return read_frame(s)


def read_frame(s: socket.socket) -> dict[str, Any]:
    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            assert chunk, "the daemon hung up without a reply"
            data += chunk
        return data

    (length,) = struct.unpack(">I", exact(4))
    return json.loads(exact(length))


def frame(obj: Any) -> bytes:
    data = json.dumps(obj).encode()
    return struct.pack(">I", len(data)) + data


def twin_search_is_right(daemon: TwinLibrary, client: Any, name: str) -> bool:
    [result] = client.call("search", paths=[str(daemon.photos / name)], k=3)
    return result["results"][0]["path"] == str(daemon.photos / f"twin-{name}")


def test_a_malformed_frame_gets_an_error_and_other_clients_are_still_served(served):
    with served.client() as other:
        assert other.call("ping")
        for garbage in (struct.pack(">I", 11) + b"not json!!!",
                        frame([1, 2, 3]),  # JSON, but not a request
                        frame({"command": "ping"}),  # no protocol version
                        struct.pack(">I", 4) + b"\xff\xfe\xfd\xfc"):
            reply = raw_exchange(served.socket_path, garbage)
            assert reply["ok"] is False and reply["error"]["type"] == "ProtocolError", reply
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # hangs up mid-frame
            s.connect(str(served.socket_path))
            s.sendall(struct.pack(">I", 1000) + b"{")
        assert other.call("ping")["pid"] == served.pid
        assert twin_search_is_right(served, other, "Aqua.jpg")


def test_a_4_gb_length_prefix_is_refused_without_allocating_it(served):
    rss = served.rss_kb()
    reply = raw_exchange(served.socket_path, b"\xff\xff\xff\xff")
    assert reply["ok"] is False and "exceeds" in reply["error"]["message"], reply
    assert served.call("ping")["pid"] == served.pid
    assert served.rss_kb() - rss < 64 * 1024, "the daemon's memory jumped"


def test_an_unknown_command_or_bad_arguments_get_an_error_reply_on_a_live_connection(served):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(20)
        s.connect(str(served.socket_path))
        s.sendall(frame({"v": 1, "command": "frobnicate", "args": {}}))
        reply = read_frame(s)
        assert reply["ok"] is False and reply["error"]["type"] == "UnknownCommand", reply
        s.sendall(frame({"v": 1, "command": "search", "args": {"bogus": 1}}))
        reply = read_frame(s)
        assert reply["ok"] is False and reply["error"]["type"] == "BadArguments", reply
        s.sendall(frame({"v": 1, "command": "ping", "args": {}}))  # same connection
        assert read_frame(s)["ok"] is True
    with served.client() as c, pytest.raises(RemoteError) as err:
        c.call("frobnicate")
    assert err.value.kind == "UnknownCommand"


def test_an_idle_client_does_not_block_another_clients_search(served):
    with contextlib.ExitStack() as stack:
        for payload in (b"", b"\x00\x00"):  # nothing, and half a header
            s = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            s.connect(str(served.socket_path))
            s.sendall(payload)
        with served.client(timeout=10) as c:
            assert twin_search_is_right(served, c, "LadyBird.jpg")


def test_hundreds_of_short_client_connections_leave_no_file_descriptors_behind(served):
    def open_fds() -> int:
        return len(os.listdir(f"/proc/{served.pid}/fd"))

    served.call("ping")
    before = open_fds()
    for _ in range(200):  # like 200 CLI commands: one connection each
        with served.client() as c:
            c.call("status")
            assert twin_search_is_right(served, c, "Storm.jpg")
    wait_until(lambda: open_fds() - before < 10, 10,
               message=lambda: f"{open_fds() - before} more open files after 200 clients")


def test_search_by_image_bytes_finds_the_original(served):
    data = shared("opencv/butterfly.jpg").read_bytes()
    result = served.call("search_bytes", data=base64.b64encode(data).decode(),
                         name="from-the-client.jpg", k=3)
    assert result["query"] == "from-the-client.jpg"
    assert top_paths(result["results"]) == {str(served.photos / "butterfly.jpg"),
                                            str(served.photos / "twin-butterfly.jpg")}
    with pytest.raises(RemoteError) as err:
        served.call("search_bytes", data=base64.b64encode(b"not a picture").decode())
    assert err.value.exit_code == 4


def test_the_thin_client_imports_no_torch_faiss_or_numpy():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import findsimilar.cli.main"],
                          capture_output=True, text=True, timeout=60, check=True)
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
               if line.startswith("import time:")}
    assert "findsimilar.cli.main" in modules  # the output was parsed
    heavy = {m for m in modules if m.split(".")[0] in ("torch", "faiss", "numpy")}
    assert not heavy, sorted(heavy)


# --- 17-19: under load, and without inotify ----------------------------------------------------

@pytest.mark.slow
def test_a_query_is_answered_while_a_big_indexing_job_runs(daemon, photo_dir, many, queries):
    daemon.call("index", paths=[str(photo_dir)])
    query = queries("opencv/fruits.jpg")  # not indexed itself: needs the model
    daemon.call("index", paths=[str(many)], wait=False)
    wait_until(lambda: daemon.status()["progress"]["done"] >= 1, 60, 0.01)

    asked = time.monotonic()
    matches = daemon.search(query)
    answered = time.monotonic()
    still_indexing = daemon.status()["queued"] > 0
    wait_until(lambda: daemon.status()["indexed"] == len(PHOTO_SET) + MANY, 120)
    finished = time.monotonic()

    assert matches[0]["path"] == str(photo_dir / "fruits.jpg")
    assert still_indexing, f"answered after {answered - asked:.2f} s, when indexing was over"
    assert answered < finished
    print(f"search took {answered - asked:.2f} s; indexing went on {finished - answered:.2f} s")


@pytest.mark.slow
def test_status_json_during_indexing_reports_what_is_queued(daemon, many):
    env = daemon_env(daemon.data_dir, daemon.socket_path)

    def status_json() -> dict[str, Any]:
        proc = subprocess.run([sys.executable, "-m", "findsimilar", "status", "--json"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    daemon.call("index", paths=[str(many)], wait=False)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # until one status sees the queue, or the job ends
        seen.append(status_json())
        if seen[-1]["queued"] > 0 or seen[-1]["indexed"] >= MANY:
            break
    busy = [s for s in seen if s["queued"] > 0]
    assert busy, f"indexing finished before any of {len(seen)} status calls saw it"
    assert {"indexed", "failed", "queued"} <= set(busy[0])
    assert busy[0]["indexed"] + busy[0]["queued"] <= MANY and busy[0]["failed"] == 0
    assert busy[0]["state"] != "idle"


class WatchLimit:
    """fs.inotify.max_user_watches, changed for a moment."""

    def __init__(self) -> None:
        self.original = INOTIFY_WATCHES.read_text()
        INOTIFY_WATCHES.write_text(self.original)  # raises unless we may change it

    def set(self, value: int) -> None:
        INOTIFY_WATCHES.write_text(str(value))

    def restore(self) -> None:
        INOTIFY_WATCHES.write_text(self.original)


@pytest.fixture
def inotify_watch_limit() -> Iterator[WatchLimit]:
    """Needs root (or a writable sysctl); the limit is always restored."""
    try:
        limit = WatchLimit()
    except OSError as exc:
        pytest.skip(f"cannot change {INOTIFY_WATCHES}: {os.strerror(exc.errno or errno.EPERM)}")
    try:
        yield limit
    finally:
        limit.restore()


def inotify_watches_in_use() -> int:
    """Watches held by every process we can see (the limit counts per user)."""
    count = 0
    for info in Path("/proc").glob("[0-9]*/fdinfo/*"):
        with contextlib.suppress(OSError):
            count += sum(line.startswith("inotify wd:") for line in info.open())
    return count


@pytest.mark.parametrize("limit", ["1", "in use + 1"])
def test_a_folder_inotify_cannot_watch_is_rescanned_instead(
        daemon, photo_dir, inotify_watch_limit, limit):
    """With "1" even the folder itself may not be watched; with "in use + 1" it is, but
    its subfolders are not (the usual case on a big tree), which is just as incomplete."""
    for i in range(10):  # room for error if another process frees a few watches meanwhile
        (photo_dir / "sub" / f"empty-{i}").mkdir()
    try:
        inotify_watch_limit.set(1 if limit == "1" else inotify_watches_in_use() + 1)
        daemon.call("watch_add", path=str(photo_dir))
        daemon.barrier(photo_dir.parent / "empty")  # the folder's first scan is over
    finally:
        inotify_watch_limit.restore()  # other processes on this machine need theirs
    root = mode_of(daemon, photo_dir)
    assert root["mode"] == "rescan", root
    assert "inotify" in root["why"]
    assert len(indexed_paths(daemon.data_dir)) == len(PHOTO_SET)

    new = Path(shutil.copyfile(shared(NEW_PHOTOS[3]), photo_dir / "sub" / "later.jpg"))
    daemon.call("reindex")
    wait_until(lambda: str(new) in indexed_paths(daemon.data_dir), 30,
               message="a reindex did not pick up the new photo")
    assert daemon.status()["failed"] == 0
    # The limit is back up: that reindex could watch the folder again, subfolders too.
    assert mode_of(daemon, photo_dir)["mode"] == "watch"
    deeper = Path(shutil.copyfile(shared(NEW_PHOTOS[0]), photo_dir / "sub" / "deeper.png"))
    wait_until(lambda: str(deeper) in indexed_paths(daemon.data_dir), 20,
               message="the folder is not watched again")
