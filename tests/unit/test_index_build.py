"""index_build: past a size threshold the index is compressed in the background, and
nothing added or removed meanwhile is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from findsimilar.daemon.storage.index import COMPRESSED, EXACT, VectorIndex
from findsimilar.daemon.storage.index_build import (
    IndexBuilder,
    Plan,
    build_index,
    lists_for,
    open_index,
    plan_layout,
)
from findsimilar.daemon.storage.store import Store

DIM = 1280
LITE0 = "efficientnet-lite0"


def photo_like_vectors(n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors with the structure of real descriptors: a low-rank latent part
    (so PCA has something to keep) plus per-photo noise."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).standard_normal((48, DIM)).astype(np.float32)
    latent = rng.standard_normal((n, 48)).astype(np.float32)
    vectors = latent @ basis + 0.8 * rng.standard_normal((n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def add_photos(store: Store, names: list[str], vectors: np.ndarray) -> np.ndarray:
    with store.transaction():
        ids = store.add_features(LITE0, list(zip(names, vectors, strict=True)))
        store.upsert_files({"path": f"/photos/{name}.jpg", "size": 1, "mtime_ns": 1,
                            "content_hash": name, "status": "ok"} for name in names)
    return np.asarray(ids, np.int64)


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "store.db")
    yield opened
    opened.close()


@pytest.fixture
def library(store):
    """3,000 photos in the store and in a live exact index."""
    vectors = photo_like_vectors(3000)
    ids = add_photos(store, [f"p{i}" for i in range(3000)], vectors)
    index = VectorIndex(DIM, fetch=lambda rows: store.vectors(rows, DIM))
    index.add(ids, vectors)
    return index, ids, vectors


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(queries @ vectors.T), axis=1)[:, :k]]


def recall_at(k: int, found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


# -- which layout ------------------------------------------------------------------

def test_small_libraries_stay_exact_and_large_ones_are_compressed():
    assert plan_layout(50_000, EXACT, 0, compress_above=50_000) is None
    plan = plan_layout(50_001, EXACT, 0, compress_above=50_000)
    assert plan is not None and plan.layout == COMPRESSED and plan.lists == 1024


def test_a_compressed_index_is_trained_again_only_when_the_library_has_grown_about_fourfold():
    assert plan_layout(120_000, COMPRESSED, 1024, 50_000) is None
    plan = plan_layout(250_000, COMPRESSED, 1024, 50_000)
    assert plan is not None and plan.lists == 2048
    assert lists_for(1_000_000) == 4096


def test_a_library_that_shrinks_well_below_the_threshold_goes_back_to_exact_search():
    assert plan_layout(30_000, COMPRESSED, 1024, 50_000) is None  # no flapping at the edge
    assert plan_layout(24_000, COMPRESSED, 1024, 50_000).layout == EXACT
    assert plan_layout(500_000, COMPRESSED, 4096, 0).layout == EXACT  # compression turned off
    assert plan_layout(10**6, EXACT, 0, 0) is None


def test_every_list_gets_enough_training_points_in_tiny_libraries():
    assert lists_for(10) == 1
    assert lists_for(400) * 39 <= 400


# -- the compressed layout --------------------------------------------------------------

def test_compressed_search_finds_the_exact_top_ten_with_exact_cosine_scores(store, library):
    _, ids, vectors = library
    index = VectorIndex(DIM, build_index(Plan(COMPRESSED, 32, ""), ids, DIM,
                                         lambda rows: store.vectors(rows, DIM)),
                        fetch=lambda rows: store.vectors(rows, DIM))
    queries = photo_like_vectors(200, seed=5)

    scores, found = index.search(queries, 10)

    assert index.layout == COMPRESSED
    assert recall_at(10, found, exact_top(vectors, ids, queries, 10)) >= 0.95
    rows = {int(i): r for r, i in enumerate(ids)}
    expected = np.einsum("qd,qkd->qk", queries, vectors[[[rows[int(i)] for i in q]
                                                          for q in found]])
    assert np.allclose(scores, expected, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_compressed_layout_adds_replaces_and_removes_single_photos(store, library):
    _, ids, vectors = library
    fetch = lambda rows: store.vectors(rows, DIM)  # noqa: E731
    index = VectorIndex(DIM, build_index(Plan(COMPRESSED, 32, ""), ids, DIM, fetch), fetch)
    new = photo_like_vectors(2, seed=7)
    new_ids = add_photos(store, ["new0", "new1"], new)

    index.add(new_ids, new)
    index.add(new_ids[:1], new[:1])  # again: replaced, never twice
    index.remove(ids[:10])

    assert len(index) == 3000 - 10 + 2
    assert sorted(index.ids().tolist()) == sorted([*ids[10:].tolist(), *new_ids.tolist()])
    _, found = index.search(new, 1)
    assert found[:, 0].tolist() == new_ids.tolist()
    _, found = index.search(vectors[:10], 1)
    assert not set(found[:, 0].tolist()) & set(ids[:10].tolist())


def test_a_compressed_index_saves_and_loads_with_its_ids(tmp_path, store, library):
    _, ids, _ = library
    fetch = lambda rows: store.vectors(rows, DIM)  # noqa: E731
    VectorIndex(DIM, build_index(Plan(COMPRESSED, 32, ""), ids, DIM, fetch), fetch).save(
        tmp_path / "index.faiss")

    loaded = VectorIndex.load(tmp_path / "index.faiss", DIM, fetch)

    assert loaded.layout == COMPRESSED and loaded.lists == 32
    assert np.array_equal(np.sort(loaded.ids()), ids)
    assert np.allclose(loaded.vectors(ids[:3]), store.vectors(ids[:3], DIM))


def test_a_damaged_file_of_a_large_library_is_rebuilt_compressed_not_exact(tmp_path, store,
                                                                           library):
    (tmp_path / "index.faiss").write_bytes(b"not an index")

    index, repair = open_index(tmp_path / "index.faiss", store, LITE0, DIM,
                               lambda rows: store.vectors(rows, DIM), compress_above=1000)

    assert repair.rebuilt and index.layout == COMPRESSED
    assert np.array_equal(np.sort(index.ids()), store.indexed_feature_ids(LITE0))


# -- the background switch ------------------------------------------------------------------

class PausingBuilder(IndexBuilder):
    """The real builder, held at the start of its filling stage until released."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reached = threading.Event()
        self.release = threading.Event()

    def _progress(self, stage: str, done: int, total: int) -> None:
        super()._progress(stage, done, total)
        if stage == "filling" and done == 0:
            self.reached.set()
            assert self.release.wait(60)


