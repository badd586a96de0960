"""index: the FAISS cache finds neighbours by cosine, saves atomically and heals from the store."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import faiss
import numpy as np
import pytest

from findsimilar.daemon.storage.index import VectorIndex
from findsimilar.daemon.storage.index_build import IndexRepair, open_index
from findsimilar.daemon.storage.store import Store

DIM = 1280
LITE0 = "efficientnet-lite0"


# -- helpers -------------------------------------------------------------------

def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def index_of(ids: list[int], vectors: np.ndarray, dim: int = DIM) -> VectorIndex:
    index = VectorIndex(dim)
    index.add(np.asarray(ids, np.int64), vectors)
    return index


def nearest(index: VectorIndex, query: np.ndarray, k: int = 1) -> list[int]:
    _, ids = index.search(query[None], k)
    return ids[0].tolist()


def add_photos(store: Store, names: list[str], seed: int = 0) -> list[int]:
    """Files with their own content and vectors, as an indexing pass would leave them."""
    vectors = unit_vectors(len(names), seed=seed)
    with store.transaction():
        ids = store.add_features(LITE0, list(zip(names, vectors, strict=True)))
        store.upsert_files({"path": f"/photos/{name}.jpg", "size": 1, "mtime_ns": 1,
                            "content_hash": name, "status": "ok"} for name in names)
    return ids


def in_step(index: VectorIndex, store: Store) -> bool:
    return np.array_equal(np.sort(index.ids()), store.indexed_feature_ids(LITE0))


def finds_every_stored_vector_under_its_id(index: VectorIndex, store: Store) -> bool:
    wanted = store.indexed_feature_ids(LITE0)
    for ids, vectors in store.iter_vectors(wanted, DIM):
        scores, found = index.search(vectors, 1)
        if found[:, 0].tolist() != ids.tolist() or not np.allclose(scores[:, 0], 1, atol=1e-5):
            return False
    return True


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "store.db")
    yield opened
    opened.close()


# -- searching -------------------------------------------------------------------

def test_a_vector_finds_itself_first_with_a_cosine_score_of_one():
    vectors = unit_vectors(50)
    index = index_of(list(range(100, 150)), vectors)

    scores, ids = index.search(vectors[[7, 31]], 3)

    assert ids[:, 0].tolist() == [107, 131]
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_scores_are_the_cosine_similarities_best_first():
    vectors = unit_vectors(20, 64)
    index = index_of(list(range(20)), vectors, dim=64)

    scores, ids = index.search(vectors[0], 5)

    expected = vectors @ vectors[0]
    assert ids[0].tolist() == np.argsort(-expected)[:5].tolist()
    assert np.allclose(scores[0], expected[ids[0]], atol=1e-5)
    assert list(scores[0]) == sorted(scores[0], reverse=True)


def test_re_adding_an_id_replaces_its_vector_and_never_duplicates_it():
    old, new = unit_vectors(2)
    index = index_of([1, 2], unit_vectors(2, seed=9))

    index.add(np.asarray([1]), old[None])
    index.add(np.asarray([1]), new[None])

    assert len(index) == 2
    assert sorted(index.ids().tolist()) == [1, 2]
    assert nearest(index, new) == [1]
    scores, _ = index.search(old, 2)
    assert scores.max() < 0.5  # the old vector is gone: nothing matches it any more


def test_removed_ids_are_no_longer_found_and_unknown_ids_are_ignored():
    vectors = unit_vectors(5)
    index = index_of([10, 11, 12, 13, 14], vectors)

    assert index.remove(np.asarray([11, 13, 999])) == 2

    assert sorted(index.ids().tolist()) == [10, 12, 14]
    assert 11 not in nearest(index, vectors[1], k=5)
    assert index.remove(np.asarray([], np.int64)) == 0


def test_asking_for_more_neighbours_than_exist_returns_all_of_them():
    index = index_of([1, 2, 3], unit_vectors(3))

    scores, ids = index.search(unit_vectors(1, seed=5), 100)

    assert sorted(ids[0].tolist()) == [1, 2, 3]
    assert np.all(np.isfinite(scores))


def test_searching_an_empty_index_finds_nothing():
    _, ids = VectorIndex(DIM).search(unit_vectors(2), 10)

    assert (ids == -1).all()
    assert len(VectorIndex(DIM)) == 0


def test_only_changes_mark_the_index_as_needing_a_save():
    index = VectorIndex(8)
    index.add(np.asarray([], np.int64), np.zeros((0, 8), np.float32))
    index.remove(np.asarray([1]))
    assert not index.dirty

    index.add(np.asarray([1]), unit_vectors(1, 8))
    assert index.dirty


# -- saving and loading ---------------------------------------------------------------

def test_a_saved_index_loads_back_with_the_same_ids_and_vectors(tmp_path):
    vectors = unit_vectors(30)
    index = index_of(list(range(500, 530)), vectors)
    index.save(tmp_path / "index.faiss")

    loaded = VectorIndex.load(tmp_path / "index.faiss", DIM)

    assert not index.dirty and not loaded.dirty
    assert sorted(loaded.ids().tolist()) == list(range(500, 530))
    scores, ids = loaded.search(vectors, 1)
    assert ids[:, 0].tolist() == list(range(500, 530))
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)


def test_saving_replaces_the_file_by_rename_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "index" / "index.faiss"
    index_of([1], unit_vectors(1)).save(path)
    before = path.stat().st_ino

    with open(path, "rb") as reader:  # a reader of the old file keeps reading the old file
        old_bytes = path.read_bytes()
        index_of([1, 2, 3], unit_vectors(3)).save(path)
        assert reader.read() == old_bytes

    assert path.stat().st_ino != before
    assert len(VectorIndex.load(path, DIM)) == 3
    assert os.listdir(path.parent) == ["index.faiss"]


CRASHING_SAVE = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    import numpy as np
    from findsimilar.daemon.storage.index import VectorIndex

    index = VectorIndex(1280)
    index.add(np.arange(400), np.ones((400, 1280), np.float32))
    # The disk "fills up" 100 kB into the 2 MB write.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    try:
        index.save(Path(sys.argv[1]))
    except RuntimeError as exc:
        print(exc)
        sys.exit(3)
""")


