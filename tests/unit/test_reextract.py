"""reextract: an upgrade's work gives each stored content the new model's vector, read
from a file that still holds it; a file changed or gone since it was indexed is left to
the indexer (the real store, the real Lite0 model on real photos)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from findsimilar.config import Config
from findsimilar.daemon.indexing.reextract import Reextractor
from findsimilar.daemon.model.local import LocalModel
from findsimilar.daemon.model.spec import model_spec
from findsimilar.daemon.storage.store import Store

from ..conftest import shared


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Store, Reextractor, dict[str, Path]]]:
    config = Config(data_dir=tmp_path / "data")
    store = Store(tmp_path / "store.db")
    model = LocalModel(model_spec(config.extractor), model_threads=1, decode_workers=1,
                       batch_size=4, max_pixels=config.max_pixels)
    files = {name: Path(shutil.copy(shared(rel), tmp_path / name)) for name, rel in
             [("kept.jpg", "opencv/fruits.jpg"), ("changed.jpg", "opencv/baboon.jpg"),
              ("gone.jpg", "mate/Aqua.jpg")]}
    store.upsert_files([{"path": str(p), "size": p.stat().st_size, "mtime_ns": 1, "inode": 1,
                         "content_hash": digest(p), "status": "ok", "error": None}
                        for p in files.values()])
    yield store, Reextractor(store, model, config), files
    model.close()
    store.close()


def digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def test_each_content_gets_the_new_vector_and_changed_or_gone_files_are_left_out(setup):
    store, work, files = setup
    hashes = {name: digest(p) for name, p in files.items()}
    shutil.copy(shared("skimage/coffee.png"), files["changed.jpg"])
    files["gone.jpg"].unlink()

    assert sorted(work.missing()) == sorted(hashes.values())
    done = work.run(list(hashes.values()))

    assert done.extracted == 1
    assert "changed since it was indexed" in done.skipped[hashes["changed.jpg"]]
    assert "cannot be read" in done.skipped[hashes["gone.jpg"]]
    assert set(work.missing()) == {hashes["changed.jpg"], hashes["gone.jpg"]}
    [fid] = store.feature_ids([hashes["kept.jpg"]], work.model.spec.id).values()
    vector = store.vector(fid, work.model.spec.dim)
    direct = work.model.embed(files["kept.jpg"].read_bytes(), "kept").result().vector
    # what indexing the file would store (float16 values with the default: ModelSpec.half)
    assert np.allclose(vector, direct, atol=1e-3) and float(vector @ direct) > 1 - 1e-6
