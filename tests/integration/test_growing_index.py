"""A real daemon moves its index to the compressed layout once the library passes
FINDSIMILAR_COMPRESS_ABOVE photos, keeps answering right, and keeps the layout across
restarts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from findsimilar.daemon.storage.index import VectorIndex

from ..conftest import DEFAULT_DIM
from .daemon_harness import (
    DaemonProcess,
    indexed_paths,
    make_photos,
    saved_index_ids,
    wait_until,
)

COUNT = 120
THRESHOLD = 60


@pytest.fixture
def daemon(make_daemon) -> DaemonProcess:
    return make_daemon(FINDSIMILAR_COMPRESS_ABOVE=str(THRESHOLD))


def layout(daemon: DaemonProcess) -> str:
    return daemon.status()["index"]["layout"]


def settled(daemon: DaemonProcess) -> dict | None:
    """The status once no index build runs or is due."""
    status = daemon.status()
    return None if status["index"]["pending"] else status


def test_a_library_past_the_threshold_is_served_from_a_compressed_index_that_survives_restarts(
        daemon, tmp_path):
    library = tmp_path / "library"
    photos = make_photos(library, COUNT, seed=3, size=(320, 240))
    outside = tmp_path / "queries"
    outside.mkdir()
    daemon.start()
    daemon.call("watch_add", path=str(library), excludes=[])

    wait_until(lambda: layout(daemon) == "compressed", 120, 0.1,
               message=lambda: str(daemon.status()["index"]))
    wait_until(lambda: len(indexed_paths(daemon.data_dir)) == COUNT, 120)
    daemon.barrier(tmp_path / "empty")

    # Every photo is found first by a byte-identical copy kept outside the library,
    # with its exact cosine score.
    for photo in photos[::10]:
        query = Path(shutil.copyfile(photo, outside / photo.name))
        [best, *_] = daemon.search(query, k=5)
        assert best["path"] == str(photo) and best["score"] > 0.999
    # Changes after the switch land in the compressed index.
    photos[0].unlink()
    [newcomer] = make_photos(tmp_path / "new", 1, seed=99, size=(320, 240), prefix="late")
    arrived = Path(shutil.copy(newcomer, library / newcomer.name))
    wait_until(lambda: str(arrived) in indexed_paths(daemon.data_dir)
               and str(photos[0]) not in indexed_paths(daemon.data_dir), 60)
    daemon.barrier(tmp_path / "empty")
    [best, *_] = daemon.search(newcomer, k=3)
    assert best["path"] == str(arrived)
    # Duplicates read their full vectors from the store when the index is compressed.
    twin = Path(shutil.copyfile(photos[5], library / "twin.jpg"))
    wait_until(lambda: str(twin) in indexed_paths(daemon.data_dir), 60)
    groups = daemon.call("dupes", paths=[str(library)])["groups"]
    assert [sorted(g["files"]) for g in groups] == [sorted([str(photos[5]), str(twin)])]
    twin.unlink()
    wait_until(lambda: str(twin) not in indexed_paths(daemon.data_dir), 60)
    daemon.barrier(tmp_path / "empty")
    status = wait_until(lambda: settled(daemon))
    # (small libraries are trained again as they double: 1 list at 61 photos, 2 at 78)
    assert status["vectors"] == COUNT and status["index"]["builds"] >= 1

    assert daemon.terminate() == 0
    have, wanted, integrity = saved_index_ids(daemon.data_dir)
    assert integrity == "ok" and have == wanted and len(have) == COUNT
    [index_file] = daemon.data_dir.glob("index-*.faiss")
    assert VectorIndex.load(index_file, DEFAULT_DIM).layout == "compressed"

    daemon.start()
    daemon.wait_idle(60)
    status = daemon.status()
    assert status["index"]["layout"] == "compressed" and status["index"]["builds"] == 0
    [best, *_] = daemon.search(newcomer, k=3)
    assert best["path"] == str(arrived)
