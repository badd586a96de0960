"""File operations that never overwrite anything (stdlib only: the thin client uses them).

Each takes an optional ``check``, called right before the irreversible part (the rename,
the link, the unlink of a source): it raises if the file is no longer the one the caller
verified, so the window between a verification and the act is a few system calls.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import os
import secrets
import shutil
from collections.abc import Callable, Iterator

from findsimilar.safeio import open_regular

__all__ = ["NO_CLONE", "Check", "clone_into", "copy_bytes", "move_file", "numbered",
           "reflink_into", "rename_no_clobber", "same_device", "tmp_name", "unlink_quietly"]

Check = Callable[[], None]
FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
# What FICLONE says where the filesystem cannot share extents (ext4, tmpfs: EOPNOTSUPP;
# older kernels: EINVAL or ENOTTY; two filesystems: EXDEV).
NO_CLONE = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EINVAL, errno.EXDEV, errno.ENOSYS}


def rename_no_clobber(src: str, dst: str, *, check: Check | None = None,
                      same_inode: tuple[int, int] | None = None) -> None:
    """Rename within one filesystem; FileExistsError if ``dst`` exists, never replacing it.

    With ``same_inode`` (dev, ino), the new name is checked to hold that inode before the
    old one goes: if ``src`` was swapped meanwhile, nothing is changed and OSError raised.
    """
    if check is not None:
        check()
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
        if same_inode is not None:
            st = os.lstat(dst)
            if (st.st_dev, st.st_ino) != same_inode:
                raise OSError(errno.ESTALE, "replaced by another file while being moved", src)
        os.unlink(src)
    except BaseException:
        unlink_quietly(dst)  # all or nothing: no second name left behind
        raise


def same_device(path: str, folder: str) -> bool:
    return os.lstat(path).st_dev == os.stat(folder).st_dev


def move_file(src: str, dst: str, *, tmp: str | None = None, check: Check | None = None,
              expected_hash: str | None = None,
              same_inode: tuple[int, int] | None = None) -> None:
    """Move a regular file without overwriting; across filesystems copy to ``tmp`` (default:
    a fresh name beside ``dst``), verify, rename into place, then unlink the source.

    ``expected_hash`` (BLAKE2b-128 hex) is compared with the bytes copied, ``same_inode``
    as in :func:`rename_no_clobber` with the file renamed. On any failure
    nothing is left at ``dst`` or ``tmp`` that this call made, also when the source cannot
    be unlinked (a read-only filesystem): the copy is removed and the error raised.
    """
    if same_device(src, os.path.dirname(dst)):
        rename_no_clobber(src, dst, check=check, same_inode=same_inode)
        return
    tmp = tmp or tmp_name(dst)
    try:
        digest = copy_bytes(src, tmp)
        shutil.copystat(src, tmp, follow_symlinks=False)
        if os.path.getsize(tmp) != os.path.getsize(src) or (
                expected_hash and digest != expected_hash):
            raise OSError(errno.EIO, "the copy differs from the original, which was kept", src)
        rename_no_clobber(tmp, dst, check=check)
    except BaseException:
        unlink_quietly(tmp)
        raise
    try:
        if check is not None:
            check()  # the source may have changed while it was copied
        os.unlink(src)
    except BaseException:
        unlink_quietly(dst)  # the copy is ours, just made: the original stays the only one
        raise


def copy_bytes(src: str, dst: str) -> str:
    """Copy the regular file ``src`` into the new file ``dst`` (never a FIFO or a device;
    ``dst`` must not exist), fsynced; return the BLAKE2b-128 hex of the bytes copied, which
    is the store's content hash. The copy shares no storage with ``src``."""
    digest = hashlib.blake2b(digest_size=16)
    source = open_regular(src, follow_symlinks=False)
    try:
        with open(dst, "xb") as copy:
            while chunk := os.read(source, 1 << 20):
                digest.update(chunk)
                copy.write(chunk)
            copy.flush()
            os.fsync(copy.fileno())
    finally:
        os.close(source)
    return digest.hexdigest()


def clone_into(src_fd: int, dst: str) -> bool:
    """Make ``dst`` (a new file) a reflink copy of ``src_fd`` (ioctl FICLONE): it shares
    the storage but is a separate file, so writing one never changes the other. Returns
    False, leaving nothing behind, where the filesystem cannot clone (ext4, tmpfs, ...)."""
    try:
        reflink_into(src_fd, dst)
    except OSError as error:
        if error.errno in NO_CLONE:
            return False
        raise
    return True


def reflink_into(src_fd: int, dst: str) -> None:
    """As :func:`clone_into`, but raises the OSError of FICLONE (errno in ``NO_CLONE``
    where the filesystem cannot clone), with ``dst`` removed again."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.ioctl(fd, FICLONE, src_fd)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(dst)
        raise
    os.close(fd)


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
