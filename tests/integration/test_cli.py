"""The command-line contract, end to end in-process: real model, SQLite and FAISS."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from findsimilar.errors import EXIT_EMPTY_INDEX, EXIT_MISSING_FILE, EXIT_UNREADABLE_IMAGE

from ..conftest import PHOTO_SET, CliFn, json_lines, shared
from ..photo_edits import apply_edit


def index_json(cli: CliFn, *paths: Path) -> dict:
    result = cli("index", "--json", *map(str, paths), ok=True)
    return json.loads(result.stdout)


def search_json(cli: CliFn, *args: str) -> list[dict]:
    result = cli("--json", *args, ok=True)
    return json_lines(result.stdout)


def add_bad_files(folder: Path) -> dict[str, Path]:
    bad = {
        "corrupt": folder / "corrupt.jpg",
        "truncated": folder / "truncated.jpg",
        "empty": folder / "empty.png",
        "text": folder / "notes.jpg",
    }
    shutil.copy(shared("imagededup/variants/ukbench09268_corrupt.jpg"), bad["corrupt"])
    data = shared("opencv/fruits.jpg").read_bytes()
    bad["truncated"].write_bytes(data[: len(data) // 3])
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("shopping list: milk, eggs\n")
    return bad


def test_index_reports_new_and_failed_files_with_reasons_and_exits_zero(cli, photo_dir):
    bad = add_bad_files(photo_dir)
    summary = index_json(cli, photo_dir)
    assert summary["new"] == len(PHOTO_SET)
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert set(reasons) == {p.name for p in bad.values()}
    assert "truncated" in reasons["truncated.jpg"]
    assert "empty" in reasons["empty.png"]
    assert "not a recognised image" in reasons["notes.jpg"]
    status = json.loads(cli("status", "--json", ok=True).stdout)
    assert status["indexed"] == len(PHOTO_SET) and status["failed"] == len(bad)


def test_human_summary_and_progress_do_not_break_on_plain_output(cli, photo_dir):
    result = cli("index", str(photo_dir), ok=True)
    assert f"{len(PHOTO_SET)} new" in result.stdout
    assert "0 failed" in result.stdout


def test_reindexing_skips_unchanged_files_without_the_model(cli, photo_dir):
    index_json(cli, photo_dir)
    again = index_json(cli, photo_dir)
    assert again["unchanged"] == len(PHOTO_SET)
    assert again["extracted"] == 0 and again["new"] == 0


def test_failed_files_are_retried_only_when_they_change(cli, photo_dir):
    bad = add_bad_files(photo_dir)
    index_json(cli, photo_dir)
    again = index_json(cli, photo_dir)
    assert again["failed"] == [] and again["still_failing"] == len(bad)
    shutil.copy(shared("opencv/fruits.jpg"), bad["truncated"])  # the user repairs one
    fixed = index_json(cli, photo_dir)
    assert fixed["failed"] == [] and fixed["changed"] == 1
    assert json.loads(cli("status", "--json").stdout)["failed"] == len(bad) - 1


def test_shorthand_search_finds_the_original_of_an_edited_copy(cli, photo_dir, tmp_path):
    index_json(cli, photo_dir)
    original = photo_dir / "butterfly.jpg"
    for edit in ("centre crop 75%", "mirror", "caption bar", "EXIF-rotated", "HEIC re-encode"):
        query = apply_edit(edit, original, tmp_path / f"query-{edit.split()[0]}")
        result = cli(str(query), ok=True)
        first_line = result.stdout.splitlines()[0]
        assert first_line.endswith(str(original)), (edit, result.stdout)


def test_json_output_is_one_object_per_query_with_absolute_paths(cli, photo_dir, monkeypatch):
    index_json(cli, photo_dir)
    monkeypatch.chdir(photo_dir)
    lines = search_json(cli, "-k", "3", "fruits.jpg", "Aqua.jpg")
    assert [line["query"] for line in lines] == [str(photo_dir / "fruits.jpg"),
                                                  str(photo_dir / "Aqua.jpg")]
    for line in lines:
        assert set(line) == {"version", "query", "results"} and line["version"] == 1
        assert len(line["results"]) == 3
        scores = [r["score"] for r in line["results"]]
        assert scores == sorted(scores, reverse=True)
        assert all(os.path.isabs(r["path"]) and -1 <= r["score"] <= 1.0001
                   for r in line["results"])


def test_indexed_query_is_not_its_own_match_but_an_identical_copy_is(cli, photo_dir):
    copy = photo_dir / "copy of coffee.png"
    shutil.copy(photo_dir / "coffee.png", copy)
    index_json(cli, photo_dir)
    (line,) = search_json(cli, str(photo_dir / "coffee.png"))
    paths = [r["path"] for r in line["results"]]
    assert str(photo_dir / "coffee.png") not in paths
    assert paths[0] == str(copy) and line["results"][0]["score"] > 0.9999


def test_top_and_min_score_limit_the_results(cli, photo_dir):
    index_json(cli, photo_dir)
    query = str(photo_dir / "Storm.jpg")
    (line,) = search_json(cli, "--top", "2", query)
    assert len(line["results"]) == 2
    (line,) = search_json(cli, "--min-score", "0.99", query)
    assert line["results"] == []
    (line,) = search_json(cli, query)
    assert len(line["results"]) == 10


def test_min_score_auto_is_the_floor_of_the_model_that_answers(cli, photo_dir):
    from findsimilar.config import load_config
    from findsimilar.daemon.model.spec import model_spec

    index_json(cli, photo_dir)
    query = str(photo_dir / "Storm.jpg")
    floor = model_spec(load_config().extractor).candidate_cosine
    (auto,) = search_json(cli, "--min-score", "AUTO", query)
    (given,) = search_json(cli, "--min-score", str(floor), query)
    (everything,) = search_json(cli, query)
    assert auto["results"] == given["results"]
    assert len(auto["results"]) < len(everything["results"])  # (unrelated photos are out)
    result = cli("--min-score", "most", query)
    assert result.exit_code == 2 and "'most' is not a number" in result.output


def test_null_separated_output_for_xargs(cli, photo_dir):
    index_json(cli, photo_dir)
    result = cli("-0", "-k", "4", str(photo_dir / "fruits.jpg"), ok=True)
    paths = result.stdout_bytes.split(b"\0")
    assert paths[-1] == b"" and len(paths) == 5
    assert all(Path(p.decode()).exists() for p in paths[:-1])


def test_query_outside_the_index_works_and_is_reported_as_given(cli, photo_dir, tmp_path):
    index_json(cli, photo_dir)
    outside = tmp_path / "outside.jpg"
    shutil.copy(shared("opencv/orange.jpg"), outside)
    (line,) = search_json(cli, str(outside))
    assert line["query"] == str(outside) and len(line["results"]) == 10


def test_missing_file_unreadable_image_and_empty_index_have_distinct_exit_codes(
        cli, photo_dir, tmp_path):
    query = str(photo_dir / "Aqua.jpg")
    empty = cli(query)
    assert empty.exit_code == EXIT_EMPTY_INDEX and "empty" in empty.stderr
    index_json(cli, photo_dir)
    missing = cli(str(tmp_path / "nope.jpg"))
    assert missing.exit_code == EXIT_MISSING_FILE and "no such file" in missing.stderr
    junk = tmp_path / "junk.jpg"
    junk.write_text("not a picture")
    unreadable = cli(str(junk))
    assert unreadable.exit_code == EXIT_UNREADABLE_IMAGE
    assert "not a recognised image format" in unreadable.stderr
    missing_folder = cli("index", str(tmp_path / "no-such-folder"))
    assert missing_folder.exit_code == EXIT_MISSING_FILE


def test_one_bad_query_does_not_hide_the_good_ones(cli, photo_dir, tmp_path):
    index_json(cli, photo_dir)
    result = cli("--json", str(tmp_path / "nope.jpg"), str(photo_dir / "Aqua.jpg"))
    assert result.exit_code == EXIT_MISSING_FILE
    assert len(json_lines(result.stdout)) == 1


def test_renamed_and_moved_files_are_relinked_without_the_model(cli, photo_dir):
    index_json(cli, photo_dir)
    (photo_dir / "fruits.jpg").rename(photo_dir / "renamed fruits.jpg")
    (photo_dir / "new folder").mkdir()
    (photo_dir / "Aqua.jpg").rename(photo_dir / "new folder" / "Aqua.jpg")
    summary = index_json(cli, photo_dir)
    assert summary["moved"] == 2 and summary["extracted"] == 0
    assert summary["new"] == 0 and summary["removed"] == 0
    (line,) = search_json(cli, "-k", "20", str(photo_dir / "LadyBird.jpg"))
    paths = {r["path"] for r in line["results"]}
    assert str(photo_dir / "renamed fruits.jpg") in paths
    assert str(photo_dir / "new folder" / "Aqua.jpg") in paths
    assert str(photo_dir / "fruits.jpg") not in paths


def test_deleted_photos_leave_the_index(cli, photo_dir):
    index_json(cli, photo_dir)
    (photo_dir / "Storm.jpg").unlink()
    summary = index_json(cli, photo_dir)
    assert summary["removed"] == 1
    status = json.loads(cli("status", "--json").stdout)
    assert status["indexed"] == len(PHOTO_SET) - 1 and status["vectors"] == len(PHOTO_SET) - 1
    (line,) = search_json(cli, "-k", "20", str(photo_dir / "Aqua.jpg"))
    assert all(not r["path"].endswith("Storm.jpg") for r in line["results"])


@pytest.mark.parametrize("damage", ["delete", "corrupt", "truncate"])
def test_index_file_is_rebuilt_from_the_store(local_cli, photo_dir, data_dir, damage):
    cli = local_cli
    index_json(cli, photo_dir)
    (before,) = search_json(cli, str(photo_dir / "fruits.jpg"))
    (index_file,) = data_dir.glob("index-*.faiss")
    if damage == "delete":
        index_file.unlink()
    elif damage == "corrupt":
        index_file.write_bytes(b"\x00garbage" * 100)
    else:
        index_file.write_bytes(index_file.read_bytes()[:1000])
    (after,) = search_json(cli, str(photo_dir / "fruits.jpg"))
    assert [r["path"] for r in after["results"]] == [r["path"] for r in before["results"]]
    status = json.loads(cli("status", "--json").stdout)
    assert status["vectors"] == status["unique_images"] == len(PHOTO_SET)


def test_changing_the_extractor_recomputes_features_in_a_separate_index(
        local_cli, photo_dir, data_dir, monkeypatch):
    cli = local_cli
    index_json(cli, photo_dir)
    monkeypatch.setenv("FINDSIMILAR_EXTRACTOR", "efficientnet-lite2-gem")
    summary = index_json(cli, photo_dir)
    assert summary["extracted"] == len(PHOTO_SET)
    status = json.loads(cli("status", "--json").stdout)
    assert status["model"] == "efficientnet-lite2-gem/v1" and status["vectors"] == len(PHOTO_SET)
    # (the old model's index file went at the swap; its vectors stay in the store)
    assert [p.name for p in data_dir.glob("index-*.faiss")] == [
        "index-efficientnet-lite2-gem_v1.faiss"]
    (line,) = search_json(cli, "-k", "1", str(photo_dir / "fruits.jpg"))
    assert line["results"]
    monkeypatch.delenv("FINDSIMILAR_EXTRACTOR")  # back to lite0: its vectors are still there
    assert index_json(cli, photo_dir)["extracted"] == 0


def test_mislabeled_and_odd_formats_are_indexed_by_content(cli, tmp_path):
    folder = tmp_path / "odd"
    shutil.copytree(shared("imagededup/formats"), folder)
    summary = index_json(cli, folder)
    assert summary["failed"] == []
    names = {"ukbench09380.svg", "ukbench09380.bmp", "baboon.pgm", "marbles.pbm",
             "copyleft.tiff", "giphy.gif", "alpha_channel_image.png"}
    status = json.loads(cli("status", "--json").stdout)
    assert status["indexed"] >= len(names)
    (line,) = search_json(cli, "-k", "3", str(folder / "ukbench09380.webp"))
    assert {Path(r["path"]).name for r in line["results"]} == {
        "ukbench09380.svg", "ukbench09380.bmp", "ukbench09380.png"}


def test_every_command_is_documented(cli):
    import click

    from findsimilar.cli.main import cli as app

    def walk(group: click.Group, prefix: tuple[str, ...]):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            yield (*prefix, name), command
            if isinstance(command, click.Group):
                yield from walk(command, (*prefix, name))

    commands = dict(walk(app, ()))
    assert {("index",), ("search",), ("status",), ("daemon", "run"), ("watch", "add"),
            ("service", "install"), ("dupes", "list"), ("dupes", "undo"),
            ("dupes", "ignore")} <= set(commands)
    for path, command in commands.items():
        assert command.help and "Example" in command.help, path
        assert cli(*path, "--help").exit_code == 0, path
    assert "findsimilar index" in cli("--help").stdout


def test_a_file_name_that_is_not_utf8_is_indexed_as_itself(cli, photo_dir):
    bad_name = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 name on a UTF-8 system
    shutil.copy(photo_dir / "fruits.jpg", photo_dir / bad_name)
    summary = index_json(cli, photo_dir)
    assert (summary["new"], summary["failed"]) == (len(PHOTO_SET) + 1, [])


def test_moved_files_keep_their_picture_details(local_cli, photo_dir, data_dir):
    cli = local_cli
    from findsimilar.daemon.storage.store import Store

    index_json(cli, photo_dir)
    (photo_dir / "fruits.jpg").rename(photo_dir / "fruits-moved.jpg")
    index_json(cli, photo_dir)
    store = Store(data_dir / "store.db")
    row = next(store.db.query("select format, width, height from files where path = ?",
                              [str(photo_dir / "fruits-moved.jpg")]))
    store.close()
    assert row == {"format": "JPEG", "width": 512, "height": 480}


def test_a_save_killed_half_way_leaves_no_temp_files_behind(local_cli, photo_dir, data_dir):
    cli = local_cli
    index_json(cli, photo_dir)
    (index_file,) = data_dir.glob("index-*.faiss")
    leftover = index_file.with_name(index_file.name + ".abc123.tmp")
    leftover.write_bytes(b"half a file")
    cli("status", ok=True)
    assert not leftover.exists()


def test_index_exclude_leaves_out_files_and_folders_and_what_was_indexed_under_them(
        cli, photo_dir):
    exports = photo_dir / "exports 2024"
    exports.mkdir()
    shutil.copy(photo_dir / "fruits.jpg", exports / "fruits-export.jpg")
    pngs = sorted(str(p) for p in photo_dir.rglob("*.png"))
    assert pngs  # the photo set has PNGs (chelsea, coffee)
    everything = json.loads(cli("index", "--json", str(photo_dir), ok=True).stdout)
    assert everything["new"] == len(PHOTO_SET) + 1

    left_out = json.loads(cli("index", "--json", "--exclude", "exports*", "--exclude", "*.png",
                              str(photo_dir), ok=True).stdout)
    assert left_out["removed"] == len(pngs) + 1 and left_out["new"] == 0
    status = json.loads(cli("status", "--json", ok=True).stdout)
    assert status["indexed"] == len(PHOTO_SET) - len(pngs)
    (line,) = search_json(cli, "-k", "50", str(photo_dir / "fruits.jpg"))
    found = {r["path"] for r in line["results"]}
    assert not found & {*pngs, str(exports / "fruits-export.jpg")}
