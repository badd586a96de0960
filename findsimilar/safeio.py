"""Reading files a user or a folder hands us, safely (stdlib only: the thin client uses it).

Any path may name something that is not a photo file: a FIFO (a plain ``open()`` waits
for a writer for ever), a device (``/dev/zero`` never ends), a symlink to either, or a
file that is swapped for one between a ``stat`` and the ``open``. So every read of bytes
goes through :func:`open_regular`: opened non-blocking, checked on the open descriptor
(no race), refused unless it is a regular file; and reads are bounded.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat

__all__ = ["FileTooBig", "NotRegularFile", "file_kind", "hash_fd", "hash_regular",
           "open_regular", "read_regular"]

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 22


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a socket or a folder, not a file to read."""


class FileTooBig(OSError):
    """The file holds more bytes than the caller will read."""


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words ("folder", "FIFO (named pipe)", ...)."""
    kinds = ((stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "FIFO (named pipe)"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISLNK, "symbolic link"))
    return next((name for test, name in kinds if test(mode)), "special file")


def open_regular(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> int:
    """A blocking read-only descriptor of ``path``, which must be a regular file.

    The open never waits (``O_NONBLOCK``: a FIFO with no writer opens at once) and the
    type is checked on the descriptor, so a file swapped for a FIFO or a device after
    the caller's ``stat`` is refused too. Raises NotRegularFile, or the OSError of the
    open (FileNotFoundError, PermissionError, ...). The caller closes the descriptor.
    """
    flags = _FLAGS if follow_symlinks else _FLAGS | os.O_NOFOLLOW
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(errno.EINVAL, f"not a regular file but a {file_kind(mode)}",
                                 os.fspath(path))
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """All bytes of the regular file at ``path``, at most ``limit`` of them.

    Raises FileTooBig if the file holds more (checked before reading, and again while
    reading, since a file may grow meanwhile), NotRegularFile, or the OSError of the open
    or the read.
    """
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise _too_big(path, size, limit)
        chunks, total = [], 0
        while chunk := os.read(fd, min(_CHUNK, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise _too_big(path, total, limit)
        return b"".join(chunks)
    finally:
        os.close(fd)


def hash_fd(fd: int) -> str:
    """BLAKE2b-128 (hex) of the bytes from ``fd``'s position to its end: the content hash
    the store keys pictures by."""
    digest = hashlib.blake2b(digest_size=16)
    while chunk := os.read(fd, _CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def hash_regular(path: str | os.PathLike[str], *,
                 follow_symlinks: bool = False) -> tuple[str, os.stat_result]:
    """(content hash, ``fstat`` of the descriptor that was hashed) of the regular file at
    ``path``; the stat lets a caller check that the file it is about to act on is still
    the one it hashed. Raises like :func:`open_regular`."""
    fd = open_regular(path, follow_symlinks=follow_symlinks)
    try:
        return hash_fd(fd), os.fstat(fd)
    finally:
        os.close(fd)


def _too_big(path: str | os.PathLike[str], size: int, limit: int) -> FileTooBig:
    return FileTooBig(errno.EFBIG, f"too big to read ({size // 1048576} MB; the limit is "
                      f"{limit // 1048576} MB)", os.fspath(path))