def test_a_save_that_fails_halfway_leaves_the_previous_file_intact_and_no_temporary_files(
        tmp_path):
    path = tmp_path / "index.faiss"
    index_of([1, 2], unit_vectors(2)).save(path)
    previous = path.read_bytes()

    crash = subprocess.run([sys.executable, "-c", CRASHING_SAVE, str(path)],
                           capture_output=True, text=True, timeout=60)

    assert crash.returncode == 3, crash.stderr
    assert "write error" in crash.stdout
    assert path.read_bytes() == previous
    assert os.listdir(tmp_path) == ["index.faiss"]
    assert sorted(VectorIndex.load(path, DIM).ids().tolist()) == [1, 2]


def unusable_index_files(tmp_path: Path) -> dict[str, bytes]:
    index_of(list(range(20)), unit_vectors(20)).save(tmp_path / "good.faiss")
    good = (tmp_path / "good.faiss").read_bytes()
    index_of([1], unit_vectors(1, 64), dim=64).save(tmp_path / "small.faiss")
    faiss.write_index(faiss.IndexFlatIP(DIM), str(tmp_path / "no-ids.faiss"))
    return {"garbage": b"\x00\xffthis is not an index\n" * 100,
            "empty": b"",
            "truncated": good[:len(good) // 2],
            "one byte short": good[:-1],
            "wrong dimension": (tmp_path / "small.faiss").read_bytes(),
            "without ids": (tmp_path / "no-ids.faiss").read_bytes()}


@pytest.mark.parametrize("problem", ["garbage", "empty", "truncated", "one byte short",
                                     "wrong dimension", "without ids"])
def test_loading_an_unusable_file_raises_value_error(tmp_path, problem):
    path = tmp_path / "index.faiss"
    path.write_bytes(unusable_index_files(tmp_path)[problem])

    with pytest.raises(ValueError):
        VectorIndex.load(path, DIM)


# -- opening against the store --------------------------------------------------------

def test_a_missing_index_file_is_rebuilt_from_the_store(tmp_path, store):
    add_photos(store, [f"h{i}" for i in range(25)])

    index, repair = open_index(tmp_path / "index.faiss", store, LITE0, DIM)

    assert repair.rebuilt and repair.added == 25 and repair.reason == "index file missing"
    assert in_step(index, store)
    assert finds_every_stored_vector_under_its_id(index, store)
    assert index.dirty  # so the engine writes the rebuilt file


@pytest.mark.parametrize("damage", [lambda good: b"garbage" * 50, lambda good: good[:200],
                                    lambda good: good[:-10]],
                         ids=["garbage", "truncated", "short by a few bytes"])
def test_a_damaged_index_file_is_rebuilt_from_the_store(tmp_path, store, damage):
    add_photos(store, [f"h{i}" for i in range(10)])
    path = tmp_path / "index.faiss"
    open_index(path, store, LITE0, DIM)[0].save(path)
    path.write_bytes(damage(path.read_bytes()))

    index, repair = open_index(path, store, LITE0, DIM)

    assert repair.rebuilt and repair.added == 10 and repair.reason.startswith("unreadable")
    assert in_step(index, store)
    assert finds_every_stored_vector_under_its_id(index, store)


def test_an_index_for_another_model_size_is_rebuilt(tmp_path, store):
    add_photos(store, ["h1", "h2"])
    index_of([1], unit_vectors(1, 64), dim=64).save(tmp_path / "index.faiss")

    index, repair = open_index(tmp_path / "index.faiss", store, LITE0, DIM)

    assert repair.rebuilt and repair.added == 2
    assert in_step(index, store)


def test_an_index_out_of_step_with_the_store_is_repaired_incrementally(tmp_path, store):
    first = add_photos(store, [f"old{i}" for i in range(20)], seed=1)
    path = tmp_path / "index.faiss"
    open_index(path, store, LITE0, DIM)[0].save(path)
    # While the daemon was down (or before it could save): 5 pictures arrived, 3 went away.
    add_photos(store, [f"new{i}" for i in range(5)], seed=2)
    store.delete_files(["/photos/old0.jpg", "/photos/old7.jpg", "/photos/old19.jpg"])

    index, repair = open_index(path, store, LITE0, DIM)

    assert repair == IndexRepair(rebuilt=False, added=5, removed=3,
                                 reason="out of step with the store")
    assert in_step(index, store)
    assert not {first[0], first[7], first[19]} & set(index.ids().tolist())
    assert finds_every_stored_vector_under_its_id(index, store)
    assert index.dirty


def test_an_index_with_duplicate_ids_is_rebuilt(tmp_path, store):
    ids = add_photos(store, ["h1", "h2"])
    doubled = VectorIndex(DIM)
    doubled.add(np.asarray([ids[0], ids[0], ids[1]]), unit_vectors(3), replace=False)
    doubled.save(tmp_path / "index.faiss")

    index, repair = open_index(tmp_path / "index.faiss", store, LITE0, DIM)

    assert repair.rebuilt and repair.reason == "duplicate ids"
    assert len(index) == 2 and in_step(index, store)
    assert finds_every_stored_vector_under_its_id(index, store)


def test_an_index_in_step_with_the_store_is_used_as_it_is(tmp_path, store):
    add_photos(store, [f"h{i}" for i in range(12)])
    path = tmp_path / "index.faiss"
    open_index(path, store, LITE0, DIM)[0].save(path)

    index, repair = open_index(path, store, LITE0, DIM)

    assert repair == IndexRepair()
    assert not index.dirty
    assert in_step(index, store)


def test_a_fresh_store_without_an_index_file_opens_an_empty_index_quietly(tmp_path, store):
    index, repair = open_index(tmp_path / "index.faiss", store, LITE0, DIM)

    assert repair == IndexRepair() and repair.reason == ""
    assert len(index) == 0
    assert not (tmp_path / "index.faiss").exists()


def test_vectors_of_another_extractor_never_enter_the_index(tmp_path, store):
    add_photos(store, ["h1", "h2"])
    store.add_features("efficientnet-lite2", [("h1", unit_vectors(1, seed=4)[0])])

    index, _ = open_index(tmp_path / "index.faiss", store, LITE0, DIM)

    assert sorted(index.ids().tolist()) == store.indexed_feature_ids(LITE0).tolist()
    assert len(index) == 2
