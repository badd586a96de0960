"""`findsimilar dupes apply PLAN`: acts on exactly what a reviewed plan lists, re-checking
every file against the plan when it acts; `--paths`/`-0`; `--action reflink` where the
filesystem cannot. No daemon and no model: apply needs neither. Real files in tmp_path,
the real command line (click's runner), plans written as `dupes --json` writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from findsimilar.cli.actions.planfile import record_disk_facts
from findsimilar.cli.main import cli
from findsimilar.errors import EXIT_USAGE
from tests.conftest import own_home

OLD_NS = 1_600_000_000_123_456_789
NEWER_NS = OLD_NS + 86_400 * 10**9


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return own_home(tmp_path, monkeypatch, findsimilar=True)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def photo(path: Path, data: bytes, mtime_ns: int = OLD_NS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def member(path: Path, match: str) -> dict:
    st = path.stat()
    return {"path": str(path), "hash": hashlib.blake2b(path.read_bytes(), digest_size=16)
            .hexdigest(), "size": st.st_size, "mtime": st.st_mtime, "width": 8, "height": 8,
            "format": "JPEG", "match": match, "protected": False}


def group(tier: str, keep: Path, *others: Path) -> dict:
    members = [member(keep, "keep"), *(member(p, tier) for p in others)]
    return {"tier": tier, "keep": str(keep), "files": [m["path"] for m in members],
            "score": 1.0, "members": members}


def write_plan(path: Path, groups: list[dict], **extra: object) -> Path:
    """The plan as `dupes --json` prints it: the listing, each member's disk facts added."""
    record_disk_facts(groups)
    path.write_text(json.dumps({"groups": groups, "stats": {}, **extra}))
    return path


@pytest.fixture
def library(home: Path) -> dict[str, Path]:
    """Three exact pairs (the older file of each is the keeper) and one near pair."""
    pics = home / "Pictures"
    files = {}
    for name in ("a", "b", "c"):
        data = f"photo {name} ".encode() * 300
        files[f"{name}_keep"] = photo(pics / name / "keep.jpg", data)
        files[f"{name}_copy"] = photo(pics / name / "copy.jpg", data, NEWER_NS)
    files["n_keep"] = photo(pics / "n" / "big.jpg", b"big picture " * 500)
    files["n_copy"] = photo(pics / "n" / "small.jpg", b"small picture " * 100, NEWER_NS)
    return files


def listing(lib: dict[str, Path]) -> list[dict]:
    return [group("exact", lib[f"{n}_keep"], lib[f"{n}_copy"]) for n in "abc"] + [
        group("near", lib["n_keep"], lib["n_copy"])]


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(root.rglob("*")) if p.is_file()}


def trashed(home: Path) -> list[bytes]:
    return sorted(p.read_bytes() for p in (home / "data" / "Trash" / "files").glob("*"))


# -- acting on the plan as reviewed ------------------------------------------------------

def test_a_dry_run_by_default_then_only_the_groups_left_in_the_plan_are_acted_on(
        library: dict[str, Path], home: Path, tmp_path: Path) -> None:
    groups = listing(library)
    del groups[1]  # the user removed group b from the plan
    plan = write_plan(tmp_path / "plan.json", groups)
    before = snapshot(home / "Pictures")

    dry = run("dupes", "apply", str(plan), "--action", "trash")
    assert dry.exit_code == 0, dry.output
    assert snapshot(home / "Pictures") == before
    assert f"trash     {library['a_copy']}" in dry.stdout
    assert str(library["b_copy"]) not in dry.stdout
    assert "dry run: nothing was changed" in dry.stderr

    done = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    assert done.exit_code == 0, done.output
    assert "trash: 3 done, 0 skipped, 0 failed" in done.stderr
    gone = {library[k] for k in ("a_copy", "c_copy", "n_copy")}
    for name, path in library.items():
        assert path.exists() == (path not in gone), name
    assert library["b_copy"].exists()  # not in the plan: not touched


def test_the_review_page_is_the_plan_it_shows(library: dict[str, Path], home: Path,
                                             tmp_path: Path) -> None:
    """`dupes --html PAGE` then `dupes apply PAGE`: what the page showed, also a name that
    would end the page's data block early."""
    from findsimilar.cli.pages.report import write_report

    odd = library["a_copy"].parent / "odd<" / "script><!--copy.jpg"  # holds "</script>"
    odd.parent.mkdir()
    library["a_copy"].rename(odd)
    library["a_copy"] = odd
    groups = listing(library)
    del groups[1]  # the page shows groups a, c and n
    page = write_report({"groups": groups}, tmp_path / "review.html")
    done = run("dupes", "apply", str(page), "--action", "trash", "--apply")
    assert done.exit_code == 0, done.output
    assert "trash: 3 done, 0 skipped, 0 failed" in done.stderr
    assert not odd.exists() and library["b_copy"].exists()


