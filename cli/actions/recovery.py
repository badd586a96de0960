"""Settle a step that stopped between its journaled intent and its outcome (stdlib only).

The disk says what happened. A relocation (trash, move, or their undo) is done if the file
is at its destination and not at its origin, not done if it is still at its origin; what
the step may have left is removed: its temp copy, a second name of the same inode (it
stopped between the link and the unlink of a rename), a complete copy on another
filesystem whose original was not yet removed, a .trashinfo reserved for a file that
never reached the trash. An in-place replacement (hardlink, or the undo of one) is done
if the path holds another inode than before, with the bytes the step wrote.
"""

from __future__ import annotations

import os
from typing import Any

from findsimilar.cli.actions.safefs import unlink_quietly
from findsimilar.cli.actions.trash import remove_orphaned_info
from findsimilar.safeio import hash_regular
from findsimilar.text import printable

__all__ = ["settle"]

Record = dict[str, Any]


def settle(record: Record) -> None:
    """Resolve ``record["pending"]`` from the disk: set done (or undone), or an error
    saying what was found; clear pending. Never raises for a file problem."""
    pending, record["pending"] = record.get("pending") or {}, None
    undoing = pending.get("op") == "undo"
    flag = "undone" if undoing else "done"
    if pending.get("tmp"):
        unlink_quietly(pending["tmp"])
    try:
        if record["action"] in ("trash", "move"):
            settled = _relocation(record, undoing)
        else:
            settled = _replacement(record, pending.get("inode"))
            if settled and not undoing:
                record["method"] = _method(record)
    except OSError as error:
        settled, found = None, f"{error.strerror}: {error.filename}"
    else:
        found = (f"found neither at {printable(record['path'])} nor at "
                 f"{printable(record.get('target') or '?')}")
    record[flag] = bool(settled)
    problem = "undo_error" if undoing else "error"
    if settled is None:
        record[problem] = record.get(problem) or f"interrupted; {found}"
    elif settled:
        record[problem] = None
    elif not undoing and not record.get("error"):
        record["skip"] = record.get("skip") or "not done: the run was interrupted"


def _relocation(record: Record, undoing: bool) -> bool | None:
    origin, target = record["path"], record.get("target")
    if not target:
        return False
    src, dst = (target, origin) if undoing else (origin, target)
    moved = _settle_move(src, dst, record.get("hash") or "")
    info = record.get("trash_info")
    if info and moved is False and not undoing and remove_orphaned_info(info, origin):
        record["trash_info"] = None
    if info and moved and undoing:
        unlink_quietly(info)
    return moved


def _settle_move(src: str, dst: str, digest: str) -> bool | None:
    """True if the file went from ``src`` to ``dst``, False if it is still at ``src`` (a
    leftover of the move at ``dst`` removed), None if it is at neither."""
    s, d = _lstat(src), _lstat(dst)
    if s is not None and d is not None:
        if (s.st_dev, s.st_ino) == (d.st_dev, d.st_ino):
            os.unlink(dst)  # stopped between the link and the unlink of a rename
        elif digest and _is_copy_of(dst, s, digest):
            os.unlink(dst)  # a finished cross-filesystem copy; the original still there
        return False
    if s is not None:
        return False
    return None if d is None else True


def _is_copy_of(path: str, original: os.stat_result, digest: str) -> bool:
    st = _lstat(path)
    if st is None or st.st_size != original.st_size or st.st_mtime_ns != original.st_mtime_ns:
        return False
    try:
        return hash_regular(path)[0] == digest
    except OSError:
        return False


def _replacement(record: Record, before: list[int] | None) -> bool | None:
    """True if the path holds another file than before, with the bytes the step wrote."""
    st = _lstat(record["path"])
    if st is None:
        return None
    if before is None or [st.st_dev, st.st_ino] == list(before):
        return False
    try:
        return hash_regular(record["path"])[0] == record.get("hash")
    except OSError:
        return False


def _method(record: Record) -> str:
    here, keep = _lstat(record["path"]), _lstat(record["keep"])
    linked = here is not None and keep is not None and (
        (here.st_dev, here.st_ino) == (keep.st_dev, keep.st_ino))
    return "hardlink" if linked else "reflink"


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
