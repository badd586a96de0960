"""daemon/dupes/scope.py: which indexed files a listing groups (--exclude) and which PATHs
hold nothing indexed. On plain rows, as the store's ok_files yields them."""

from __future__ import annotations

from collections.abc import Iterable

from findsimilar.daemon.dupes.scope import excluder, files_in_scope
from findsimilar.text import is_under

ROWS = [
    {"path": "/p/2024/beach.jpg", "content_hash": "a"},
    {"path": "/p/2024/beach.png", "content_hash": "a"},
    {"path": "/p/exports-web/beach.jpg", "content_hash": "a"},
    {"path": "/p/backup/2019/raw/dog.jpg", "content_hash": "b"},
    {"path": "/p/dog.jpg", "content_hash": "b"},
    {"path": "/p/broken.jpg", "content_hash": None},
    {"path": "/q/only-failed.jpg", "content_hash": None},
]


def ok_files(roots: list[str]) -> Iterable[dict]:
    return [r for r in ROWS if not roots or any(is_under(r["path"], x) for x in roots)]


def paths(rows: list[dict]) -> list[str]:
    return [r["path"] for r in rows]


def test_a_glob_matches_the_file_name_a_folder_name_or_the_whole_path() -> None:
    excluded = excluder(["*.png", "exports*", "*/2019/raw/*"])
    assert excluded is not None
    assert excluded("/p/2024/beach.png")  # the name
    assert excluded("/p/exports-web/beach.jpg")  # a folder's name, as watch add matches
    assert excluded("/p/backup/2019/raw/dog.jpg")  # the whole path; * crosses /
    assert not excluded("/p/2024/beach.jpg")
    assert not excluded("/p/my-exports/x.jpg")  # a name must match whole
    case = excluder(["Beach.jpg"])
    assert case is not None and not case("/p/2024/beach.jpg")  # case-sensitive
    assert excluder([]) is None


def test_excluded_files_are_left_out_before_grouping_and_the_rest_kept() -> None:
    rows, not_indexed = files_in_scope(ok_files, [], ["*.png", "exports*"], dict)
    assert paths(rows) == ["/p/2024/beach.jpg", "/p/backup/2019/raw/dog.jpg", "/p/dog.jpg"]
    assert not_indexed == []


def test_paths_with_nothing_indexed_under_them_are_reported() -> None:
    rows, not_indexed = files_in_scope(ok_files, ["/p/2024", "/q", "/nowhere"], [], dict)
    assert paths(rows) == ["/p/2024/beach.jpg", "/p/2024/beach.png"]
    assert not_indexed == ["/q", "/nowhere"]  # /q holds only a file that failed


def test_a_path_whose_files_are_all_excluded_is_indexed_not_reported() -> None:
    rows, not_indexed = files_in_scope(ok_files, ["/p/exports-web"], ["exports*"], dict)
    assert rows == [] and not_indexed == []


def test_nested_paths_list_each_file_once() -> None:
    rows, _ = files_in_scope(ok_files, ["/p", "/p/2024"], [], dict)
    assert sorted(paths(rows)) == sorted({r["path"] for r in ROWS if r["content_hash"]})
