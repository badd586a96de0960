"""Review, then apply exactly what was reviewed (issue 14, item 6), through one real daemon
shared by the module and the real CLI in its own process, on real photos: `dupes --json`
as a plan, edited by hand and applied with a file changed since; `--exclude`; the warning
for a PATH with nothing indexed; `--paths`/`-0`; `--action reflink` on a real XFS
(reflink=1) loop mount, and its refusal on tmpfs (both as root, skipped with the reason
elsewhere; the mounts are test_action_facts.py's fixtures).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import shared

from .daemon_harness import DaemonProcess, module_daemon
from .test_action_facts import (
    _cli_with,
    files_in,
    logs_now,
    new_log,
    own_env,
    pair,
    replace_keeping_size_and_mtime,
    state,
    tmpfs,  # noqa: F401  (a fixture)
    xfs_reflink,  # noqa: F401  (a fixture)
)

Cli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with module_daemon(tmp_path_factory.mktemp("dupes-apply")) as daemon:
        yield daemon


@pytest.fixture
def cli(daemon: DaemonProcess, tmp_path: Path) -> Cli:
    return _cli_with(own_env(daemon, tmp_path))


def library(lib: Path) -> dict[str, Path]:
    """Exact pairs x, y, z (small BMPs; the older file is kept) and a near pair n: a
    photo and its half-size JPEG copy (the photo is kept)."""
    p = {}
    for name, source in (("x", "skimage/chelsea.png"), ("y", "skimage/coffee.png"),
                         ("z", "skimage/astronaut.png")):
        p[f"{name}_keep"], p[f"{name}_copy"] = pair(lib / name, source)
    p["n_keep"] = lib / "n" / "fruits.jpg"
    p["n_keep"].parent.mkdir()
    shutil.copy2(shared("opencv/fruits.jpg"), p["n_keep"])
    p["n_copy"] = lib / "n" / "fruits-small.jpg"
    with Image.open(p["n_keep"]) as im:
        im.resize((im.width // 2, im.height // 2)).save(p["n_copy"], quality=90)
    return p


def group_of(groups: list[dict], path: Path) -> dict:
    (found,) = [g for g in groups if str(path) in g["files"]]
    return found


def test_a_reviewed_plan_is_applied_as_edited_skipping_what_changed_and_undo_is_true(
        daemon: DaemonProcess, cli: Cli, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    p = library(lib)
    cli("index", "-q", str(lib))
    listed = cli("dupes", str(lib), "--json", "--html", str(tmp_path / "review.html"))
    plan = json.loads(listed.stdout)
    assert sorted(g["tier"] for g in plan["groups"]) == ["exact", "exact", "exact", "near"]
    assert (tmp_path / "review.html").exists()
    member = group_of(plan["groups"], p["x_copy"])["members"][1]
    st = p["x_copy"].stat()
    assert member["stat"] == {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
                              "mtime_ns": st.st_mtime_ns}
    # The user's review: group z stays as it is, and the small copy is the one to keep.
    plan["groups"].remove(group_of(plan["groups"], p["z_copy"]))
    near = group_of(plan["groups"], p["n_copy"])
    near["keep"], near["files"] = str(p["n_copy"]), [str(p["n_copy"]), str(p["n_keep"])]
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    # Meanwhile, x's copy became another picture, keeping its size and date.
    unique = (lib / "x" / "keep.bmp").read_bytes()[:54] + bytes(st.st_size - 54)
    replace_keeping_size_and_mtime(p["x_copy"], unique)
    original = state(lib)
    before = logs_now(daemon)

    dry = cli("dupes", "apply", str(tmp_path / "plan.json"), "--action", "trash")
    assert state(lib) == original
    assert f"trash     {p['n_keep']}" in dry.stdout and str(p["z_copy"]) not in dry.stdout
    as_json = json.loads(cli("dupes", "apply", str(tmp_path / "plan.json"), "--action", "trash",
                             "--json").stdout)
    assert as_json["version"] == 1 and as_json["actions"]["applied"] is False
    assert state(lib) == original
    run = cli("dupes", "apply", str(tmp_path / "plan.json"), "--action", "trash", "--apply")

    assert f"skipped: {p['x_copy']}: bytes changed since listing" in run.stdout
    assert "trash: 2 done, 1 skipped, 0 failed" in run.stderr
    assert p["x_copy"].read_bytes() == unique
    assert not p["y_copy"].exists() and not p["n_keep"].exists()
    assert p["z_copy"].exists() and p["n_copy"].exists()
    undo = cli("dupes", "undo", str(new_log(daemon, before)))
    assert "undid 2 of 2 steps" in undo.stdout
    assert state(lib) == original


def test_exclude_paths_and_a_path_with_nothing_indexed(cli: Cli, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    p = library(lib)
    cli("index", "-q", str(lib))

    kept = cli("dupes", str(lib), "--exclude", "copy.bmp", "--exclude", "*/n/*", "--json")
    assert json.loads(kept.stdout)["groups"] == []  # a pair with one file excluded: no group
    only_x = json.loads(cli("dupes", str(lib), "--exclude", "[yz]", "--json").stdout)
    assert [g["files"] for g in only_x["groups"]] == [[str(p["x_keep"]), str(p["x_copy"])],
                                                      [str(p["n_keep"]), str(p["n_copy"])]]

    nul = cli("dupes", str(lib), "-0")
    assert nul.stdout == "".join(f"{p[k]}\0" for k in ("x_copy", "y_copy", "z_copy", "n_copy"))
    lines = cli("dupes", str(lib), "--paths", "--action", "hardlink")
    assert lines.stdout.splitlines() == [str(p[k]) for k in ("x_copy", "y_copy", "z_copy")]

    elsewhere = tmp_path / "not indexed"
    elsewhere.mkdir()
    (elsewhere / "a.txt").write_text("not a photo")
    run = cli("dupes", str(elsewhere), str(lib / "x"), str(elsewhere / "a.txt"))
    assert (f"findsimilar: warning: nothing is indexed under {elsewhere}: its duplicates "
            "cannot be listed") in run.stderr
    assert (f"findsimilar: warning: {elsewhere / 'a.txt'} is not an indexed photo"
            in run.stderr)
    assert str(lib / "x") not in run.stderr  # indexed: no warning
    assert f"KEEP {p['x_keep']}" in run.stdout


def test_reflink_on_xfs_clones_each_identical_copy_refuses_a_near_one_and_undo_is_true(
        daemon: DaemonProcess, cli: Cli, xfs_reflink: Path) -> None:  # noqa: F811
    lib = xfs_reflink / "lib"
    p = library(lib)
    p["x_copy"].chmod(0o600)
    original = state(lib)
    cli("index", "-q", str(lib))
    before = logs_now(daemon)

    run = cli("dupes", str(lib), "--action", "reflink", "--apply", check=False)
    for name in ("x", "y", "z"):
        copy = p[f"{name}_copy"]
        assert f"reflinked to its keeper (a separate file sharing its storage): {copy}" in (
            run.stdout)
        assert copy.stat().st_ino != p[f"{name}_keep"].stat().st_ino
        extents = subprocess.run(["filefrag", "-v", str(copy)], capture_output=True,
                                 text=True)
        assert "shared" in extents.stdout, extents.stdout
    assert (f"skipped: {p['n_copy']}: reflink needs identical bytes: a near duplicate is "
            "another picture file") in run.stdout
    assert "reflink: 3 done, 1 skipped, 0 failed" in run.stderr
    assert run.returncode == 0
    assert state(lib) == original and (p["x_copy"].stat().st_mode & 0o777) == 0o600

    undo = cli("dupes", "undo", str(new_log(daemon, before)))
    assert "undid 3 of 3 steps" in undo.stdout
    assert state(lib) == original


def test_reflink_where_the_filesystem_cannot_is_a_per_file_error_and_nothing_is_lost(
        cli: Cli, tmp_path: Path, tmpfs: Callable[..., Path]) -> None:  # noqa: F811
    lib = tmpfs(tmp_path / "tmpfs") / "lib"
    keep, copy = pair(lib, "skimage/chelsea.png")
    original = state(lib)
    cli("index", "-q", str(lib))
    plan = tmp_path / "plan.json"
    plan.write_text(cli("dupes", str(lib), "--json").stdout)

    run = cli("dupes", "apply", str(plan), "--action", "reflink", "--apply", check=False)
    assert run.returncode == 1
    assert f"failed: {copy}: cannot reflink: this filesystem cannot make reflinks" in (
        run.stdout)
    assert "reflink: 0 done, 0 skipped, 1 failed" in run.stderr
    assert state(lib) == original and files_in(lib) == [copy, keep]  # no temp file left
    assert os.stat(copy).st_ino != os.stat(keep).st_ino
    # Straight from a listing, the same: the failed step is the exit status too.
    run = cli("dupes", str(lib), "--action", "reflink", "--apply", check=False)
    assert run.returncode == 1 and "reflink: 0 done, 0 skipped, 1 failed" in run.stderr
    assert state(lib) == original
