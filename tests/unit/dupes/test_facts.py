"""daemon/dupes/facts.py: the facts keepers are chosen on, on real files decoded by the
real model (its decode threads: no network is loaded for facts), in a real store.

The pixel digest of a lossy file costs a full decode, so the digests that tell a
conversion from its original are computed one at a time, the likeliest original first,
and no more once it is found."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageEnhance, ImageFilter

from findsimilar.config import Config
from findsimilar.daemon.dupes.facts import complete_facts
from findsimilar.daemon.dupes.grouping import FileRow
from findsimilar.daemon.dupes.keep import DEFAULT_KEEP, choose_keeper
from findsimilar.daemon.model.api import Picture
from findsimilar.daemon.model.decode import decode_for_model
from findsimilar.daemon.model.local import LocalModel
from findsimilar.daemon.model.spec import model_spec
from findsimilar.daemon.storage.store import Store

from ...conftest import shared

MAX_PIXELS = Config(data_dir=Path("/nonexistent")).max_pixels


class Counted:
    """The real model, counting the facts it is asked for (with a digest or not)."""

    def __init__(self, model: LocalModel) -> None:
        self.model = model
        self.digests: list[str] = []

    def facts(self, picture: Picture, *, digest: bool = False, **kw: Any) -> Future:
        if digest:
            self.digests.append(Path(picture.paths[0]).name)
        return self.model.facts(picture, digest=digest, **kw)


@pytest.fixture
def model(tmp_path: Path) -> Iterator[Counted]:
    config = Config(data_dir=tmp_path / "data")
    local = LocalModel(model_spec(config.extractor), model_threads=1, decode_workers=2,
                       batch_size=1, max_pixels=config.max_pixels)
    yield Counted(local)
    assert not local.status()["running"], "facts alone must not load the network"
    local.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "store.db")
    yield store
    store.close()


def indexed(path: Path) -> FileRow:
    """``path`` as the indexer records it: its picture facts from the model's decode."""
    facts = decode_for_model(path, 224, max_pixels=MAX_PIXELS).facts.as_row()
    st = path.stat()
    return FileRow({**facts, "path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                    "inode": st.st_ino, "facts_known": 1,
                    "content_hash": hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()})


def edits(tmp_path: Path, source: str, original_suffix: str) -> dict[str, Path]:
    """The original, its brightened and blurred JPEG copies (same size), and a PNG."""
    picture = Image.open(shared(source)).convert("RGB").resize((320, 240))
    made = {"original": tmp_path / f"original{original_suffix}",
            "bright": tmp_path / "bright.jpg", "blurred": tmp_path / "blurred.jpg"}
    picture.save(made["original"], quality=90)
    ImageEnhance.Brightness(picture).enhance(1.3).save(made["bright"], quality=90)
    picture.filter(ImageFilter.GaussianBlur(2)).save(made["blurred"], quality=90)
    return made


def test_a_conversion_is_told_from_its_original_with_one_digest(
        tmp_path: Path, model: Counted, store: Store) -> None:
    files = edits(tmp_path, "opencv/fruits.jpg", ".jpg")
    # The PNG holds exactly the JPEG's decoded pixels: a conversion of it.
    files["png"] = tmp_path / "converted.png"
    Image.open(files["original"]).save(files["png"])
    group = [indexed(p) for p in files.values()]
    assert not complete_facts(store, model, [group])  # type: ignore[arg-type]
    assert model.digests == ["original.jpg"]  # not the brightened or blurred copy
    # (The brightened copy, the largest file, may win after: no fact marks it an edit.)
    keep, why = choose_keeper(group, DEFAULT_KEEP)
    assert Path(keep["path"]).name != "converted.png"
    assert "converted.png holds the same pixels converted" in why


def test_a_lossless_original_is_no_conversion_once_every_candidate_is_decoded(
        tmp_path: Path, model: Counted, store: Store) -> None:
    files = edits(tmp_path, "skimage/coffee.png", ".png")
    group = [indexed(p) for p in files.values()]
    assert not complete_facts(store, model, [group])  # type: ignore[arg-type]
    assert sorted(model.digests) == ["blurred.jpg", "bright.jpg"]  # all, one at a time
    keep, why = choose_keeper(group, DEFAULT_KEEP)
    assert Path(keep["path"]).name == "original.png" and "converted" not in why
    # Kept in the store: a second listing decodes nothing.
    again = [FileRow({**vars_of(f), **(store.picture_facts([f.content_hash]).get(
        f.content_hash) or {})}) for f in [indexed(p) for p in files.values()]]
    model.digests.clear()
    complete_facts(store, model, [again])  # type: ignore[arg-type]
    assert model.digests == []


def vars_of(f: FileRow) -> dict[str, Any]:
    return {name: getattr(f, name) for name in FileRow.__slots__}
