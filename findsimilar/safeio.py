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
           "megabytes", "open_regular", "read_fd", "read_head", "read_regular"]

_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 22


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a socket or a folder, not a file to read."""


class FileTooBig(OSError):
    """The file holds more bytes than the caller will read: ``size`` (as far as it was
    read) against ``limit``."""

    size: int = 0
    limit: int = 0


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
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno not in (errno.ENXIO, errno.ENODEV):
            raise
        # A socket, or a device with no driver behind it, cannot be opened at all:
        # say what it is rather than "No such device or address".
        mode = os.stat(path, follow_symlinks=follow_symlinks).st_mode
        if stat.S_ISREG(mode):
            raise
        raise _not_regular(path, mode) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
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
        return read_fd(fd, limit, path)
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int, path: str | os.PathLike[str]) -> bytes:
    """The bytes of the descriptor ``fd`` (from :func:`open_regular`) from its position to
    its end, at most ``limit`` of them; ``path`` only names the file in a FileTooBig."""
    size = os.fstat(fd).st_size - os.lseek(fd, 0, os.SEEK_CUR)
    if size > limit:
        raise _too_big(path, size, limit)
    chunks, total = [], 0
    while chunk := os.read(fd, min(_CHUNK, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise _too_big(path, total, limit)
    return b"".join(chunks)


def read_head(path: str | os.PathLike[str], size: int) -> bytes:
    """The first ``size`` bytes (fewer if the file is shorter) of the regular file at
    ``path``: a header to sniff. Raises like :func:`open_regular`."""
    fd = open_regular(path)
    try:
        return os.read(fd, size)
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


def _not_regular(path: str | os.PathLike[str], mode: int) -> NotRegularFile:
    return NotRegularFile(errno.EINVAL, f"not a regular file but a {file_kind(mode)}",
                          os.fspath(path))


def _too_big(path: str | os.PathLike[str], size: int, limit: int) -> FileTooBig:
    exc = FileTooBig(errno.EFBIG, f"too big to read ({megabytes(size)}; the limit is "
                     f"{megabytes(limit)})", os.fspath(path))
    exc.size, exc.limit = size, limit
    return exc


def megabytes(size: int) -> str:
    """``size`` bytes in words: "48 MB", "1,048,576 MB", "512 KB", "10 bytes"."""
    if size >= 1 << 20:
        return f"{size / (1 << 20):,.0f} MB"
    return f"{size / 1024:,.0f} KB" if size >= 1024 else f"{size} bytes"
