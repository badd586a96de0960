"""`findsimilar dupes` on real photos: tiers, keepers, actions and undo, the ignore list.

Edited copies come from tests/photo_edits.py; same-scene pairs are GROUPS.json's, which a
duplicate finder must NOT call duplicates.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import CliFn, shared

from ..photo_edits import apply_edit, apply_seeded_edit

ORIGINALS = ["opencv/fruits.jpg", "mate/LadyBird.jpg"]
EDIT_NAMES = ["resize 30%", "JPEG quality 15", "centre crop 75%", "mirror", "caption bar",
              "EXIF-rotated", "greyscale", "letterbox border", "HEIC re-encode"]
def shared_groups_json() -> dict:
    return json.loads(shared("GROUPS.json").read_text())


DISTRACTORS = ["skimage/chelsea.png", "skimage/coffee.png", "opencv/butterfly.jpg",
               "opencv/building.jpg", "mate/Aqua.jpg", "sklearn/china.jpg"]


@pytest.fixture(scope="module")
def corpus_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """originals + 9 edits each + one exact copy each, GROUPS.json same-scene pairs,
    distractors. Built once; tests get their own copy."""
    root = tmp_path_factory.mktemp("dupes-corpus") / "photos"
    for n, rel in enumerate(ORIGINALS):
        folder = root / f"pic{n}"
        folder.mkdir(parents=True)
        original = folder / Path(rel).name
        shutil.copy2(shared(rel), original)
        shutil.copy2(original, root / f"copy of {original.name}")
        (folder / "edits").mkdir()
        for edit in EDIT_NAMES:
            apply_edit(edit, original, folder / "edits" / edit.replace(" ", "_").replace("%", ""))
    for a, b in shared_groups_json()["same_scene"]:
        for rel in (a, b):
            dest = root / "scenes" / rel.replace("/", "_")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(shared(rel), dest)
    for rel in DISTRACTORS:
        dest = root / "other" / Path(rel).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared(rel), dest)
    return root


@pytest.fixture
def corpus(corpus_source: Path, tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    shutil.copytree(corpus_source, root, copy_function=shutil.copy2)
    return root


@pytest.fixture
def trash_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data_home = tmp_path / "xdg-data"
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    return data_home / "Trash"


def _dupes(cli: CliFn, *args: str) -> dict:
    result = cli("dupes", *args, "--json", ok=True)
    return json.loads(result.stdout)


def _indexed(cli: CliFn, corpus: Path) -> None:
    cli("index", "-q", str(corpus), ok=True)


def _groups_by_tier(result: dict, tier: str) -> list[set[str]]:
    return [set(g["files"]) for g in result["groups"] if g["tier"] == tier]


# -- listing -----------------------------------------------------------------------------

def test_edited_copies_group_with_their_original_and_same_scene_shots_do_not(
        cli: CliFn, data_dir: Path, corpus: Path) -> None:
    _indexed(cli, corpus)
    result = _dupes(cli)
    assert {g["tier"] for g in result["groups"]} <= {"exact", "near"}
    for g in result["groups"]:
        assert set(g) >= {"tier", "keep", "files"}
        assert g["keep"] == g["files"][0]
    near = _groups_by_tier(result, "near")
    for n, rel in enumerate(ORIGINALS):
        folder = corpus / f"pic{n}"
        expected = {str(folder / Path(rel).name), str(corpus / f"copy of {Path(rel).name}"),
                    *(str(p) for p in (folder / "edits").iterdir())}
        found = [g for g in near if str(folder / Path(rel).name) in g]
        assert len(found) == 1, f"{rel}: not in exactly one near group: {near}"
        missed = expected - found[0]
        # Calibrated recall is ~98% (BENCHMARKS.md); on these two photos every edit is found.
        assert not missed, f"{rel}: edited copies not grouped: {missed}"
        assert found[0] <= expected, f"{rel}: strangers in its group: {found[0] - expected}"
    scene_files = {str(p) for p in (corpus / "scenes").iterdir()}
    for g in result["groups"]:
        assert len(g["files"]) < 2 or not set(g["files"]) & scene_files, (
            f"same-scene photos called duplicates: {g}")


def test_same_scene_pairs_show_in_the_similar_tier_only(local_cli: CliFn, data_dir: Path,
                                                          corpus: Path) -> None:
    _indexed(local_cli, corpus)
    similar = _dupes(local_cli, str(corpus / "scenes"), "--tier", "similar")
    assert similar["groups"] and {g["tier"] for g in similar["groups"]} == {"similar"}
    pairs = [(str(corpus / "scenes" / a.replace("/", "_")),
              str(corpus / "scenes" / b.replace("/", "_")))
             for a, b in shared_groups_json()["same_scene"]]
    together = [p for p in pairs if any(set(p) <= set(g["files"]) for g in similar["groups"])]
    assert len(together) >= len(pairs) // 2, similar["groups"]
    everything = _dupes(local_cli, "--all")
    assert {g["tier"] for g in everything["groups"]} == {"near", "similar"}


def test_exact_tier_is_identical_bytes_and_members_say_how_they_match(
        local_cli: CliFn, data_dir: Path, corpus: Path) -> None:
    _indexed(local_cli, corpus)
    exact = _dupes(local_cli, "--tier", "exact")["groups"]
    assert len(exact) == 2
    for g in exact:
        assert len({Path(p).read_bytes() for p in g["files"]}) == 1
    # The originals are the oldest files (copies of them keep their times).
    near = _dupes(local_cli, "--keep-by", "oldest,shortest-path")["groups"]
    for g in near:
        kinds = {m["path"]: m["match"] for m in g["members"]}
        assert Path(g["keep"]).name in {Path(o).name for o in ORIGINALS}
        assert kinds[g["keep"]] == "keep"
        assert kinds[str(Path(g["keep"]).parents[1] / f"copy of {Path(g['keep']).name}")] == (
            "exact")
        assert list(kinds.values()).count("near") == len(EDIT_NAMES)


def test_keeper_has_the_most_picture_not_the_most_border_and_keep_in_folders_win(
        local_cli: CliFn, data_dir: Path, corpus: Path) -> None:
    _indexed(local_cli, corpus)
    group = next(g for g in _dupes(local_cli)["groups"] if any("fruits" in p for p in g["files"]))
    # The letterboxed and captioned copies have the most pixels, but not the most
    # picture: bars are not picture. Among the rest, the largest file.
    assert not any(edit in group["keep"] for edit in ("letterbox", "caption"))
    unframed = [m for m in group["members"]
                if "letterbox" not in m["path"] and "caption" not in m["path"]]
    most = max(m["width"] * m["height"] for m in unframed)
    sharp = [m for m in unframed if m["width"] * m["height"] >= 0.9 * most]
    assert group["keep"] == min(sharp, key=lambda m: (-m["size"], m["path"]))["path"]
    ref = str(corpus / "pic0" / "edits")
    kept = next(g for g in _dupes(local_cli, "--keep-in", ref)["groups"]
                if any("fruits" in p for p in g["files"]))
    assert kept["keep"].startswith(ref + "/")
    assert {m["path"] for m in kept["members"] if m["protected"]} == {
        p for p in kept["files"] if p.startswith(ref + "/")}


def test_paths_limit_the_listing(local_cli: CliFn, data_dir: Path, corpus: Path) -> None:
    _indexed(local_cli, corpus)
    only = _dupes(local_cli, str(corpus / "pic1"))["groups"]
    assert len(only) == 1 and all(p.startswith(str(corpus / "pic1")) for p in only[0]["files"])


def test_table_output_marks_the_keeper(local_cli: CliFn, data_dir: Path, corpus: Path) -> None:
    _indexed(local_cli, corpus)
    out = local_cli("dupes", ok=True).stdout
    assert "near duplicates" in out and out.count("KEEP") == 2


# -- actions and undo --------------------------------------------------------------------

def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_trash_dry_run_changes_nothing_then_apply_and_undo(
        local_cli: CliFn, data_dir: Path, corpus: Path, trash_home: Path) -> None:
    _indexed(local_cli, corpus)
    before = _snapshot(corpus)
    listed = _dupes(local_cli)
    dry = local_cli("dupes", "--action", "trash", ok=True)
    assert "would move" in dry.stdout and _snapshot(corpus) == before
    plan = _dupes(local_cli, "--action", "trash")["actions"]
    assert plan["applied"] is False and _snapshot(corpus) == before
    assert {s["path"] for s in plan["plan"] if not s["skip"]} == (
        {p for g in listed["groups"] for p in g["files"]} - {g["keep"] for g in listed["groups"]})
    applied = _dupes(local_cli, "--action", "trash", "--apply")
    keepers = {g["keep"] for g in listed["groups"]}
    spare = {p for g in listed["groups"] for p in g["files"]} - keepers
    assert applied["actions"]["done"] == len(spare)
    assert all(os.path.exists(k) for k in keepers)
    assert not any(os.path.exists(p) for p in spare)
    assert len(list((trash_home / "files").iterdir())) == len(spare)
    assert len(list((trash_home / "info").glob("*.trashinfo"))) == len(spare)
    local_cli("dupes", "undo", ok=True)
    assert _snapshot(corpus) == before
    again = local_cli("dupes", "undo")
    assert "nothing" in again.output.lower() or "already" in again.output.lower()


def test_hardlink_replaces_only_identical_copies_and_undo_separates_them(
        local_cli: CliFn, data_dir: Path, corpus: Path) -> None:
    _indexed(local_cli, corpus)
    before = _snapshot(corpus)
    result = _dupes(local_cli, "--action", "hardlink", "--apply")
    assert result["actions"]["done"] == 2  # the two byte-identical copies, nothing else
    for n, rel in enumerate(ORIGINALS):
        original, copy = corpus / f"pic{n}" / Path(rel).name, corpus / f"copy of {Path(rel).name}"
        assert os.stat(original).st_ino == os.stat(copy).st_ino
    assert _snapshot(corpus) == before  # near copies were left alone: only bytes-equal linked
    local_cli("dupes", "undo", ok=True)
    for n, rel in enumerate(ORIGINALS):
        original, copy = corpus / f"pic{n}" / Path(rel).name, corpus / f"copy of {Path(rel).name}"
        assert os.stat(original).st_ino != os.stat(copy).st_ino
    assert _snapshot(corpus) == before


def test_move_keeps_the_keeper_and_reference_folder_and_undo_puts_files_back(
        local_cli: CliFn, data_dir: Path, corpus: Path, tmp_path: Path) -> None:
    _indexed(local_cli, corpus)
    before = _snapshot(corpus)
    ref = corpus / "pic1" / "edits"
    dest = tmp_path / "set aside"
    _dupes(local_cli, "--keep-in", str(ref), "--move-to", str(dest), "--apply")
    assert all(p.exists() for p in ref.iterdir())
    moved = [p for p in dest.rglob("*") if p.is_file()]
    assert moved and len(_snapshot(corpus)) == len(before) - len(moved)
    local_cli("dupes", "undo", ok=True)
    assert _snapshot(corpus) == before
    assert not [p for p in dest.rglob("*") if p.is_file()]


def test_similar_groups_are_never_acted_on(local_cli: CliFn, data_dir: Path, corpus: Path,
                                           trash_home: Path) -> None:
    _indexed(local_cli, corpus)
    scenes = _snapshot(corpus / "scenes")
    _dupes(local_cli, str(corpus / "scenes"), "--all", "--action", "trash", "--apply")
    assert _snapshot(corpus / "scenes") == scenes


def test_action_options_are_checked(local_cli: CliFn, data_dir: Path, corpus: Path) -> None:
    assert local_cli("dupes", "--apply").exit_code == 2
    assert local_cli("dupes", "--action", "move").exit_code == 2
    assert local_cli("dupes", str(corpus / "missing")).exit_code == 3


# -- not duplicates ----------------------------------------------------------------------

def test_ignored_pairs_are_never_shown_again_even_after_a_rename(
        local_cli: CliFn, data_dir: Path, corpus: Path) -> None:
    _indexed(local_cli, corpus)
    group = next(g for g in _dupes(local_cli)["groups"]
                 if any("LadyBird" in p for p in g["files"]))
    local_cli("dupes", "ignore", *group["files"], ok=True)
    assert not any("LadyBird" in p for g in _dupes(local_cli)["groups"] for p in g["files"])
    renamed = corpus / "pic1" / "renamed.jpg"
    os.rename(corpus / "pic1" / "LadyBird.jpg", renamed)
    _indexed(local_cli, corpus)
    assert not any("LadyBird" in p or p == str(renamed)
                   for g in _dupes(local_cli)["groups"] for p in g["files"])
    local_cli("dupes", "unignore", str(renamed), ok=True)
    back = next(g for g in _dupes(local_cli)["groups"]
                if any("LadyBird" in p for p in g["files"]))
    assert str(renamed) in back["files"]


def test_ignoring_one_file_accepts_its_identical_copies(local_cli: CliFn, data_dir: Path,
                                                        corpus: Path) -> None:
    _indexed(local_cli, corpus)
    copy = str(corpus / "copy of fruits.jpg")
    local_cli("dupes", "ignore", copy, ok=True)
    exact = _dupes(local_cli, "--tier", "exact")["groups"]
    assert not any(copy in g["files"] for g in exact) and len(exact) == 1


# -- verdicts are cached -----------------------------------------------------------------

def test_a_second_listing_reuses_every_verdict(local_cli: CliFn, data_dir: Path,
                                               corpus: Path) -> None:
    _indexed(local_cli, corpus)
    first = _dupes(local_cli, "--all")
    assert first["stats"]["verified_now"] > 0
    second = _dupes(local_cli, "--all")
    assert second["stats"]["verified_now"] == 0
    assert second["groups"] == first["groups"]


def test_html_report_is_written_with_thumbnails(local_cli: CliFn, data_dir: Path,
                                                corpus: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _indexed(local_cli, corpus)
    page = tmp_path / "review.html"
    result = _dupes(local_cli, "--all", "--html", str(page))
    text = page.read_text()
    assert "KEEP" in text and "similar" in text
    thumbs = list((tmp_path / "review_files").iterdir())
    members = sum(len(g["files"]) for g in result["groups"])
    assert len(thumbs) == members
    # A file of the user's in the thumbnail folder: refused with a message, not a trace.
    (tmp_path / "review_files" / "mine.txt").write_text("keep me")
    refused = local_cli("dupes", "--all", "--html", str(page))
    assert refused.exit_code == 1
    assert refused.stderr.startswith("findsimilar: error: cannot write the review page")
    assert "did not make" in refused.stderr and "Traceback" not in refused.output
    assert (tmp_path / "review_files" / "mine.txt").read_text() == "keep me"



# -- through the daemon ------------------------------------------------------------------

@pytest.fixture
def daemon_cli(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
               request: pytest.FixtureRequest) -> CliFn:
    from tests.conftest import _invoker, stop_daemon

    monkeypatch.delenv("FINDSIMILAR_NO_DAEMON", raising=False)
    request.addfinalizer(stop_daemon)
    return _invoker()


def test_the_daemon_answers_searches_while_a_dupes_listing_runs(
        daemon_cli: CliFn, data_dir: Path, corpus: Path) -> None:
    import threading

    from findsimilar.cli.client import DaemonClient
    from findsimilar.config import load_config

    _indexed(daemon_cli, corpus)
    config = load_config()
    listing: dict = {}

    def run_dupes() -> None:
        with DaemonClient(config) as client:
            listing.update(client.call("dupes", tiers=["exact", "near", "similar"]))

    worker = threading.Thread(target=run_dupes)
    worker.start()
    try:
        with DaemonClient(config, timeout=30) as client:
            for _ in range(600):  # wait until its pixel checks are under way
                if client.call("status")["dupes_progress"]:
                    break
                threading.Event().wait(0.01)
            else:
                pytest.fail("the dupes listing never showed progress")
            hits = client.call("search", paths=[str(corpus / "pic0" / "fruits.jpg")], k=3)
            still_running = bool(client.call("status")["dupes_progress"])
    finally:
        worker.join(timeout=120)
    assert hits[0]["results"], hits
    assert still_running, "the search was not answered while the listing ran"
    assert listing["stats"]["verified_now"] > 0
    assert {g["tier"] for g in listing["groups"]} == {"near", "similar"}


def test_a_small_copy_does_not_chain_two_burst_shots_together(
        local_cli: CliFn, data_dir: Path, tmp_path: Path) -> None:
    # Two frames of one scene with a little motion: a 30% copy of the second is too
    # small to show the motion, so it matches the first frame too.
    root = tmp_path / "burst"
    root.mkdir()
    first, second = (shutil.copy2(shared(f"opencv/rubberwhale{n}.png"), root / f"shot{n}.png")
                     for n in (1, 2))
    small = apply_edit("resize 30%", Path(second), root / "shot2-small")
    blurred = apply_edit("blur", Path(second), root / "shot2-blurred")
    _indexed(local_cli, root)
    groups = _dupes(local_cli, "--all")["groups"]
    near = [set(g["files"]) for g in groups if g["tier"] == "near"]
    assert {str(second), str(small), str(blurred)} in near or any(
        {str(second), str(blurred)} <= g for g in near), groups
    assert not any(str(first) in g and str(second) in g for g in near), groups
    assert any({str(first), str(second)} <= set(g["files"])
               for g in groups if g["tier"] == "similar"), groups


def test_same_picture_scores_a_query_against_results_inside_and_outside_the_index(
        daemon_cli: CliFn, data_dir: Path, corpus: Path, tmp_path: Path) -> None:
    from findsimilar.cli.client import DaemonClient
    from findsimilar.config import load_config

    _indexed(daemon_cli, corpus)
    outside = apply_edit("resize 30%", corpus / "pic0" / "fruits.jpg", tmp_path / "outside")
    with DaemonClient(load_config()) as client:
        reply = client.call("same_picture", query=str(corpus / "pic0" / "fruits.jpg"), paths=[
            str(corpus / "copy of fruits.jpg"), str(outside),
            str(corpus / "other" / "china.jpg"), str(tmp_path / "gone.jpg")])
    scores = list(reply["scores"].values())
    assert scores[0] == 1.0 and scores[1] >= reply["threshold"] > scores[2]
    assert scores[3] is None


def test_the_daemon_checks_new_candidates_when_idle_so_a_listing_is_instant(
        data_dir: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    import time

    from findsimilar.cli.client import DaemonClient
    from findsimilar.config import load_config
    from tests.conftest import _invoker, stop_daemon

    monkeypatch.delenv("FINDSIMILAR_NO_DAEMON", raising=False)
    monkeypatch.setenv("FINDSIMILAR_PRECHECK_AFTER", "0.5")
    request.addfinalizer(stop_daemon)
    _indexed(_invoker(), corpus)
    with DaemonClient(load_config(), timeout=30) as client:
        deadline = time.monotonic() + 120
        while not client.call("status")["duplicates_checked"]:
            assert time.monotonic() < deadline, "the background check never finished"
            time.sleep(0.2)
        listing = client.call("dupes", tiers=["exact", "near"])
    assert listing["stats"]["verified_now"] == 0
    assert any(str(corpus / "pic0" / "fruits.jpg") in g["files"] for g in listing["groups"])
    assert "duplicates: every candidate pair decided" in _invoker()("status", ok=True).stdout


def test_overlay_copies_and_a_deep_crop_join_their_original_and_a_moved_object_does_not(
        local_cli: CliFn, data_dir: Path, tmp_path: Path) -> None:
    # Issue 14: a caption band, a logo or a sticker over part of the picture and a
    # half-area off-centre crop are copies of it; the same picture with a part moved
    # (an arm between two shots) is another picture, however alike the rest is, and
    # stays out even beside copies that match both.
    original = shared("opencv/fruits.jpg")
    edits = {"copies": ("caption band 20%", "logo 20%", "sticker 20%", "crop 50% area"),
             "shots": ("caption band 20%", "crop 50% area", "moved object")}
    made: dict[str, set[str]] = {}
    for folder, names in edits.items():
        (tmp_path / folder).mkdir()
        made[folder] = {str(shutil.copy2(original, tmp_path / folder / "fruits.jpg")), *(
            str(apply_seeded_edit(name, original, tmp_path / folder / name.split()[0], seed=0))
            for name in names)}
    _indexed(local_cli, tmp_path)
    near = _groups_by_tier(_dupes(local_cli, str(tmp_path / "copies")), "near")
    assert near == [made["copies"]], near
    moved = str(tmp_path / "shots" / "moved.jpg")
    near = _groups_by_tier(_dupes(local_cli, str(tmp_path / "shots")), "near")
    assert near == [made["shots"] - {moved}], near
