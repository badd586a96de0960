"""serving: the configured extractor answers only once its vectors are complete; until
then the one the store served keeps answering (a real store, the real registry)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from findsimilar.daemon.model.spec import model_spec
from findsimilar.daemon.serving import pending, served_spec
from findsimilar.daemon.storage.store import Store

LITE0 = model_spec("efficientnet-lite0-gem")
LITE2 = model_spec("efficientnet-lite2-gem")


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "store.db")
    s.upsert_files([{"path": f"/p/{h}.jpg", "size": 1, "mtime_ns": 1, "inode": i,
                     "content_hash": h, "status": "ok", "error": None}
                    for i, h in enumerate(["h1", "h2", "h3"])])
    s.add_features(LITE0.id, [(h, np.ones(8, np.float32)) for h in ["h1", "h2", "h3"]])
    s.set_setting("extractor", LITE0.id)
    yield s
    s.close()


def test_the_old_extractor_answers_while_the_new_ones_vectors_are_incomplete(store):
    store.add_features(LITE2.id, [("h1", np.ones(8, np.float32))])
    assert served_spec(store, LITE2) == LITE0
    assert pending(store, LITE0, LITE2) == {
        "from": LITE0.id, "to": LITE2.id, "state": "pending", "done": 1, "total": 3,
        "extracted": 0, "skipped": 0, "failures": 0, "error": None, "retry_in_s": None,
        "worker_pid": None}


def test_a_complete_extractor_answers_at_once(store):
    assert served_spec(store, LITE0) == LITE0  # (the one served)
    store.add_features(LITE2.id, [(h, np.ones(8, np.float32)) for h in ["h1", "h2", "h3"]])
    assert served_spec(store, LITE2) == LITE2  # an upgrade finished, or a downgrade


def test_a_new_store_serves_the_configured_extractor(tmp_path: Path):
    fresh = Store(tmp_path / "new.db")
    try:
        assert served_spec(fresh, LITE2) == LITE2
    finally:
        fresh.close()


def test_an_extractor_this_release_cannot_run_gives_way_at_once(store):
    store.set_setting("extractor", "efficientnet-lite0-gem/v0")  # an older version
    assert served_spec(store, LITE2) == LITE2
    store.set_setting("extractor", "no-such-model/v1")
    assert served_spec(store, LITE2) == LITE2


def test_a_store_of_the_first_release_migrates_and_upgrades_from_its_model(tmp_path: Path):
    import sqlite_utils
    from sqlite_utils import Migrations

    from findsimilar.daemon.storage import schema

    path = tmp_path / "old.db"
    first = Migrations("findsimilar")  # the first release's schema: its one migration
    first()(schema.m001_files_and_features)
    db = sqlite_utils.Database(path)
    first.apply(db)
    db["files"].insert_all([{"path": f"/p/{h}.jpg", "size": 1, "mtime_ns": 1, "inode": 1,
                             "content_hash": h, "status": "ok"} for h in ["h1", "h2"]])
    db["features"].insert_all([{"content_hash": h, "extractor": LITE0.id,
                                "vector": np.ones(8, np.float32).tobytes(), "created_at": 0.0}
                               for h in ["h1", "h2"]])
    db["settings"].insert({"key": "extractor", "value": LITE0.id})
    db.close()

    store = Store(path)  # every later migration runs
    try:
        assert store.file("/p/h1.jpg").ctime_ns is None  # (a column added since)
        assert served_spec(store, LITE2) == LITE0
        assert (pending(store, LITE0, LITE2)["done"], pending(store, LITE0, LITE2)["total"]) \
            == (0, 2)
    finally:
        store.close()
