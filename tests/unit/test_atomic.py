"""findsimilar.atomic: the one way files are replaced (pages, units, plugins, logs,
thumbnails)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from findsimilar.atomic import atomic_file, new_file_mode, write_atomic


def test_write_replaces_the_file_with_the_mode_asked_and_leaves_nothing_else(
        tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    target.write_text("old")
    write_atomic(target, "new ☺", mode=0o640)
    assert target.read_text(encoding="utf-8") == "new ☺"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["page.html"]


def test_without_a_mode_a_file_gets_what_the_umask_allows(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        assert new_file_mode() == 0o640 and new_file_mode(0o777) == 0o750
        write_atomic(tmp_path / "a", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o640


def test_a_failure_while_writing_keeps_the_old_file_and_removes_the_temp_file(
        tmp_path: Path) -> None:
    target = tmp_path / "log.json"
    target.write_bytes(b"the last good version")
    with pytest.raises(RuntimeError), atomic_file(target) as f:
        f.write(b"half of the new")
        raise RuntimeError("disk full, say")
    assert target.read_bytes() == b"the last good version"
    assert os.listdir(tmp_path) == ["log.json"]


def test_a_target_that_cannot_be_replaced_raises_and_leaves_no_temp_file(
        tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):
        write_atomic(tmp_path / "folder", b"a file cannot replace a folder")
    assert os.listdir(tmp_path) == ["folder"]


def test_a_missing_folder_is_an_error_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "file", b"x")
    assert not (tmp_path / "missing").exists()


def test_a_cache_write_skips_fsync_but_is_still_whole_and_named_as_asked(
        tmp_path: Path) -> None:
    target = tmp_path / "thumb.png"
    with atomic_file(target, mode=0o600, durable=False, prefix=".findsimilar-") as f:
        f.write(b"png bytes")
        (temp,) = os.listdir(tmp_path)  # other programs skip hidden files
        assert temp.startswith(".findsimilar-") and temp.endswith(".tmp")
    assert target.read_bytes() == b"png bytes"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
