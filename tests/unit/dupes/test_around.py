"""The groups around arriving photos (daemon/dupes/around.py, for `dupes --follow`): a
real Engine with the real model in-process, real shared photos."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from findsimilar.config import Config
from findsimilar.daemon.dupes.grouping import DupesOptions
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.model.verify import VERIFIER_ID

from ...conftest import shared

BASE = "imagededup/base/ukbench00120.jpg"
OLD = ["imagededup/variants/ukbench00120_resize.jpg", "imagededup/variants/ukbench00120_hflip.jpg"]
NEW = "imagededup/variants/ukbench00120_gray.jpg"


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Path]]:
    root = tmp_path_factory.mktemp("around")
    lib = root / "lib"
    lib.mkdir()
    for rel in [BASE, *OLD, "skimage/coffee.png"]:
        shutil.copy(shared(rel), lib / Path(rel).name)
    with Engine(Config(data_dir=root / "data"), in_process=True) as engine:
        engine.index_paths([str(lib)])
        yield engine, lib


def cached_pairs(engine: Engine, hashes: list[str]) -> set[tuple[str, str]]:
    pairs = [(a, b) for a in hashes for b in hashes if a < b]
    return set(engine.store.pair_scores(pairs, VERIFIER_ID))


def test_an_arriving_copy_is_grouped_with_checks_of_its_own_pairs_only(library) -> None:
    engine, lib = library
    old = [str(lib / Path(rel).name) for rel in [BASE, *OLD]]
    hashes = {p: engine.store.file(p).content_hash for p in old}
    assert not cached_pairs(engine, list(hashes.values()))  # nothing checked yet

    new = lib / Path(NEW).name
    shutil.copy(shared(NEW), new)
    engine.index_paths([str(new)])
    groups = engine.groups_around([str(new)])
    [group] = [g for g in groups if g["tier"] == "near"]
    assert str(new) in group["files"] and str(lib / "coffee.png") not in group["files"]
    new_hash = engine.store.file(str(new)).content_hash
    checked = cached_pairs(engine, [new_hash, *hashes.values()])
    assert checked and all(new_hash in pair for pair in checked)  # none among the old ones
    assert groups == engine.groups_around([str(new)])  # the same, from the cache

    # A full listing checks the old pairs too, and sees the group at least as whole.
    full = engine.duplicates(DupesOptions(paths=[str(lib)]))
    [whole] = [g for g in full["groups"] if str(new) in g["files"]]
    assert set(group["files"]) <= set(whole["files"])
    assert any(new_hash not in pair for pair in cached_pairs(engine, [new_hash, *hashes.values()]))


def test_nothing_indexed_there_is_no_group(library) -> None:
    engine, lib = library
    assert engine.groups_around([str(lib / "no-such.jpg")]) == []
    assert [g["tier"] for g in engine.groups_around([str(lib / "coffee.png")])] == []


def test_a_copy_under_a_name_that_is_not_utf8_is_grouped_by_its_exact_name(library) -> None:
    """Any name a filesystem allows is indexed and grouped as itself (was: refused at
    indexing, and UnicodeEncodeError from the store's query before that)."""
    engine, lib = library
    odd = os.fsdecode(bytes(lib) + b"/caf\xe9.png")
    shutil.copy(lib / "coffee.png", odd)
    engine.index_paths([odd])
    [group] = engine.groups_around([odd])
    assert (group["tier"], sorted(group["files"])) == ("exact", sorted([str(lib / "coffee.png"),
                                                                         odd]))
    listed = engine.duplicates(DupesOptions(paths=[str(lib)]))["groups"]
    assert [g["tier"] for g in listed if odd in g["files"]] == ["exact"]
    os.unlink(odd)
