"""What the indexing thread's tasks do: reconcile watched folders, apply file events,
index paths, pre-check duplicate candidates, save the index.

Everything here runs on the scheduler's thread (the store's one writer), through the
Engine's façade; the watched folders' state is :class:`~findsimilar.daemon.indexing.
roots.Roots`'s.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from findsimilar import systemd
from findsimilar.daemon.dupes.grouping import DupesOptions
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.indexing.indexer import IndexSummary
from findsimilar.daemon.indexing.roots import Roots, availability, identify, mount_points
from findsimilar.daemon.indexing.watcher import Delete, Move, Op, Upsert, Watcher
from findsimilar.daemon.service.follow import Announcer
from findsimilar.daemon.service.scheduler import Progress
from findsimilar.daemon.storage.diskspace import DiskFull
from findsimilar.daemon.storage.storeaccess import StoreAccess
from findsimilar.text import is_under

__all__ = ["Listings", "Work", "excludes_for"]

log = logging.getLogger(__name__)

RootsFn = Callable[[], list[dict[str, Any]]]


class Listings:
    """The `dupes` listings running now, each with its pixel-check progress (``status``
    shows them under ``dupes_progress``; "background": the daemon's own pre-check)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # By run, not by value: two listings' progress dicts may be equal.
        self._runs: dict[int, dict[str, int]] = {}
        self._next = itertools.count()

    def run(self, options: DupesOptions, should_stop: Callable[[], bool],
            also: Callable[[int, int], None] | None = None, *,
            background: bool = False) -> dict[str, Any]:
        """``engine.duplicates`` with its progress kept for ``status`` (and passed to
        ``also``: a progress bar in this process)."""
        progress = {"done": 0, "total": 0, **({"background": 1} if background else {})}
        key = next(self._next)  # count(): atomic under the GIL, as are dict set/pop
        self._runs[key] = progress

        def report(done: int, total: int) -> None:
            progress.update(done=done, total=total)
            if also is not None:
                also(done, total)

        try:
            return self.engine.duplicates(options, report, should_stop=should_stop)
        finally:
            del self._runs[key]

    def progress(self) -> list[dict[str, int]]:
        return [dict(p) for p in list(self._runs.values())]


class Work:
    """The indexing thread's work (see the module docstring)."""

    def __init__(self, engine: Engine, watcher: Watcher, folders: Roots, roots: RootsFn, *,
                 progress: Progress, stopping: threading.Event, disk: DiskFull,
                 access: StoreAccess, listings: Listings,
                 more_waiting: Callable[[], bool], status_line: Callable[[], str],
                 announcer: Announcer | None = None) -> None:
        self.engine = engine
        self.watcher = watcher
        self.folders = folders
        self.roots = roots
        self.progress = progress
        self.stopping = stopping
        self.disk = disk
        self.access = access
        self.listings = listings
        self.more_waiting = more_waiting  # a task is queued: the pre-check yields to it
        self.status_line = status_line
        self.announcer = announcer  # duplicates of arriving photos (``follow``)
        self.extracted = 0  # pictures through the model since start (a move adds none)
        self.prechecked = -1  # the generation whose duplicate candidates were all checked

    # -- indexing ------------------------------------------------------------------------
    def index(self, paths: list[str], state: str, exclude: list[str] | None = None,
              explicit: bool = True, save: bool = True, rehash: bool = False,
              skip: list[str] | None = None) -> IndexSummary:
        self.progress.begin(state)
        summary = self.engine.reindex(paths, self.progress.advance,
                                      should_stop=self.stopping.is_set,
                                      exclude=exclude or (), explicit_files=explicit,
                                      rehash=rehash, skip=skip or ())
        self.extracted += summary.extracted
        if save:
            self.save_index()  # a full disk or a read-only data dir is said, not fatal
        systemd.notify_status(self.status_line())
        return summary

    def save_index(self) -> None:
        """Save the index; a full disk or an unwritable data dir is a problem in status
        (the index is kept in memory and saved once it can be), not an error."""
        try:
            self.engine.save()
        except Exception as exc:
            if self.disk.caused(exc):
                self.disk.report("saving the index")
                return
            why = self.access.classify(exc)
            if why is None:
                raise
            self.access.report("save", f"{why} (the index is kept in memory and saved "
                                       "once it can be)")
            return
        self.access.resume("save")

    # -- watched folders -----------------------------------------------------------------
    def reconcile(self, paths: list[str] | None, rehash: bool) -> dict[str, Any]:
        """Bring watched folders (all, or ``paths``) in step with the disk: each is
        watched as the folder its path holds now and scanned; paths below a watched
        folder (or indexed with `index`) are scanned with their folder's excludes."""
        done: dict[str, Any] = {}
        roots = self.roots()
        self._drop_unchosen({r["path"] for r in roots})
        for root in roots:
            path = root["path"]
            if paths is not None and path not in paths:
                continue
            self.folders.reconciling(path)
            if not self.follow(root):
                continue
            summary = self.index([path], "reconciling", exclude=root.get("excludes", []),
                                 rehash=rehash)
            done[path] = summary.as_dict()
            log.info("reconciled %s: %d new, %d changed, %d moved, %d removed, %d failed",
                     path, summary.new, summary.changed, summary.moved, summary.removed,
                     len(summary.failed))
        chosen = {r["path"] for r in roots}
        for path in paths or []:
            if path not in chosen and os.path.lexists(path) and self.folders.intact(path):
                summary = self.index([path], "reconciling", rehash=rehash,
                                     exclude=list(excludes_for(path, roots)))
                done[path] = summary.as_dict()
        return done

    def _drop_unchosen(self, chosen: set[str]) -> None:
        """Stop following paths no longer chosen (the default folder once another is
        chosen), so that what is followed is exactly what `watch list` shows."""
        followed = set(self.watcher.watching()).union(
            *(self.folders.paths(mode) for mode in ("watch", "rescan", "unavailable")))
        for path in sorted(followed - chosen):
            log.info("no longer watching %s (not a watched folder now)", path)
            self.watcher.remove_root(path)
            self.folders.forget(path)

    def follow(self, root: dict[str, Any]) -> bool:
        """Watch ``root``'s path as the folder it holds now; False (and the folder marked
        unavailable, its photos kept) if it holds none, or an empty mount point."""
        path = root["path"]
        mounts = mount_points()
        now = identify(path, mounts)
        why = availability(root, now, mounts)
        if why is not None or now is None:
            if self.folders.set_unavailable(path, why or "not there"):
                log.warning("watched folder %s: %s", path, why)
            self.watcher.remove_root(path)
            return False
        watched = self.folders.state(path).watched
        if watched is not None and watched[:2] != now[:2]:
            self.watcher.remove_root(path)  # its watch followed the folder that was here
        if not root.get("default") and (root.get("dev"), root.get("ino"),
                                         root.get("mount")) != now:
            if root.get("ino") is not None:
                log.warning("watched folder %s holds another folder now (recreated or "
                            "remounted): scanning it", path)
            self.engine.set_root_identity(path, now)
        # Before the scan; a root inotify could not watch is tried again (the limit may
        # have been raised since, as the log advised).
        watching = self.watcher.add_root(path, root.get("excludes", []))
        self.folders.set_watching(path, now, rescan_why=None if watching else (
            self.folders.state(path).why or "inotify could not watch it"))
        return True

    # -- file events ---------------------------------------------------------------------
    def apply(self, ops: list[Op]) -> int:
        """Apply settled file events. Events are hints of where to look, not facts: one
        whose watched folder is gone or replaced is dropped (that folder's reconcile
        covers it), and a move or deletion is applied only if the disk agrees."""
        upserts: list[str] = []
        recheck: list[str] = []
        intact: dict[str | None, bool] = {}
        for op in ops:
            where = op.src if isinstance(op, Move) else op.path
            root = self.folders.root_of(where)
            if root not in intact:
                intact[root] = self.folders.intact(where)
            if not intact[root]:
                continue
            if isinstance(op, Upsert):
                upserts.append(op.path)
                continue
            if upserts:  # keep the order: changes before this move/delete happen first
                self._index_changed(upserts)
                upserts = []
            recheck += self._move(op) if isinstance(op, Move) else self._delete(op)
        # Moved and deleted paths are looked at once more, as they are now, at the end of
        # the batch (not before: a file renamed twice is at neither earlier name).
        self._index_changed(upserts + recheck)
        if self.announcer is not None:  # duplicates of what arrived, for whoever listens
            self.announcer.changed(list(dict.fromkeys(
                op.dst if isinstance(op, Move) else op.path for op in ops
                if not isinstance(op, Delete))))
        # No save here: rewriting the whole index file per event costs ~46 ms at 10k
        # photos under the lock searches need. The daemon saves within 30 s; a crash
        # before that is repaired from SQLite at the next start.
        return len(ops)

    def _move(self, op: Move) -> list[str]:
        """Re-point the rows of a renamed file or folder; returns the paths to look at."""
        if os.path.lexists(op.src):
            # Something is at the source: the event does not describe this path (a folder
            # moved out of the tree is still reported under its old name by its watch),
            # or the name was reused at once. Both paths are taken as they are.
            return [op.src, op.dst]
        self.engine.move(op.src, op.dst, keep_facts=op.settled)
        return [op.dst]  # a folder's files not known yet (mid-scan renames) are found

    def _delete(self, op: Delete) -> list[str]:
        if os.path.lexists(op.path):
            return [op.path]  # something is there: not a deletion of this path
        self.engine.forget([op.path])
        return []

    def _index_changed(self, paths: list[str]) -> None:
        if not paths:
            return
        present = [p for p in dict.fromkeys(paths) if os.path.lexists(p)]
        gone = [p for p in dict.fromkeys(paths) if not os.path.lexists(p)]
        if gone:
            self.engine.forget(gone)
        roots = self.roots()
        by_excludes: dict[tuple[str, ...], list[str]] = {}
        for p in present:  # a folder moved in is scanned: its root's excludes apply
            by_excludes.setdefault(excludes_for(p, roots), []).append(p)
        for excludes, group in by_excludes.items():
            self.index(group, "indexing", exclude=list(excludes), explicit=False,
                       save=False)

    # -- duplicates ----------------------------------------------------------------------
    def announce(self, paths: list[str]) -> dict[str, Any]:
        """The duplicates around ``paths`` (photos that arrived), for `dupes --follow` and
        the desktop notification. Yields to any other task."""
        if self.announcer is None:
            return {}
        return self.announcer.run(paths, lambda: self.stopping.is_set() or self.more_waiting())

    def precheck(self, generation: int) -> dict[str, Any]:
        """Pixel-check the library's new duplicate candidates while nothing else is to be
        done: the next `dupes` answers from the verdict cache. Yields to any task."""
        # Its progress (pairs, not photos) shows under dupes_progress, not as queued work.
        self.progress.begin("checking duplicates")

        def interrupted() -> bool:
            return self.stopping.is_set() or self.more_waiting()

        result = self.listings.run(DupesOptions(), interrupted, background=True)
        stats = dict(result["stats"])  # type: ignore[call-overload]
        if not interrupted():
            self.prechecked = generation
            log.info("duplicate candidates decided: %s pairs, %s needing a verdict, %s "
                     "checked now", stats.get("candidate_pairs", 0),
                     stats.get("pairs_checked", 0), stats.get("verified_now", 0))
        return stats


def excludes_for(path: str, roots: list[dict[str, Any]]) -> tuple[str, ...]:
    """The user's exclude globs of the watched roots that hold ``path``."""
    return tuple(dict.fromkeys(
        g for r in roots if is_under(path, r["path"]) for g in r.get("excludes", [])))
