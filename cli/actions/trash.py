"""The freedesktop.org trash (Trash specification 1.0), done here rather than with
send2trash because undo must know exactly where each file went: send2trash returns
nothing, may hand over to gio, and writes .trashinfo files without O_EXCL.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Callable
from urllib.parse import quote, unquote_to_bytes

from findsimilar.cli.actions.safefs import (
    Check,
    numbered,
    rename_no_clobber,
    same_device,
    unlink_quietly,
)
from findsimilar.config import data_home as xdg_data_home

__all__ = ["remove_orphaned_info", "send_to_trash", "trash_dir"]



def send_to_trash(path: str, *, announce: Callable[[str, str], None] | None = None,
                  check: Check | None = None,
                  same_inode: tuple[int, int] | None = None) -> tuple[str, str]:
    """Trash ``path`` per the spec; return (file in the trash, its .trashinfo).

    ``announce(file in the trash, .trashinfo)`` is called before either is created, so a
    caller can journal where the file is about to go; ``check`` and ``same_inode`` are
    :func:`~.safefs.rename_no_clobber`'s, for the file's last check before it moves.
    """
    trash, topdir = trash_dir(path)
    files, info = os.path.join(trash, "files"), os.path.join(trash, "info")
    for folder in (trash, files, info):  # makedirs gives only the leaf its mode
        os.makedirs(folder, mode=0o700, exist_ok=True)
    original = path if topdir is None else os.path.relpath(path, topdir)
    body = (f"[Trash Info]\nPath={quote(os.fsencode(original))}\n"
            f"DeletionDate={time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
    for name in numbered(os.path.basename(path)):
        # The spec's lock: whoever creates info/NAME.trashinfo first owns NAME.
        info_path, target = os.path.join(info, name + ".trashinfo"), os.path.join(files, name)
        if os.path.lexists(info_path) or os.path.lexists(target):
            continue
        if announce is not None:
            announce(target, info_path)
        try:
            fd = os.open(info_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
            rename_no_clobber(path, target, check=check, same_inode=same_inode)
        except BaseException as error:
            unlink_quietly(info_path)
            if isinstance(error, FileExistsError):
                continue
            raise
        return target, info_path
    raise AssertionError("unreachable")


def remove_orphaned_info(info_path: str, original: str) -> bool:
    """Remove ``info_path`` if it is a .trashinfo for ``original`` (or still empty) whose
    file is not in the trash, as a run that stopped between reserving the name and moving
    the file leaves it; True if it was removed. Another program's entry is left alone."""
    files = os.path.join(os.path.dirname(os.path.dirname(info_path)), "files")
    if os.path.lexists(os.path.join(files, os.path.basename(info_path)[:-len(".trashinfo")])):
        return False
    try:
        with open(info_path, "rb") as f:
            text = f.read(65536).decode("ascii", "replace")
    except OSError:
        return False
    value = next((line[5:] for line in text.splitlines() if line.startswith("Path=")), None)
    if value is not None:  # none yet: the run stopped between creating it and writing it
        where = os.fsdecode(unquote_to_bytes(value))
        if where != original and not original.endswith("/" + where.lstrip("/")):
            return False
    unlink_quietly(info_path)
    return True


def trash_dir(path: str) -> tuple[str, str | None]:
    """(trash dir, its volume top or None for the home trash): the home trash on the same
    filesystem, else $topdir/.Trash/$uid if the admin made one, else $topdir/.Trash-$uid."""
    home_trash = os.path.join(xdg_data_home(), "Trash")
    dev = os.lstat(path).st_dev
    if same_device(path, existing_ancestor(home_trash)):
        return home_trash, None
    top = os.path.dirname(path)
    while os.path.dirname(top) != top and os.lstat(os.path.dirname(top)).st_dev == dev:
        top = os.path.dirname(top)
    shared = os.path.join(top, ".Trash")
    with contextlib.suppress(OSError):
        st = os.lstat(shared)
        # The spec: use $topdir/.Trash only if it is a real directory with the sticky bit.
        if stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
            own = os.path.join(shared, str(os.getuid()))
            os.makedirs(own, mode=0o700, exist_ok=True)
            return own, top
    own = os.path.join(top, f".Trash-{os.getuid()}")
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(own)
        # On a shared volume, a planted symlink or foreign folder would receive our photos.
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise OSError(errno.EPERM, "not a trash folder of this user; refusing it", own)
    return own, top


def existing_ancestor(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path