def test_a_keeper_changed_by_hand_is_kept_and_the_old_keeper_is_acted_on(
        library: dict[str, Path], tmp_path: Path) -> None:
    groups = listing(library)[3:]  # the near group only
    near = groups[0]
    near["keep"] = str(library["n_copy"])
    near["files"] = [str(library["n_copy"]), str(library["n_keep"])]
    plan = write_plan(tmp_path / "plan.json", groups)

    done = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    assert done.exit_code == 0, done.output
    assert library["n_copy"].exists() and not library["n_keep"].exists()


def replace_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    st = path.stat()
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_every_file_changed_since_the_plan_is_skipped_with_the_reason(
        library: dict[str, Path], home: Path, tmp_path: Path) -> None:
    plan = write_plan(tmp_path / "plan.json", listing(library))
    # a: the copy's bytes replaced behind the same size and modified time.
    replace_keeping_size_and_mtime(library["a_copy"], b"X" * library["a_copy"].stat().st_size)
    # b: the keeper replaced by another file with the very same bytes and times.
    other = tmp_path / "other.jpg"
    shutil.copy2(library["b_keep"], other)
    os.replace(other, library["b_keep"])
    # c: the copy touched a microsecond later (a float listing could not tell).
    os.utime(library["c_copy"], ns=(NEWER_NS + 1000, NEWER_NS + 1000))
    before = snapshot(home / "Pictures")

    done = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    out = done.stdout
    assert f"skipped: {library['a_copy']}: bytes changed since listing" in out
    assert (f"skipped: {library['b_copy']}: keeper replaced by another file since listing "
            "(another inode); whole group skipped") in out
    assert (f"skipped: {library['c_copy']}: changed since listing (modified time differs)"
            in out)
    assert "trash: 1 done, 3 skipped, 0 failed" in done.stderr  # the near copy n only
    after = snapshot(home / "Pictures")
    assert after == {k: v for k, v in before.items() if k != str(library["n_copy"])}


def test_undo_reverses_an_apply_run(library: dict[str, Path], home: Path,
                                    tmp_path: Path) -> None:
    before = snapshot(home / "Pictures")
    plan = write_plan(tmp_path / "plan.json", listing(library))
    assert run("dupes", "apply", str(plan), "--action", "trash", "--apply").exit_code == 0
    assert len(trashed(home)) == 4

    undo = run("dupes", "undo")
    assert undo.exit_code == 0, undo.output
    assert "undid 4 of 4 steps" in undo.stdout
    assert {k: v[1:] for k, v in snapshot(home / "Pictures").items()} == {
        k: v[1:] for k, v in before.items()}


def test_the_action_the_plan_was_printed_with_is_the_default(
        library: dict[str, Path], tmp_path: Path) -> None:
    plain = write_plan(tmp_path / "plain.json", listing(library))
    no_action = run("dupes", "apply", str(plain))
    assert no_action.exit_code == EXIT_USAGE
    assert f"{plain} was not printed with an --action" in no_action.stderr

    dest = tmp_path / "aside"
    moving = write_plan(tmp_path / "move.json", listing(library),
                        actions={"applied": False, "action": "move", "move_to": str(dest),
                                 "keep_in": [], "plan": []})
    done = run("dupes", "apply", str(moving), "--apply")
    assert done.exit_code == 0, done.output
    assert "move: 4 done" in done.stderr
    assert not library["a_copy"].exists() and len(list(dest.rglob("*.jpg"))) == 4


# -- a file that is not a plan -----------------------------------------------------------

NOT_PLANS = {
    "not JSON": ('{"groups": [', "is not valid JSON"),
    "a list": ("[]", "is not a findsimilar plan"),
    "no groups": ('{"results": []}', "is not a findsimilar plan"),
    "an older review page": ("<!DOCTYPE html><html></html>",
                             "is a review page without a plan in it"),
}


@pytest.mark.parametrize("kind", NOT_PLANS)
def test_a_file_that_is_not_a_plan_is_an_error_naming_it(tmp_path: Path, kind: str) -> None:
    text, said = NOT_PLANS[kind]
    plan = tmp_path / "plan.json"
    plan.write_text(text)
    result = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith(f"findsimilar: error: {plan} {said}")
    assert "Traceback" not in result.output


def keep_elsewhere(g: dict) -> None:
    g["keep"] = "/somewhere/else.jpg"


def keep_not_first(g: dict) -> None:
    g["keep"] = g["files"][1]


def member_missing(g: dict) -> None:
    g["members"] = g["members"][:1]


def size_as_text(g: dict) -> None:
    g["members"][1]["size"] = "3 kB"


def members_not_a_list(g: dict) -> None:
    g["members"] = 7


