"""The watched folders: what the user chose, how each is followed, and whether each path
still holds the folder that is watched.

A watched folder is a path *and* the folder that was there: its device and inode, and
the mount point of the filesystem holding it. The distinction matters because inotify
watches an inode, not a path: after ``mv lib lib.old; mkdir lib`` the watch follows
``lib.old`` and reports its events as ``lib/...``, while the new ``lib`` is watched by
nobody. And a disk that is unmounted leaves an empty folder at the same path, one that
is remounted comes back with a new device number.

So :class:`Roots` keeps, for each path, the identity of the folder its watch was set up
on, and :meth:`Roots.check` (twice a second, from a thread of its own: a hung network
mount must not stall the daemon) compares it with what the path holds now. A stat per
folder every half second sees every way a path changes hands, mounts included, which an
inotify watch on the parent folder would not (and a parent may be unwatchable); the
deletion of the folder itself also comes at once as watchdog's own event. A folder
renamed away, deleted, replaced, unmounted or remounted is noticed within a second: its
watch is dropped at once (its events no longer reach the path) and the path is
reconciled again, which decides what it holds now (:func:`availability`):

* nothing, or an empty mount point (the filesystem it lived on is not mounted):
  *unavailable*, its photos kept until it is back (not a mass deletion);
* a folder on the expected filesystem (the same one, a remounted disk, a folder
  recreated at the path): watched again and scanned, which brings the store in step.

Modes, as ``watch list`` shows them: ``watch`` (inotify), ``rescan`` (inotify could not
watch all of it: rescanned every few minutes), ``unavailable``.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from findsimilar.text import is_under

__all__ = ["Identity", "RootState", "Roots", "availability", "identify", "mount_points"]

log = logging.getLogger(__name__)

# (st_dev, st_ino, mount point of the filesystem holding the folder)
Identity = tuple[int, int, str]


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> set[str]:
    """The mount points this process sees (field 5 of mountinfo, octal escapes undone);
    just ``{"/"}`` where /proc cannot tell."""
    points = {"/"}
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                fields = line.split(" ", 5)
                if len(fields) > 4:
                    points.add(_unescape(fields[4]))
    except OSError:
        pass
    return points


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as \\040, \\011, \\012, \\134."""
    if "\\" not in field:
        return field
    raw = field.encode("utf-8", "surrogateescape")
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i:i + 1] == b"\\" and raw[i + 1:i + 4].isdigit():
            out.append(int(raw[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def mount_point_of(path: str, mounts: set[str]) -> str:
    """The mount point of the filesystem holding ``path`` (symlinks resolved)."""
    real = os.path.realpath(path)
    return max((m for m in mounts if is_under(real, m)), key=len, default="/")


def identify(path: str, mounts: set[str] | None = None) -> Identity | None:
    """The identity of the folder at ``path``, or None if there is no folder there."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISDIR(st.st_mode):
        return None
    return st.st_dev, st.st_ino, mount_point_of(path, mounts or mount_points())


def availability(root: dict[str, Any], now: Identity | None, mounts: set[str]) -> str | None:
    """Why the watched folder ``root`` (a row of ``Store.roots``) cannot be read as
    itself now, or None if it can. ``now`` is :func:`identify` of its path."""
    if now is None:
        return ("the folder is not there (renamed, deleted, or its disk is not mounted); "
                "its photos are kept until it is back")
    recorded = root.get("mount")
    if recorded and recorded not in mounts:
        return (f"the disk that was mounted at {recorded} is not mounted; its photos are "
                "kept until it is back")
    if recorded is None and root.get("dev") is not None and now[0] != root["dev"] \
            and _empty(root["path"]):
        # A root from before mount points were recorded, on another device than it was,
        # and empty: most likely the mount point of a disk that is not mounted. (A disk
        # mounted again with a new device number has its photos in it.)
        return "not the disk it was on (not mounted?); its photos are kept until it is back"
    return None


def _empty(folder: str) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except OSError:
        return True


@dataclass
class RootState:
    """How one path is followed now (in memory; the store keeps the choice and identity)."""

    mode: str = "watch"  # "watch" | "rescan" | "unavailable"
    why: str | None = None
    watched: Identity | None = None  # the folder the watch (or the last scan) was set up on
    pending: bool = False  # a reconcile of it is queued


class Roots:
    """The state of every watched path, safe to use from any thread."""

    def __init__(self, configured: Callable[[], list[dict[str, Any]]],
                 on_changed: Callable[[list[str]], None]) -> None:
        self.configured = configured  # the chosen roots (store rows, or the default)
        self.on_changed = on_changed  # called with paths whose folder changed or is back
        self._states: dict[str, RootState] = {}
        self._lock = threading.Lock()

    # -- state ------------------------------------------------------------------------
    def state(self, path: str) -> RootState:
        with self._lock:
            return RootState(**vars(self._states.get(path, RootState())))

    def set_watching(self, path: str, identity: Identity, *, rescan_why: str | None) -> None:
        with self._lock:
            self._states[path] = RootState("rescan" if rescan_why else "watch", rescan_why,
                                           identity)

    def set_unavailable(self, path: str, why: str) -> bool:
        """Mark ``path`` unavailable; True if it was not already."""
        with self._lock:
            old = self._states.get(path)
            self._states[path] = RootState("unavailable", why)
            return old is None or old.mode != "unavailable"

    def set_rescan(self, path: str, why: str) -> None:
        with self._lock:
            state = self._states.setdefault(path, RootState())
            state.mode, state.why = "rescan", why

    def reconciling(self, path: str) -> None:
        with self._lock:
            if path in self._states:
                self._states[path].pending = False

    def forget(self, path: str) -> None:
        with self._lock:
            self._states.pop(path, None)

    def paths(self, mode: str) -> list[str]:
        with self._lock:
            return sorted(p for p, s in self._states.items() if s.mode == mode)

    def root_of(self, path: str) -> str | None:
        """The deepest watched path holding ``path``."""
        with self._lock:
            holders = [p for p in self._states if is_under(path, p)]
        return max(holders, key=len, default=None)

    def intact(self, path: str) -> bool:
        """True if the watched path holding ``path`` still holds the folder its watch was
        set up on (or nothing is known of it). An event of a watch that followed its
        folder elsewhere, or of a folder replaced since, does not belong to the path."""
        root = self.root_of(path)
        if root is None:
            return True
        state = self.state(root)
        if state.mode == "unavailable":
            return False
        now = identify(root, {"/"})
        return state.watched is None or (now is not None and now[:2] == state.watched[:2])

    # -- noticing changes -----------------------------------------------------------------
    def check(self) -> list[str]:
        """Paths whose folder changed since it was watched (renamed away, deleted,
        replaced, unmounted, remounted) or that came back while unavailable; each is
        reported once until its reconcile runs. Calls ``on_changed`` with them."""
        due: list[str] = []
        mounts: set[str] | None = None
        for root in self.configured():
            path = root["path"]
            state = self.state(path)
            if state.pending:
                continue
            if state.mode == "unavailable":
                mounts = mounts or mount_points()
                if availability(root, identify(path, mounts), mounts) is None:
                    log.info("watched folder %s is back", path)
                    due.append(path)
            elif state.watched is not None:
                now = identify(path, {"/"})  # the mount point is not needed to compare
                if now is None or now[:2] != state.watched[:2]:
                    log.warning("watched folder %s is %s; its watch is dropped and the "
                                "folder checked again", path,
                                "gone" if now is None else "another folder now")
                    due.append(path)
        with self._lock:
            for path in due:
                self._states.setdefault(path, RootState()).pending = True
        if due:
            self.on_changed(due)
        return due
