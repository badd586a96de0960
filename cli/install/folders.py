"""The folders ``integrate install`` creates, recorded so that ``integrate uninstall``
removes them again once they are empty, and never a folder it did not create.

The record (``$XDG_STATE_HOME/findsimilar/created-folders.json``) names each folder
with its device and inode: a folder the user deleted and made again is not the one we
created, and stays. Folders created to hold the record itself are recorded too, and go
with it when nothing else is left. Stdlib only.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from findsimilar import config
from findsimilar.atomic import write_atomic

__all__ = ["make_folder", "record_path", "remove_empty_folders"]

Folders = dict[str, list[int]]  # path -> [st_dev, st_ino]


def record_path() -> Path:
    return config.state_home() / "findsimilar" / "created-folders.json"


def make_folder(folder: Path) -> None:
    """Creates FOLDER and the folders missing above it (raises OSError as mkdir does),
    recording those it created. A record that cannot be written only means they will
    not be removed later."""
    created = _missing(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if created:
        _add(created)


def remove_empty_folders() -> list[Path]:
    """Removes the recorded folders that are empty now (deepest first), and the record
    once nothing is left in it. Returns the folders removed."""
    folders = _load()
    record = record_path()
    own = {p for p in folders if record.is_relative_to(p)}  # made to hold the record
    removed = [p for p in _deepest_first(set(folders) - own) if _remove(p, folders)]
    if folders.keys() <= own:
        try:
            record.unlink(missing_ok=True)
        except OSError:
            return removed
        removed += [p for p in _deepest_first(own) if _remove(p, folders)]
    elif removed:
        _save(folders)
    return removed


def _missing(folder: Path) -> list[Path]:
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _deepest_first(paths: set[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: len(p.parts), reverse=True)


def _remove(folder: Path, folders: dict[Path, list[int]]) -> bool:
    """Removes FOLDER if it is still the one we created and empty; forgets it when it is
    gone, replaced or removed. Returns whether it was removed."""
    try:
        st = os.lstat(folder)
    except OSError:
        del folders[folder]
        return False
    if not stat.S_ISDIR(st.st_mode) or [st.st_dev, st.st_ino] != folders[folder]:
        del folders[folder]
        return False
    try:
        folder.rmdir()
    except OSError:  # not empty (or not ours to remove): it stays, still recorded
        return False
    del folders[folder]
    return True


def _add(created: list[Path]) -> None:
    folders = _load()
    for folder in created:
        try:
            st = os.lstat(folder)
        except OSError:
            continue
        folders[folder] = [st.st_dev, st.st_ino]
    _save(folders)


def _load() -> dict[Path, list[int]]:
    """The record; empty when there is none or it is unreadable (then nothing is
    removed: only a folder known to be ours ever is)."""
    try:
        raw = json.loads(record_path().read_text(encoding="utf-8"))
        return {Path(p): [int(dev), int(ino)] for p, (dev, ino) in raw["folders"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _save(folders: dict[Path, list[int]]) -> None:
    record = record_path()
    try:
        created = _missing(record.parent)
        record.parent.mkdir(parents=True, exist_ok=True)
        for folder in created:
            st = os.lstat(folder)
            folders[folder] = [st.st_dev, st.st_ino]
        data: Folders = {str(p): v for p, v in folders.items()}
        write_atomic(record, json.dumps({"folders": data}, indent=1) + "\n",
                     mode=0o600)
    except OSError:
        pass
