"""The facts a destructive action rests on, checked again at the moment it acts.

A listing is made from the store, which can be stale: a file whose bytes were replaced
keeping its size and modified time still shows its old hash. So before any step (trash,
move, hardlink, reflink, any future one) both files are hashed again and compared with the
hashes the listing shows; where the listing also recorded the files as it found them on
disk (a plan from ``dupes --json``: exact modified time, device and inode), a path that
now holds another inode or another time is skipped before any hashing. Right before the
rename or link the path is checked to still hold the very inode that was hashed (device,
inode, size, mtime and ctime, which a user cannot set back). Stdlib only: the thin client
runs it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Protocol

from findsimilar.safeio import NotRegularFile, hash_regular

__all__ = ["Changed", "FactChecker", "Facts", "ListedStep", "identity", "listed_problem"]

# Listings carry mtime as float seconds, which cannot hold every nanosecond exactly.
_MTIME_TOLERANCE_NS = 1_000_000


class Changed(Exception):
    """The file is no longer what the decision was made on; the message says how."""


class ListedStep(Protocol):
    """What a step knows of its two files from the listing (PlannedStep has it)."""

    action: str
    path: str
    keep: str
    tier: str
    size: int
    mtime: float
    hash: str
    keep_size: int | None
    keep_mtime: float | None
    keep_hash: str | None
    mtime_ns: int | None
    inode: tuple[int, int] | None
    keep_mtime_ns: int | None
    keep_inode: tuple[int, int] | None


def identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """(dev, ino, size, mtime_ns, ctime_ns): any write, rename onto, or chmod changes it."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass(frozen=True)
class Facts:
    """A regular file as it was hashed: ``stat`` is the fstat of the hashed descriptor."""

    path: str
    hash: str
    stat: os.stat_result

    @property
    def inode(self) -> tuple[int, int]:
        return self.stat.st_dev, self.stat.st_ino

    def check(self) -> None:
        """Raise Changed unless ``path`` still holds the hashed inode, unchanged."""
        try:
            now = os.lstat(self.path)
        except FileNotFoundError:
            raise Changed(f"{self.path} disappeared while being acted on") from None
        if identity(now) != identity(self.stat):
            raise Changed(f"{self.path} changed while being acted on; left as it is")


class FactChecker:
    """Hashes files for one run. A hash is reused while the file's identity (see
    :func:`identity`) is unchanged, so a keeper is read once for its whole group and
    re-checked with one lstat per step."""

    def __init__(self) -> None:
        self._hashes: dict[tuple[str, int, int, int, int, int], str] = {}

    def now(self, path: str) -> Facts:
        """The file at ``path`` as it is now; raises Changed if it is not a regular file
        (gone, a symbolic link, a folder, a FIFO...)."""
        st = _lstat_regular(path)
        cached = self._hashes.get((path, *identity(st)))
        if cached is not None:
            return Facts(path, cached, st)
        try:
            digest, fst = hash_regular(path, follow_symlinks=False)
        except FileNotFoundError:
            raise Changed("no longer exists") from None
        except NotRegularFile:
            raise Changed("is no longer a regular file") from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise Changed("is now a symbolic link") from None
            raise
        self._hashes[(path, *identity(fst))] = digest
        return Facts(path, digest, fst)

    def verify(self, step: ListedStep) -> tuple[Facts, Facts]:
        """(the file, its keeper) as they are now, if the step may still go ahead: both
        are still the files that were listed (the hashes the listing shows; for exact
        duplicates also equal to each other). Raises Changed with the reason to skip."""
        problem = _keeper(_seen_problem(step.keep, step.keep_size, step.keep_mtime,
                                        step.keep_mtime_ns, step.keep_inode))
        problem = problem or _seen_problem(step.path, step.size, step.mtime, step.mtime_ns,
                                           step.inode)
        if problem:
            raise Changed(problem)
        try:
            keeper = self.now(step.keep)
        except Changed as error:
            raise Changed(_keeper(str(error))) from None
        if not step.keep_hash or keeper.hash != step.keep_hash:
            raise Changed(_keeper("changed since listing"))
        here = self.now(step.path)
        if not step.hash or here.hash != step.hash:
            raise Changed("bytes changed since listing")
        if (step.tier == "exact" or step.action in ("hardlink", "reflink")) and (
                here.hash != keeper.hash):
            raise Changed("keeper's bytes differ from this file's")
        return here, keeper


def _ns(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1e9)


def _seen_problem(path: str, size: int | None, mtime: float | None, mtime_ns: int | None,
                  inode: tuple[int, int] | None) -> str | None:
    """:func:`listed_problem` on the exact facts where the listing recorded them."""
    if mtime_ns is None:
        return listed_problem(path, size, _ns(mtime))
    return listed_problem(path, size, mtime_ns, inode=inode, tolerance_ns=1)


def _keeper(problem: str | None) -> str | None:
    return None if problem is None else f"keeper {problem}; whole group skipped"


def _lstat_regular(path: str) -> os.stat_result:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise Changed("no longer exists") from None
    if stat.S_ISLNK(st.st_mode):
        raise Changed("is now a symbolic link")
    if not stat.S_ISREG(st.st_mode):
        raise Changed("is no longer a regular file")
    return st


def listed_problem(path: str, size: int | None, mtime_ns: int | None, *,
                   inode: tuple[int, int] | None = None,
                   tolerance_ns: int = _MTIME_TOLERANCE_NS) -> str | None:
    """Why ``path`` is visibly not the regular file that was listed (gone, another kind,
    another inode, size or modified time), or None: the cheap check before any hashing.
    ``tolerance_ns`` allows for a listed time that went through float seconds."""
    try:
        st = _lstat_regular(path)
    except Changed as error:
        return str(error)
    if inode is not None and (st.st_dev, st.st_ino) != tuple(inode):
        return "replaced by another file since listing (another inode)"
    if size is not None and st.st_size != size:
        return f"changed since listing (size {size} -> {st.st_size})"
    if mtime_ns is not None and abs(st.st_mtime_ns - mtime_ns) >= tolerance_ns:
        return "changed since listing (modified time differs)"
    return None
