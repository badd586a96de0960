"""`dupes` and the score floors with the 512-d descriptor (efficientnet-lite0-gem512),
whose cosines sit lower than v1's: its own thresholds (daemon/model/spec.py) find the
groups v1 finds, and while a library is still served by v1 (an upgrade under way) v1's
thresholds apply. Real model, real files, in-process (`--no-daemon`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import CliFn, shared

from ..photo_edits import apply_edit, apply_seeded_edit

V1, GEM512 = "efficientnet-lite0-gem", "efficientnet-lite0-gem512"
# The edits whose cosines fall lowest (BENCHMARKS.md, "Duplicate thresholds per
# extractor"), on two photos, plus a byte copy, a same-scene pair and distractors.
ORIGINALS = ["opencv/fruits.jpg", "mate/LadyBird.jpg"]
EDITS = ["resize 30%", "JPEG quality 15", "centre crop 75%", "mirror", "caption bar",
         "letterbox border", "blur"]
# A copy gem512 scores between its candidate cosine and v1's (0.53; v1: 0.66), which the
# pixel check calls near (0.94): found only if gem512's own threshold applies.
HARD = ("mate/Storm.jpg", "JPEG quality 6")
OTHERS = ["opencv/basketball1.png", "opencv/basketball2.png", "skimage/coffee.png",
          "opencv/butterfly.jpg", "sklearn/china.jpg", "opencv/pic1.png", "opencv/pic3.png"]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("extractors") / "photos"
    for n, rel in enumerate(ORIGINALS):
        folder = root / f"pic{n}"
        folder.mkdir(parents=True)
        original = folder / Path(rel).name
        shutil.copy2(shared(rel), original)
        shutil.copy2(original, folder / f"copy of {original.name}")
        for edit in EDITS:
            apply_edit(edit, original, folder / edit.replace(" ", "_").replace("%", ""))
    folder = root / f"pic{len(ORIGINALS)}"
    folder.mkdir()
    shutil.copy2(shared(HARD[0]), folder / Path(HARD[0]).name)
    apply_seeded_edit(HARD[1], folder / Path(HARD[0]).name, folder / "jpeg_6", 0)
    (root / "other").mkdir()
    for rel in OTHERS:
        shutil.copy2(shared(rel), root / "other" / Path(rel).name)
    return root


def listing(cli: CliFn, monkeypatch: pytest.MonkeyPatch, data: Path, extractor: str,
            library: Path) -> set[tuple[str, frozenset[str]]]:
    monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(data))
    monkeypatch.setenv("FINDSIMILAR_EXTRACTOR", extractor)
    cli("index", "-q", str(library), ok=True)
    result = json.loads(cli("dupes", str(library), "--json", ok=True).stdout)
    return {(g["tier"], frozenset(Path(f).relative_to(library).as_posix() for f in g["files"]))
            for g in result["groups"]}


def test_gem512_finds_the_exact_and_near_groups_v1_finds(
        local_cli: CliFn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        library: Path) -> None:
    v1 = listing(local_cli, monkeypatch, tmp_path / "v1", V1, library)
    gem512 = listing(local_cli, monkeypatch, tmp_path / "gem512", GEM512, library)
    # Each photo with its byte copy and every edited copy: one near group each.
    expected = {("near", frozenset(p.relative_to(library).as_posix()
                                   for p in (library / f"pic{n}").iterdir()))
                for n in range(len(ORIGINALS) + 1)}
    assert v1 == expected
    assert gem512 == v1


def test_while_v1_still_answers_its_floor_applies_not_the_configured_models(
        local_cli: CliFn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        library: Path) -> None:
    from findsimilar.daemon.model.spec import model_spec

    monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FINDSIMILAR_EXTRACTOR", V1)
    local_cli("index", "-q", str(library), ok=True)
    monkeypatch.setenv("FINDSIMILAR_EXTRACTOR", GEM512)  # its vectors are not there yet
    v1, gem512 = model_spec(V1).candidate_cosine, model_spec(GEM512).candidate_cosine

    def results(*args: str) -> list[float]:
        out = local_cli("search", "--json", "-k", "40", *args, ok=True).stdout
        return [r["score"] for line in out.splitlines() for r in json.loads(line)["results"]]

    queries = sorted(str(p) for p in library.rglob("*") if p.is_file())
    everything = results(*queries)
    # v1 scores between the two floors: auto keeps them out only if v1's floor applies.
    assert any(gem512 <= s < v1 for s in everything)  # (pic1 ~ pic3: 0.53)
    assert results("--min-score", "auto", *queries) == [s for s in everything if s >= v1]
