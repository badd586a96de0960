"""Replacing a file atomically: the one way findsimilar writes a file others may read.

A temp file in the same folder is written, flushed and fsynced, given its mode, renamed
over the target, and then the folder is fsynced so that the rename itself survives a
crash. A reader (a file manager, a browser, the next run) sees the old file or the new
one, never half of one; on any error the temp file is removed and the target is left as
it was. Stdlib only: the thin client uses it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "new_file_mode", "write_atomic"]


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str], *, mode: int | None = None,
                durable: bool = True, prefix: str | None = None) -> Iterator[BinaryIO]:
    """Yields a binary file that replaces ``path`` when the ``with`` block ends cleanly.

    ``mode``: the new file's permissions (None: what any new file of the user gets,
    0o666 less the umask). ``durable=False`` skips both fsyncs, for caches whose torn
    files are detected and made again. ``prefix``: the temp file's name start (default
    ``.NAME.``; it always ends in ``.tmp``). The folder must exist. Raises OSError; the
    temp file never outlives a failure, whatever was raised.
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=prefix or f".{target.name}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode() if mode is None else mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _sync_folder(target.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes | str, *,
                 mode: int | None = None, durable: bool = True) -> None:
    """Replaces ``path`` with ``data`` (a str is written as UTF-8) through
    :func:`atomic_file`; ``mode`` and ``durable`` as there. Raises OSError (and
    UnicodeEncodeError for a str UTF-8 cannot hold), leaving ``path`` as it was."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, mode=mode, durable=durable) as f:
        f.write(payload)


def new_file_mode(base: int = 0o666) -> int:
    """``base`` less this process's umask: the mode ``open()`` would give a new file (or,
    with 0o777, a new folder). Read from /proc, since ``os.umask`` can only be read by
    setting it, which would race with other threads creating files."""
    return base & ~_umask()


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _sync_folder(folder: Path) -> None:
    # The file is already in place; a folder that cannot be opened for reading (mode
    # 0o300) or a file system without directory fsync only loses the crash guarantee.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
