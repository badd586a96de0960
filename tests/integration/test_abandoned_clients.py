"""Abandoned clients (issue 12, case 9): a client that hangs up used to leave its work
running (200 abandoned 3,000-path searches ran 5.5 min, RSS 3.4 GB, 205 store.db
handles held). Now the server notices the hang-up between units of work and the work
stops: its thread ends and its store connections close.

A real daemon, the real model, raw clients on the real socket that send a long request
and hang up. What stops is shown with what /proc exposes (the daemon's threads and its
open store.db descriptors) and with ``status`` (``dupes_progress``, the listings running).
The figures are printed (``pytest -s``) for RELIABILITY.md.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from findsimilar.daemon.service.server import hung_up
from findsimilar.protocol import encode_message, request, send_message

from ..conftest import shared
from .daemon_harness import TwinLibrary, top_paths, twin_library_daemon, wait_until

PHOTOS = ["opencv/butterfly.jpg", "skimage/coffee.png", "mate/Storm.jpg",
          "sklearn/china.jpg", "opencv/fruits.jpg", "mate/Aqua.jpg"]
EDITED = ["opencv/baboon.jpg", "opencv/building.jpg"]  # each in many near-identical copies
COPIES = 30
CLIENTS = 8
# Long enough that the work of the abandoned clients, left running, would outlast
# STOPPED_WITHIN many times over (measured: ~40 ms a search by content, ~30 ms a pixel
# check, on 2 cores shared by all clients).
SEARCHES = 400
STOPPED_WITHIN = 10.0  # seconds; the deadline of a poll, not a measure of speed


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinLibrary]:
    """PHOTOS indexed, each with an identical twin (so a query has one right answer), plus
    a folder of near-identical copies of EDITED (a `dupes` listing of it has hundreds of
    pairs to check) and, outside the index, many names for the same photos."""
    base = tmp_path_factory.mktemp("abandoned")
    with twin_library_daemon(base, [shared(rel) for rel in PHOTOS],
                             FINDSIMILAR_PRECHECK_AFTER="0") as daemon:
        edits = base / "edits"
        for rel in EDITED:
            make_copies(shared(rel), edits, COPIES)
        assert daemon.call("index", paths=[str(edits)])["new"] == COPIES * len(EDITED)
        names = base / "names"
        names.mkdir()
        for i in range(SEARCHES):
            source = daemon.outside / Path(PHOTOS[i % len(PHOTOS)]).name
            os.link(source, names / f"{i:04d}-{source.name}")
        daemon.edits, daemon.names = edits, names  # type: ignore[attr-defined]
        yield daemon


def make_copies(source: Path, folder: Path, count: int) -> None:
    """``count`` near-identical JPEGs of ``source``: a little smaller, another quality."""
    from PIL import Image

    folder.mkdir(exist_ok=True)
    with Image.open(source) as im:
        im = im.convert("RGB")
        for i in range(count):
            scale = 1 - 0.01 * i
            copy = im.resize((int(im.width * scale), int(im.height * scale)))
            copy.save(folder / f"{source.stem}-{i:02d}.jpg", quality=60 + i)


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def store_handles(library: TwinLibrary) -> int:
    """The daemon's open descriptors on store.db and its -wal and -shm files."""
    store = str(library.data_dir / "store.db")
    count = 0
    for fd in os.listdir(f"/proc/{library.pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/{library.pid}/fd/{fd}").startswith(store)
    return count


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


def idle_threads(library: TwinLibrary) -> int:
    """The idle daemon's thread count, once a served client's thread has ended."""
    library.wait_idle()
    library.search(library.photos / "coffee.png")
    return wait_until(lambda: stable(library), 20, 0.2, "the idle daemon never settles")


def stable(library: TwinLibrary) -> int | None:
    first = threads(library.pid)
    time.sleep(0.2)
    return first if first == threads(library.pid) else None


