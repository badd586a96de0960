"""Hard links of one inode are one file, not duplicates of each other.

Two paths of one inode share their bytes: removing one frees nothing, and a group of
them is no group. Files of one content whose stored inodes are equal are checked on
disk (device and inode now: the stored inode may be stale, or from another disk), and
each inode is then listed once, by its first path, with its other paths as ``links``.
Only byte-identical files can be links of one inode, so only those are looked at; a
library without hard links costs no ``stat`` at all.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from findsimilar.daemon.dupes.grouping import FileRow

__all__ = ["one_per_inode"]


def one_per_inode(files: list[FileRow]) -> tuple[list[FileRow], int]:
    """``files`` (of one content) with the hard links of each inode folded into its first
    path (its ``links``: the others); returns them and how many paths were folded."""
    by_inode: dict[int, list[FileRow]] = defaultdict(list)
    for f in files:
        if f.inode is not None:
            by_inode[f.inode].append(f)
    if all(len(same) < 2 for same in by_inode.values()):
        return files, 0
    folded: set[int] = set()
    for same in by_inode.values():
        if len(same) < 2:
            continue
        on_disk: dict[tuple[int, int], list[FileRow]] = defaultdict(list)
        for f in sorted(same, key=lambda f: f.path):
            try:
                st = os.stat(f.path, follow_symlinks=False)
            except OSError:  # gone: listed as it is stored
                continue
            on_disk[(st.st_dev, st.st_ino)].append(f)
        for first, *links in (fs for fs in on_disk.values() if len(fs) > 1):
            first.links = [f.path for f in links]
            folded.update(id(f) for f in links)
    return [f for f in files if id(f) not in folded], len(folded)