@pytest.mark.parametrize(("edit", "said"), [
    (keep_elsewhere, "keeps '/somewhere/else.jpg', which is not one of its \"files\""),
    (keep_not_first, "but its \"files\" start with"),
    (member_missing, 'has no "members" entry'),
    (size_as_text, "that are not those `dupes --json` prints"),
    (members_not_a_list, 'has no "members"'),
])
def test_a_plan_edited_into_an_inconsistent_one_is_refused_and_nothing_is_done(
        library: dict[str, Path], home: Path, tmp_path: Path, edit, said: str) -> None:
    groups = listing(library)
    record_disk_facts(groups)
    edit(groups[2])
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"groups": groups}))
    before = snapshot(home / "Pictures")
    result = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    assert result.exit_code == EXIT_USAGE
    assert f"{plan}: group 3 " in result.stderr and said in result.stderr
    assert "nothing was done" in result.stderr
    assert snapshot(home / "Pictures") == before


def test_a_missing_plan_file_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    result = run("dupes", "apply", str(tmp_path / "nowhere.json"))
    assert result.exit_code == EXIT_USAGE
    assert "nowhere.json" in result.stderr


# -- paths for xargs ---------------------------------------------------------------------

def test_paths_and_print0_list_the_files_that_would_be_acted_on(
        library: dict[str, Path], home: Path, tmp_path: Path) -> None:
    odd = photo(home / "Pictures" / "n" / "new\nline é.jpg", library["n_keep"].read_bytes(),
                NEWER_NS)
    groups = listing(library)
    groups[3] = group("near", library["n_keep"], odd, library["n_copy"])
    plan = write_plan(tmp_path / "plan.json", groups)
    before = snapshot(home / "Pictures")

    lines = run("dupes", "apply", str(plan), "--paths", "--action", "trash")
    nul = run("dupes", "apply", str(plan), "-0", "--action", "trash")
    wanted = [str(library[k]) for k in ("a_copy", "b_copy", "c_copy")] + [
        str(odd), str(library["n_copy"])]
    assert nul.stdout_bytes == b"".join(os.fsencode(p) + b"\0" for p in wanted)
    assert lines.stdout_bytes == b"".join(os.fsencode(p) + b"\n" for p in wanted)
    # hardlink and reflink act on identical bytes only: the near copy is left out.
    linking = run("dupes", "apply", str(plan), "--paths", "--action", "reflink")
    assert linking.stdout_bytes == b"".join(os.fsencode(p) + b"\n" for p in wanted[:4])
    assert snapshot(home / "Pictures") == before
    assert run("dupes", "apply", str(plan), "--paths", "--apply",
               "--action", "trash").exit_code == EXIT_USAGE


# -- reflink -----------------------------------------------------------------------------

def test_reflink_refuses_a_near_duplicate_and_where_the_filesystem_cannot_nothing_is_lost(
        library: dict[str, Path], home: Path, tmp_path: Path) -> None:
    """tmp is ext4 here (no reflinks): each exact copy fails with the reason, and stays.
    tests/integration/test_dupes_apply.py covers XFS with reflink=1 and tmpfs."""
    fd = os.open(library["a_keep"], os.O_RDONLY)
    try:
        from findsimilar.cli.actions.safefs import clone_into

        if clone_into(fd, str(tmp_path / "probe")):
            pytest.skip("tmp is on a filesystem with reflinks")
    finally:
        os.close(fd)
    before = snapshot(home / "Pictures")
    plan = write_plan(tmp_path / "plan.json", listing(library))

    done = run("dupes", "apply", str(plan), "--action", "reflink", "--apply")
    assert done.exit_code == 1
    assert (f"skipped: {library['n_copy']}: reflink needs identical bytes: a near duplicate "
            "is another picture file") in done.stdout
    assert (f"failed: {library['a_copy']}: cannot reflink: this filesystem cannot make "
            "reflinks") in done.stdout
    assert "reflink: 0 done, 1 skipped, 3 failed" in done.stderr
    assert snapshot(home / "Pictures") == before
    assert not [p for p in (home / "Pictures").rglob(".findsimilar-*")]  # no temp file left


def test_every_hard_link_of_a_copy_is_acted_on(
        library: dict[str, Path], home: Path, tmp_path: Path) -> None:
    """A listing shows one path per inode (its other paths as `links`): trashing only that
    path would free nothing while its links kept the bytes."""
    link = library["a_copy"].with_name("copy-link.jpg")
    os.link(library["a_copy"], link)
    groups = listing(library)[:1]
    groups[0]["members"][1]["links"] = [str(link)]
    plan = write_plan(tmp_path / "plan.json", groups)
    done = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    assert done.exit_code == 0, done.output
    assert "trash: 2 done, 0 skipped, 0 failed" in done.stderr
    assert not library["a_copy"].exists() and not link.exists()
    assert library["a_keep"].exists()
