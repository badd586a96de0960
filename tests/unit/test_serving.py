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
        "extracted": 0, "skipped": 0, "failures": 0, "error": None, "retry_in_s": None}


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