def send_and_keep(library: TwinLibrary, command: str, **args: object) -> socket.socket:
    """A client that sends one request and will never read the reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(library.socket_path))
    send_message(sock, request(command, **args))
    return sock


def hang_up_and_wait(library: TwinLibrary, clients: list[socket.socket], idle: int,
                     busy: str) -> None:
    """Close every client at once; return when the daemon is back to its ``idle`` thread
    count and has no listing running. Prints what the abandoned work held and how long
    it lasted after the hang-up.

    Store descriptors are printed, not compared: SQLite keeps the descriptor of a closed
    connection open (and reuses it) while another connection of the process holds a
    lock, as the daemon's writer always does, so their count stays at its high-water mark.
    """
    held = (threads(library.pid), store_handles(library), rss_mb(library.pid))
    started = time.monotonic()
    for sock in clients:
        sock.close()

    def stopped() -> bool:
        return threads(library.pid) <= idle and not library.status()["dupes_progress"]

    wait_until(stopped, STOPPED_WITHIN, 0.05, lambda: (
        f"{busy}: {threads(library.pid)} threads (idle: {idle}), listings "
        f"{library.status()['dupes_progress']}"))
    print(f"\n{busy}: while running {held[0]} threads, {held[1]} store.db descriptors, RSS "
          f"{held[2]:.0f} MB; back to {idle} threads {time.monotonic() - started:.2f} s after "
          f"the hang-up ({store_handles(library)} store.db descriptors)")


def test_the_hang_up_check_sees_a_closed_client_and_nothing_else():
    server, client = socket.socketpair()
    gone = hung_up(server)
    assert not gone()
    pipelined = request("search", paths=["/a.jpg"])
    send_message(client, pipelined)
    client.shutdown(socket.SHUT_WR)  # a half-close: it still waits for the answer
    assert not gone()
    client.close()
    assert gone()
    # The check read nothing: the pipelined request is still there to be read.
    assert select.select([server], [], [], 0)[0]
    assert server.recv(1 << 16) == encode_message(pipelined)
    server.close()
    assert gone()


def test_abandoned_searches_by_content_stop_and_their_threads_end(library):
    idle = idle_threads(library)
    handles = store_handles(library)
    # Each client: SEARCHES photos outside the index, every one a model call.
    queries = sorted(str(p) for p in library.names.iterdir())
    clients = [send_and_keep(library, "search", paths=queries, k=3) for _ in range(CLIENTS)]
    # Running: every client's thread has opened its store connection.
    wait_until(lambda: store_handles(library) >= handles + CLIENTS and
               threads(library.pid) >= idle + CLIENTS, 30, 0.05, "the searches never started")
    hang_up_and_wait(library, clients, idle, f"{CLIENTS} x {SEARCHES} searches by content")
    # A new client is served, rightly.
    assert top_paths(library.search(library.photos / "Storm.jpg", k=3)) == \
        {str(library.photos / "twin-Storm.jpg")}
    assert top_paths(library.search(library.outside / "china.jpg", k=3)) == \
        {str(library.photos / "china.jpg"), str(library.photos / "twin-china.jpg")}


def test_abandoned_listings_and_pixel_checks_stop(library):
    idle = idle_threads(library)
    query = str(library.outside / "butterfly.jpg")
    names = sorted(str(p) for p in library.names.iterdir())
    clients = [send_and_keep(library, "dupes", paths=[str(library.edits)])
               for _ in range(CLIENTS // 2)]
    clients += [send_and_keep(library, "same_picture", query=query, paths=names)
                for _ in range(CLIENTS // 2)]

    def all_running() -> bool:
        listings = library.status()["dupes_progress"]
        return len(listings) == CLIENTS // 2 and all(p["total"] for p in listings)

    wait_until(all_running, 60, 0.05, "the listings never started their pixel checks")
    hang_up_and_wait(library, clients, idle,
                     f"{CLIENTS // 2} dupes listings + {CLIENTS // 2} same_picture checks")
    # A new client is served, rightly: the listing finds the copies as near duplicates.
    groups = library.call("dupes", paths=[str(library.edits)])["groups"]
    assert len(groups) == len(EDITED), groups
    assert all(len(g["files"]) == COPIES and g["tier"] == "near" for g in groups), groups