def test_crossing_the_threshold_switches_to_the_compressed_index_in_the_background(
        tmp_path, store, library):
    index, ids, vectors = library
    saved = threading.Event()
    builder = IndexBuilder(index, store, compress_above=1000,
                           on_swapped=saved.set)

    plan = builder.maybe_start()

    assert plan is not None and plan.layout == COMPRESSED
    assert builder.wait(60) and saved.is_set()
    assert index.layout == COMPRESSED and builder.builds == 1
    assert np.array_equal(np.sort(index.ids()), ids)
    _, found = index.search(vectors[:20], 1)
    assert found[:, 0].tolist() == ids[:20].tolist()
    assert builder.maybe_start() is None  # nothing more to do


def test_additions_and_deletions_during_the_rebuild_are_all_in_the_new_index(
        tmp_path, store, library):
    index, ids, vectors = library
    builder = PausingBuilder(index, store, compress_above=1000)
    builder.maybe_start()
    assert builder.reached.wait(60)

    # While the new index is being filled: the old one still answers and still changes.
    _, found = index.search(vectors[:5], 1)
    assert found[:, 0].tolist() == ids[:5].tolist() and index.layout == EXACT
    new = photo_like_vectors(50, seed=11)
    new_ids = add_photos(store, [f"n{i}" for i in range(50)], new)
    index.add(new_ids, new)
    index.remove(ids[:100])
    index.remove(new_ids[:5])  # added and removed again during the build
    moved = photo_like_vectors(1, seed=12)
    index.add(ids[200:201], moved)  # a changed vector
    builder.release.set()
    assert builder.wait(60)

    assert index.layout == COMPRESSED
    expected = sorted([*ids[100:].tolist(), *new_ids[5:].tolist()])
    assert sorted(index.ids().tolist()) == expected
    _, found = index.search(new[5:], 1)
    assert found[:, 0].tolist() == new_ids[5:].tolist()
    _, found = index.search(vectors[:100], 3)
    assert not set(found.ravel().tolist()) & set(ids[:100].tolist())
    assert index.dirty


def test_a_cancelled_rebuild_keeps_the_live_index_as_it_was(tmp_path, store, library):
    index, ids, _ = library
    builder = PausingBuilder(index, store, compress_above=1000)
    builder.maybe_start()
    assert builder.reached.wait(60)
    index.remove(ids[:3])

    builder._stop.set()
    builder.release.set()
    assert builder.wait(60)

    assert index.layout == EXACT and not index.rebuilding
    assert sorted(index.ids().tolist()) == ids[3:].tolist()


KILLED_MID_BUILD = textwrap.dedent("""
    import sys, threading
    import numpy as np
    from findsimilar.daemon.storage.index import VectorIndex
    from findsimilar.daemon.storage.index_build import IndexBuilder, open_index
    from findsimilar.daemon.storage.store import Store

    data = sys.argv[1]
    store = Store(data + "/store.db")
    fetch = lambda rows: store.vectors(rows, 1280)
    index, _ = open_index(__import__("pathlib").Path(data + "/index.faiss"), store,
                          "efficientnet-lite0", 1280, fetch, 1000)
    held = threading.Event()

    class Held(IndexBuilder):
        def _progress(self, stage, done, total):
            if stage == "filling":
                print("mid-build", flush=True)
                held.wait()

    Held(index, store, 1000).maybe_start()
    held.wait()
""")


def test_a_daemon_killed_in_the_middle_of_a_rebuild_starts_from_its_saved_index_and_builds_again(
        tmp_path, store, library):
    index, ids, _ = library
    index.save(tmp_path / "index.faiss")
    before = (tmp_path / "index.faiss").read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MID_BUILD, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "mid-build"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    assert (tmp_path / "index.faiss").read_bytes() == before  # nothing half-written
    assert not list(tmp_path.glob("index.faiss.*.tmp"))
    fetch = lambda rows: store.vectors(rows, DIM)  # noqa: E731
    reopened, repair = open_index(tmp_path / "index.faiss", store, LITE0, DIM, fetch, 1000)
    assert not repair.reason and reopened.layout == EXACT
    builder = IndexBuilder(reopened, store, 1000,
                           on_swapped=lambda: reopened.save(tmp_path / "index.faiss"))
    builder.maybe_start()
    assert builder.wait(60)
    assert VectorIndex.load(tmp_path / "index.faiss", DIM).layout == COMPRESSED
    assert np.array_equal(np.sort(VectorIndex.load(tmp_path / "index.faiss", DIM).ids()), ids)


def test_the_exact_layout_answers_with_the_same_ids_as_a_brute_force_search(store, library):
    index, ids, vectors = library
    queries = photo_like_vectors(20, seed=3)
    _, found = index.search(queries, 10)
    assert index.layout == EXACT
    assert np.array_equal(found, exact_top(vectors, ids, queries, 10))
