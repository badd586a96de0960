"""File operations that never overwrite anything (stdlib only: the thin client uses them)."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import shutil
from collections.abc import Iterator

__all__ = ["copy_bytes", "move_file", "numbered", "rename_no_clobber", "same_device",
           "tmp_name", "unlink_quietly"]


def rename_no_clobber(src: str, dst: str) -> None:
    """Rename within one filesystem; FileExistsError if ``dst`` exists, never replacing it."""
    try:
        os.link(src, dst, follow_symlinks=False)  # fails atomically if dst exists
    except FileExistsError:
        raise
    except OSError:
        # FAT/exFAT and some network filesystems have no hard links: check, then rename.
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "destination exists", dst) from None
        os.rename(src, dst)
        return
    try:
        os.unlink(src)
    except BaseException:
        unlink_quietly(dst)  # all or nothing: no second name left behind
        raise


def same_device(path: str, folder: str) -> bool:
    return os.lstat(path).st_dev == os.stat(folder).st_dev


def move_file(src: str, dst: str) -> None:
    """Move a regular file without overwriting; across filesystems copy, verify, then unlink."""
    if same_device(src, os.path.dirname(dst)):
        rename_no_clobber(src, dst)
        return
    tmp = tmp_name(dst)
    try:
        copy_bytes(src, tmp)
        shutil.copystat(src, tmp)
        if os.path.getsize(tmp) != os.path.getsize(src):
            raise OSError(errno.EIO, "the copy is incomplete; the original was kept", src)
        rename_no_clobber(tmp, dst)
    except BaseException:
        unlink_quietly(tmp)
        raise
    os.unlink(src)


def copy_bytes(src: str, dst: str) -> None:
    with open(src, "rb") as source, open(dst, "xb") as copy:
        shutil.copyfileobj(source, copy, 1 << 20)
        copy.flush()
        os.fsync(copy.fileno())


def numbered(path: str) -> Iterator[str]:
    """``path``, then ``stem (1).ext``, ``stem (2).ext``, ... for a free name."""
    yield path
    stem, ext = os.path.splitext(path)
    for n in itertools.count(1):
        yield f"{stem} ({n}){ext}"


def tmp_name(path: str) -> str:
    return os.path.join(os.path.dirname(path), f".findsimilar-{secrets.token_hex(6)}.tmp")


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
