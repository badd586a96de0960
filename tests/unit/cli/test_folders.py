"""cli/install/folders.py: the folders install created, removed again once empty, and
only those."""

from __future__ import annotations

from pathlib import Path

import pytest

from findsimilar.cli.install.folders import make_folder, record_path, remove_empty_folders


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def test_created_folders_go_once_empty_and_the_record_with_them(tmp_path: Path,
                                                                 state_home: Path) -> None:
    (tmp_path / "share").mkdir()
    make_folder(tmp_path / "share/app/plugins")
    (tmp_path / "share/app/plugins/ours.py").write_text("")
    assert remove_empty_folders() == []  # not empty yet: nothing goes, the record stays
    assert record_path().is_file()

    (tmp_path / "share/app/plugins/ours.py").unlink()
    assert remove_empty_folders() == [tmp_path / "share/app/plugins", tmp_path / "share/app",
                                      state_home / "findsimilar", state_home]
    assert (tmp_path / "share").is_dir()  # there before
    assert not state_home.exists()  # made for the record: gone with it


def test_an_unreadable_record_removes_nothing(tmp_path: Path) -> None:
    make_folder(tmp_path / "app/plugins")
    record_path().write_text("{not json")
    assert remove_empty_folders() == []
    assert (tmp_path / "app/plugins").is_dir()
