"""store: the SQLite source of truth keeps files, shared vectors and settings; loses nothing."""

from __future__ import annotations

import sqlite3
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from findsimilar.daemon.storage.store import Store, migrations
from findsimilar.errors import StoreError

LITE0 = "efficientnet-lite0"
LITE2 = "efficientnet-lite2"


# -- helpers -------------------------------------------------------------------

def unit_vectors(n: int, dim: int = 1280, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def ok(path: str, content_hash: str, size: int = 100, mtime_ns: int = 1) -> dict[str, object]:
    return {"path": path, "size": size, "mtime_ns": mtime_ns, "inode": 1,
            "content_hash": content_hash, "status": "ok", "error": None}


def failed(path: str, error: str, content_hash: str | None = None) -> dict[str, object]:
    return {"path": path, "size": 100, "mtime_ns": 1, "inode": 1,
            "content_hash": content_hash, "status": "failed", "error": error}


def paths_under(store: Store, root: str) -> set[str]:
    return {record.path for record in store.files_under(root)}


@pytest.fixture
def store(tmp_path):
    opened = Store(tmp_path / "store.db")
    yield opened
    opened.close()


# -- opening ---------------------------------------------------------------------

def test_a_new_store_records_each_migration_once_and_reopening_changes_nothing(tmp_path):
    Store(tmp_path / "store.db").close()
    reopened = Store(tmp_path / "store.db")

    applied = list(reopened.db.query("select migration_set, name from _sqlite_migrations"))
    assert applied == [{"migration_set": "findsimilar", "name": "m001_files_and_features"},
                       {"migration_set": "findsimilar", "name": "m002_watched_roots"},
                       {"migration_set": "findsimilar", "name": "m003_no_status_index"},
                       {"migration_set": "findsimilar", "name": "m004_duplicates"},
                       {"migration_set": "findsimilar", "name": "m005_content_size"},
                       {"migration_set": "findsimilar", "name": "m006_change_facts"},
                       {"migration_set": "findsimilar", "name": "m007_picture_facts"}]
    assert migrations.pending(reopened.db) == []
    assert {"files", "features", "settings", "roots"} <= set(reopened.db.table_names())
    reopened.close()


def test_reopening_a_store_keeps_what_was_written(tmp_path):
    first = Store(tmp_path / "store.db")
    first.upsert_files([ok("/photos/a.jpg", "h1")])
    first.close()

    second = Store(tmp_path / "store.db")
    assert second.file("/photos/a.jpg") is not None
    second.close()


def test_the_store_uses_write_ahead_logging_so_readers_never_wait(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_the_folder_for_the_store_is_created_when_missing(tmp_path):
    Store(tmp_path / "not" / "yet" / "there" / "store.db").close()

    assert (tmp_path / "not" / "yet" / "there" / "store.db").is_file()


def damaged_store_files(tmp_path: Path) -> dict[str, bytes]:
    healthy = Store(tmp_path / "healthy.db")
    healthy.upsert_files(ok(f"/photos/{i:05}.jpg", f"h{i}") for i in range(3000))
    healthy.close()
    whole = (tmp_path / "healthy.db").read_bytes()
    return {"garbage": b"\x8fnot a database at all\x00" * 500,
            "truncated": whole[:len(whole) // 2],
            "only the header": whole[:100]}


@pytest.mark.parametrize("damage", ["garbage", "truncated", "only the header"])
def test_a_damaged_store_says_what_to_do_and_keeps_the_damaged_file(tmp_path, damage):
    broken = damaged_store_files(tmp_path)[damage]
    path = tmp_path / "data" / "store.db"
    path.parent.mkdir()
    path.write_bytes(broken)

    with pytest.raises(StoreError) as raised:
        Store(path)

    message = str(raised.value)
    assert str(path) in message
    assert "is damaged" in message and "left as it is" in message
    assert "move the damaged files aside" in message and ".dump" in message
    assert "findsimilar index" in message
    assert path.read_bytes() == broken  # the user's data is never deleted or rewritten
    assert raised.value.exit_code == 6


# -- files -----------------------------------------------------------------------

def test_an_unknown_path_has_no_record(store):
    assert store.file("/photos/never-seen.jpg") is None


def test_files_under_a_folder_are_the_folder_and_everything_below_it(store):
    store.upsert_files([ok("/a/b", "h0"), ok("/a/b/x.jpg", "h1"), ok("/a/b/deep/er/y.jpg", "h2")])

    assert paths_under(store, "/a/b") == {"/a/b", "/a/b/x.jpg", "/a/b/deep/er/y.jpg"}


def test_files_under_a_folder_leave_out_siblings_whose_names_merely_start_the_same(store):
    store.upsert_files([ok(p, "h") for p in (
        "/a/b/x.jpg", "/a/bc", "/a/bc/x.jpg", "/a/b0", "/a/b0/x.jpg", "/a/b.jpg", "/a/b-old/x.jpg",
        "/a/b x.jpg", "/a/a.jpg", "/a/c.jpg")])

    assert paths_under(store, "/a/b") == {"/a/b/x.jpg"}


def test_a_folder_given_with_a_trailing_slash_means_the_same_folder(store):
    store.upsert_files([ok("/a/b", "h0"), ok("/a/b/x.jpg", "h1"), ok("/a/bc/x.jpg", "h2"),
                        ok("/a/b0", "h3")])

    assert paths_under(store, "/a/b/") == paths_under(store, "/a/b") == {"/a/b", "/a/b/x.jpg"}


def test_files_under_the_filesystem_root_are_every_file(store):
    store.upsert_files([ok("/a.jpg", "h0"), ok("/a/b/x.jpg", "h1"), ok("/z/y.jpg", "h2")])

    assert paths_under(store, "/") == {"/a.jpg", "/a/b/x.jpg", "/z/y.jpg"}


def test_upserting_a_path_again_replaces_its_row_instead_of_adding_one(store):
    store.upsert_files([failed("/photos/a.jpg", "cannot read: truncated JPEG")])
    store.upsert_files([ok("/photos/a.jpg", "h-new", size=2048, mtime_ns=99)])

    record = store.file("/photos/a.jpg")
    assert record is not None
    assert (record.status, record.content_hash, record.error) == ("ok", "h-new", None)
    assert (record.size, record.mtime_ns) == (2048, 99)
    assert store.counts()["files"] == 1


def test_paths_with_spaces_and_unicode_are_kept_exactly(store):
    odd = ["/home/zoë/Photos/Été 2024/café ☕.jpg",
           "/home/zoë/Photos/Été 2024/日本 旅行/富士山.HEIC",
           "/home/zoë/Photos/Été 2024/  leading and trailing  .png",
           "/home/zoë/Photos/😀/smile.jpg"]
    store.upsert_files([ok(path, f"h{i}") for i, path in enumerate(odd)])
    ids = store.add_features(LITE0, [(f"h{i}", v) for i, v in enumerate(unit_vectors(4, 8))])

    assert paths_under(store, "/home/zoë/Photos/Été 2024") == set(odd[:3])
    assert paths_under(store, "/home/zoë/Photos") == set(odd)
    assert store.file(odd[1]) is not None
    assert store.paths_for_features(ids) == {
        fid: [path] for fid, path in zip(ids, odd, strict=True)}


def test_a_name_spelt_in_composed_and_decomposed_unicode_is_two_different_files(store):
    composed = unicodedata.normalize("NFC", "/photos/café.jpg")
    decomposed = unicodedata.normalize("NFD", "/photos/café.jpg")
    store.upsert_files([ok(composed, "h1"), ok(decomposed, "h2")])

    assert store.file(composed).content_hash == "h1"  # type: ignore[union-attr]
    assert store.file(decomposed).content_hash == "h2"  # type: ignore[union-attr]


# -- deleting files ------------------------------------------------------------------

def test_deleting_the_last_file_with_some_content_reports_its_hash(store):
    store.upsert_files([ok("/photos/a.jpg", "h1"), ok("/photos/b.jpg", "h2")])

    assert store.delete_files(["/photos/a.jpg"]) == {"h1"}
    assert store.file("/photos/a.jpg") is None
    assert store.file("/photos/b.jpg") is not None


def test_deleting_one_copy_of_shared_content_does_not_report_its_hash(store):
    store.upsert_files([ok("/photos/a.jpg", "h1"), ok("/backup/a.jpg", "h1")])

    assert store.delete_files(["/photos/a.jpg"]) == set()
    assert store.delete_files(["/backup/a.jpg"]) == {"h1"}


def test_a_failed_file_with_the_same_hash_does_not_keep_the_content_in_use(store):
    store.upsert_files([ok("/photos/a.jpg", "h1"), failed("/photos/a-copy.jpg", "oops", "h1")])

    assert store.delete_files(["/photos/a.jpg"]) == {"h1"}
    assert store.file("/photos/a-copy.jpg") is not None


def test_deleting_paths_the_store_never_had_reports_nothing(store):
    store.upsert_files([ok("/photos/a.jpg", "h1")])

    assert store.delete_files(["/photos/nope.jpg", "/elsewhere/b.jpg"]) == set()
    assert store.delete_files([]) == set()
    assert store.counts()["files"] == 1


def test_deleting_thousands_of_files_at_once_reports_every_orphaned_hash(store):
    store.upsert_files([ok(f"/photos/{i:04}.jpg", f"h{i}") for i in range(1200)])
    store.upsert_files([ok("/keep/0007.jpg", "h7")])

    orphans = store.delete_files(f"/photos/{i:04}.jpg" for i in range(1200))

    assert orphans == {f"h{i}" for i in range(1200)} - {"h7"}
    assert store.counts()["files"] == 1


# -- features --------------------------------------------------------------------

def test_identical_content_shares_one_vector_which_a_second_add_updates(store):
    first, second = unit_vectors(2, seed=1)
    store.upsert_files([ok("/photos/a.jpg", "h1"), ok("/copy/a.jpg", "h1")])

    (id_before,) = store.add_features(LITE0, [("h1", first)])
    (id_after,) = store.add_features(LITE0, [("h1", second)])

    assert id_before == id_after
    assert np.array_equal(store.vector(id_after), second)
    assert store.db["features"].count == 1
    assert store.paths_for_features([id_after]) == {id_after: ["/copy/a.jpg", "/photos/a.jpg"]}


def test_two_extractors_keep_two_vectors_for_the_same_content(store):
    small, large = unit_vectors(1, seed=1)[0], unit_vectors(1, seed=2)[0]

    (small_id,) = store.add_features(LITE0, [("h1", small)])
    (large_id,) = store.add_features(LITE2, [("h1", large)])

    assert small_id != large_id
    assert store.feature_ids(["h1"], LITE0) == {"h1": small_id}
    assert store.feature_ids(["h1"], LITE2) == {"h1": large_id}
    assert np.array_equal(store.vector(large_id), large)


def test_half_vectors_take_two_bytes_a_value_and_read_back_at_unit_length(store):
    # gem512 (ModelSpec.half): 1 KB a 512-d vector, 3 to a SQLite page.
    half, full = unit_vectors(3, 512, seed=5), unit_vectors(2, 512, seed=6)
    half_ids = store.add_features("gem512/v2", [(f"h{i}", v) for i, v in enumerate(half)],
                                  half=True)
    full_ids = store.add_features("other/v1", [(f"f{i}", v) for i, v in enumerate(full)])
    sizes = {r[0] for r in store.db.execute("select length(vector) from features "
                                            "where extractor = 'gem512/v2'")}
    assert sizes == {1024}
    back = store.vectors(np.asarray(half_ids), 512)
    assert back.dtype == np.float32 and np.allclose(np.linalg.norm(back, axis=1), 1, atol=1e-6)
    # A vector searched against itself still scores 1.0 as printed (6 decimals).
    assert np.round(np.einsum("ij,ij->i", back, half), 6).tolist() == [1.0, 1.0, 1.0]
    assert np.round(np.einsum("ij,ij->i", back, back), 6).tolist() == [1.0, 1.0, 1.0]
    assert np.array_equal(store.vector(half_ids[1], 512), back[1])
    # A block holding both kinds (one id list over two extractors) reads each right.
    both = store.vectors(np.asarray([full_ids[0], half_ids[0], full_ids[1]]), 512)
    assert np.array_equal(both, np.stack([full[0], back[0], full[1]]))
    with pytest.raises(ValueError, match="bytes is not 300-d"):
        store.vectors(np.asarray(half_ids[:1]), 300)


def test_feature_ids_are_returned_in_the_order_given_and_looked_up_by_hash(store):
    vectors = unit_vectors(3, 16)
    ids = store.add_features(LITE0, [("h3", vectors[0]), ("h1", vectors[1]), ("h2", vectors[2])])

    assert store.feature_ids(["h1", "h2", "h3", "unknown"], LITE0) == {
        "h3": ids[0], "h1": ids[1], "h2": ids[2]}
    assert store.vector(max(ids) + 1) is None


def test_vectors_added_outside_a_transaction_survive_reopening(tmp_path):
    vector = unit_vectors(1, 8)[0]
    store = Store(tmp_path / "store.db")
    (feature_id,) = store.add_features(LITE0, [("h1", vector)])
    store.set_setting("extractor", LITE0)
    store.close()

    reopened = Store(tmp_path / "store.db")
    assert np.array_equal(reopened.vector(feature_id), vector)
    assert reopened.get_setting("extractor") == LITE0
    reopened.close()


def test_committed_vectors_are_visible_to_a_read_only_reader_at_once(store):
    (feature_id,) = store.add_features(LITE0, [("h1", unit_vectors(1, 8)[0])])

    reader = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    row = reader.execute("select id from features where content_hash = 'h1'").fetchone()
    reader.close()

    assert row == (feature_id,)


def test_a_transaction_that_fails_leaves_nothing_behind(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.add_features(LITE0, [("h1", unit_vectors(1, 8)[0])])
        store.upsert_files([ok("/photos/a.jpg", "h1")])
        raise RuntimeError("the model crashed mid-batch")

    assert store.feature_ids(["h1"], LITE0) == {}
    assert store.file("/photos/a.jpg") is None


def test_a_new_extractor_needs_one_extraction_per_distinct_ok_content(store):
    store.upsert_files([ok("/p/a.jpg", "h1"), ok("/p/a-copy.jpg", "h1"), ok("/p/b.jpg", "h2"),
                        failed("/p/broken.jpg", "not a picture", "h3")])
    store.add_features(LITE0, list(zip(["h1", "h2"], unit_vectors(2, 8), strict=True)))

    assert store.hashes_needing_features(LITE0) == []
    assert sorted(store.hashes_needing_features(LITE2)) == ["h1", "h2"]

    store.add_features(LITE2, [("h1", unit_vectors(1, 8)[0])])
    assert store.hashes_needing_features(LITE2) == ["h2"]


def test_only_vectors_of_content_an_ok_file_uses_belong_in_the_index(store):
    store.upsert_files([ok("/p/a.jpg", "used"), failed("/p/bad.jpg", "oops", "failed-only")])
    vectors = unit_vectors(4, 8)
    used, failed_only, orphan = store.add_features(
        LITE0, [("used", vectors[0]), ("failed-only", vectors[1]), ("orphan", vectors[2])])
    store.add_features(LITE2, [("used", vectors[3])])

    indexed = store.indexed_feature_ids(LITE0)

    assert indexed.dtype == np.int64
    assert indexed.tolist() == [used]
    assert store.indexed_feature_ids("no-such-model").tolist() == []


def test_iter_vectors_returns_the_exact_float32_vectors_in_blocks(store):
    vectors = unit_vectors(10, 1280, seed=3)
    ids = store.add_features(LITE0, [(f"h{i}", v) for i, v in enumerate(vectors)])

    blocks = list(store.iter_vectors(np.asarray(ids, np.int64), 1280, chunk=4))

    assert [len(block_ids) for block_ids, _ in blocks] == [4, 4, 2]
    got_ids = np.concatenate([block_ids for block_ids, _ in blocks])
    got = np.concatenate([block for _, block in blocks])
    assert got_ids.tolist() == ids
    assert got.dtype == np.float32 and got.shape == (10, 1280)
    assert np.array_equal(got, vectors)  # bit for bit, not merely close


def test_iter_vectors_skips_ids_the_store_does_not_have(store):
    vectors = unit_vectors(2, 8)
    ids = store.add_features(LITE0, [("h1", vectors[0]), ("h2", vectors[1])])

    blocks = list(store.iter_vectors(np.asarray([ids[1], 999, ids[0]]), 8))
    assert list(store.iter_vectors(np.asarray([], np.int64), 8)) == []

    ((got_ids, got),) = blocks
    assert got_ids.tolist() == sorted(ids)
    assert np.array_equal(got[got_ids.tolist().index(ids[1])], vectors[1])


def test_paths_for_features_lists_every_ok_copy_in_path_order(store):
    store.upsert_files([ok("/p/b.jpg", "h1"), ok("/p/a.jpg", "h1"), ok("/p/c.jpg", "h2"),
                        failed("/p/d.jpg", "oops", "h2"), failed("/p/e.jpg", "oops", "h3")])
    vectors = unit_vectors(3, 8)
    one, two, three = store.add_features(
        LITE0, [("h1", vectors[0]), ("h2", vectors[1]), ("h3", vectors[2])])

    assert store.paths_for_features([one, two, three, 12345]) == {
        one: ["/p/a.jpg", "/p/b.jpg"], two: ["/p/c.jpg"]}
    assert store.paths_for_hash("h1") == ["/p/a.jpg", "/p/b.jpg"]
    assert store.paths_for_features([]) == {}


# -- counts, failures, settings ---------------------------------------------------------

def test_counts_of_an_empty_store_are_zero(store):
    assert store.counts() == {"files": 0, "indexed": 0, "failed": 0, "unique_images": 0}


def test_counts_tell_files_indexed_failed_and_unique_pictures_apart(store):
    store.upsert_files([ok("/p/a.jpg", "h1"), ok("/p/a-copy.jpg", "h1"), ok("/p/b.jpg", "h2"),
                        failed("/p/x.jpg", "oops", "h3"), failed("/p/y.jpg", "cannot open")])

    assert store.counts() == {"files": 5, "indexed": 3, "failed": 2, "unique_images": 2}


def test_failures_list_failed_files_and_their_reasons_in_path_order_up_to_a_limit(store):
    store.upsert_files([failed(f"/p/{name}.jpg", f"reason {name}") for name in "dbca"])
    store.upsert_files([ok("/p/fine.jpg", "h1")])

    assert store.failures() == [{"path": f"/p/{n}.jpg", "error": f"reason {n}"} for n in "abcd"]
    assert [f["path"] for f in store.failures(limit=2)] == ["/p/a.jpg", "/p/b.jpg"]


def test_settings_are_remembered_across_reopening_and_can_be_changed(tmp_path):
    store = Store(tmp_path / "store.db")
    assert store.get_setting("extractor") is None
    store.set_setting("extractor", LITE0)
    store.set_setting("extractor", LITE2)
    store.close()

    reopened = Store(tmp_path / "store.db")
    assert reopened.get_setting("extractor") == LITE2
    assert reopened.db["settings"].count == 1
    reopened.close()
