"""Follow watched folders with watchdog and turn raw events into settled operations.

Handlers are thin: they only record events. A debouncer thread turns them into
ordered operations for the indexer:

* ``Move(src, dst)`` and ``Delete(path)`` are emitted at once (they are cheap
  and never touch the model); a pending change under ``src`` follows the move.
* ``Upsert(path)`` is emitted once the file is complete: quiet for
  ``settle_after_close`` seconds after a close-write event, or quiet for
  ``settle_quiet`` seconds with no close seen (a writer that never closes). A
  burst of events for one file becomes one upsert.

A root whose inotify watches cannot be set up (``fs.inotify.max_user_watches``
exhausted) is reported through ``on_watch_failed`` so the daemon can rescan it
periodically instead.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from watchdog.events import (
    DirCreatedEvent,
    DirModifiedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
    FileSystemMovedEvent,
)
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from findsimilar.daemon.indexing.scanner import is_excluded_dir
from findsimilar.text import is_under

__all__ = ["Delete", "Move", "Op", "Upsert", "Watcher"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Move:
    src: str
    dst: str
    # No change of the file was pending when it moved: its stored facts may follow it.
    settled: bool = True


@dataclass(frozen=True)
class Delete:
    path: str


@dataclass(frozen=True)
class Upsert:
    path: str  # a file, or a folder that appeared (moved in): scanned recursively


Op = Move | Delete | Upsert
Sink = Callable[[list[Op]], None]


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher, root: str, excludes: list[str]) -> None:
        self.watcher, self.root, self.excludes = watcher, root, excludes
        self.retired = False  # its watch is dropped: events still in flight are not ours

    def _excluded(self, path: str) -> bool:
        rel = os.path.relpath(path, self.root)
        if rel.startswith(".."):
            return True
        parts = rel.split(os.sep)
        return any(is_excluded_dir(p, self.excludes) for p in parts[:-1]) or (
            is_excluded_dir(parts[-1], self.excludes) and os.path.isdir(path))

    def on_any_event(self, event: FileSystemEvent) -> None:
        if self.retired or isinstance(event, (FileOpenedEvent, FileClosedNoWriteEvent,
                                              DirModifiedEvent)):
            return
        src = os.fsdecode(event.src_path)
        if isinstance(event, FileSystemMovedEvent):
            dst = os.fsdecode(event.dest_path)
            src_out, dst_out = self._excluded(src), self._excluded(dst)
            if src_out and dst_out:
                return
            if dst_out:
                self.watcher.record_delete(src)
            elif src_out:
                self.watcher.record_change(dst, closed=True)
            else:
                self.watcher.record_move(src, dst, is_dir=isinstance(event, DirMovedEvent))
            return
        if src.rstrip("/") == self.root.rstrip("/"):
            # The watched folder itself (its own "." would count as hidden): deleted, its
            # watch is over, even if a new folder (maybe with the same inode number) is
            # already at the path.
            if event.event_type == "deleted":
                self.watcher.report_root_gone(self.root)
            return
        if self._excluded(src):
            return
        if event.event_type == "deleted":
            self.watcher.record_delete(src)
        elif isinstance(event, DirCreatedEvent):
            self.watcher.record_change(src, closed=True)
        elif isinstance(event, FileAttribEvent):
            self.watcher.record_attrib(src)
        elif not event.is_directory:
            self.watcher.record_change(src, closed=isinstance(event, FileClosedEvent))


class Watcher:
    """Watches roots; emits settled operations to ``sink`` from its own thread."""

    def __init__(self, sink: Sink, *, settle_after_close: float = 0.2,
                 settle_quiet: float = 2.0,
                 on_watch_failed: Callable[[str, str], None] | None = None,
                 on_root_gone: Callable[[str], None] | None = None) -> None:
        self.sink = sink
        self.settle_after_close = settle_after_close
        self.settle_quiet = settle_quiet
        self.on_watch_failed = on_watch_failed or (lambda root, why: None)
        self.on_root_gone = on_root_gone or (lambda root: None)
        self._observer = Observer()
        # add_root and remove_root come from the indexing thread and fs-roots.
        self._roots_lock = threading.RLock()
        self._watches: dict[str, ObservedWatch] = {}
        self._handlers: dict[str, _Handler] = {}
        self._dirty: dict[str, tuple[float, bool]] = {}  # path -> (last event, closed)
        self._gone: set[str] = set()  # roots whose watched folder was deleted
        self._ready: list[Op] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fs-debounce", daemon=True)

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> None:
        self._observer.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._observer.stop()
        self._observer.join(timeout=5)
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def add_root(self, root: str, excludes: Iterable[str] = ()) -> bool:
        """Start watching ``root`` recursively; False if inotify could not watch all of
        it (see log): then none of it is watched."""
        with self._roots_lock:
            return self._add_root(root, list(excludes))

    def _add_root(self, root: str, excludes: list[str]) -> bool:
        with self._lock:
            gone = root in self._gone
        if gone:  # its watch ended with the folder (a new one may have its inode number)
            self.remove_root(root)
        if root in self._watches:
            with contextlib.suppress(KeyError):  # `watch add` again may change them
                self._handlers[root].excludes = excludes
            return True
        handler = _Handler(self, root, excludes)
        try:
            watch = self._observer.schedule(handler, root, recursive=True)
        except OSError as exc:
            return self._watch_failed(root, _watch_error(exc))
        # watchdog skips, without a word, subfolders it cannot watch; once the watch
        # limit is reached that is most of a big tree. Ask the kernel what it watches.
        missing = _unwatched_folders(root, excludes) if self._observer.is_alive() else 0
        if missing:
            with contextlib.suppress(KeyError, OSError):
                self._observer.unschedule(watch)  # give the watches it got back to others
            return self._watch_failed(root, f"{missing} folders could not be watched: "
                                      + _watch_error(OSError(errno.ENOSPC, "")))
        self._watches[root] = watch
        self._handlers[root] = handler
        return True

    def _watch_failed(self, root: str, why: str) -> bool:
        log.error("cannot watch %s: %s; it will be rescanned every few minutes instead",
                  root, why)
        self.on_watch_failed(root, why)
        return False

    def remove_root(self, root: str) -> None:
        """Stop watching ``root``; its handler ignores whatever its watch still reports,
        and changes seen under it but not settled are forgotten."""
        with self._roots_lock:
            watch = self._watches.pop(root, None)
            handler = self._handlers.pop(root, None)
            with self._lock:
                self._gone.discard(root)
            if handler is not None:
                handler.retired = True
            if watch is not None:
                with contextlib.suppress(KeyError, OSError):
                    self._observer.unschedule(watch)
        with self._lock:
            self._forget(root)

    def watching(self) -> list[str]:
        return sorted(self._watches)

    def pending(self) -> int:
        """Changes seen but not yet settled."""
        with self._lock:
            return len(self._dirty) + len(self._ready)

    # -- recording (watchdog's threads) -------------------------------------------------
    def record_change(self, path: str, *, closed: bool) -> None:
        with self._lock:
            # A write after a close starts a new wait: only the last event counts.
            self._dirty[path] = (time.monotonic(), closed)
        self._wake.set()

    def record_attrib(self, path: str) -> None:
        """chmod/utime after a close (shutil.copy, cp -p, file managers) keeps the close:
        it must not turn a finished copy into a 2 s wait. Alone, it counts as closed."""
        with self._lock:
            _, closed = self._dirty.get(path, (0.0, True))
            self._dirty[path] = (time.monotonic(), closed)
        self._wake.set()

    def record_delete(self, path: str) -> None:
        with self._lock:
            self._forget(path)
            self._ready.append(Delete(path))
        self._wake.set()

    def record_move(self, src: str, dst: str, *, is_dir: bool) -> None:
        with self._lock:
            pending = [p for p in self._dirty if is_under(p, src)]
            for path in pending:
                self._dirty[dst + path[len(src):]] = self._dirty.pop(path)
            self._ready.append(Move(src, dst, settled=not pending))
        self._wake.set()

    def report_root_gone(self, root: str) -> None:
        """watchdog's thread: the watched folder itself was deleted. Its handler takes no
        more events; the watch is replaced at the next add_root (not from here: this
        thread holds watchdog's lock, add_root takes ours and then watchdog's)."""
        log.warning("watched folder %s was deleted (or unmounted)", root)
        with self._lock:
            self._gone.add(root)
            handler = self._handlers.get(root)
        if handler is not None:
            handler.retired = True
        self.on_root_gone(root)

    def _forget(self, path: str) -> None:
        for p in [p for p in self._dirty if is_under(p, path)]:
            del self._dirty[p]

    # -- debouncing ------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=0.1)
            self._wake.clear()
            ops = self._collect(time.monotonic())
            if ops:
                try:
                    self.sink(ops)
                except Exception:  # the sink's problem must not kill the watcher
                    log.exception("could not queue %d file events", len(ops))

    def _collect(self, now: float) -> list[Op]:
        with self._lock:
            ops, self._ready = self._ready, []
            settled = [p for p, (last, closed) in self._dirty.items()
                       if now - last >= (self.settle_after_close if closed
                                         else self.settle_quiet)]
            for p in settled:
                del self._dirty[p]
        return ops + [Upsert(p) for p in sorted(settled)]


def _unwatched_folders(root: str, excludes: list[str]) -> int:
    """How many folders under ``root`` (not excluded, readable) have no inotify watch in
    this process; 0 when ``/proc`` cannot tell."""
    watched = _inotify_watched_inodes()
    if watched is None:
        return 0
    missing = 0
    for folder, dirnames, _ in os.walk(root):
        dirnames[:] = [d for d in dirnames if not is_excluded_dir(d, excludes)
                       and not os.path.islink(os.path.join(folder, d))]
        try:
            # The root is watched as it is named (a symlink is not followed).
            inode = (os.lstat(folder) if folder == root else os.stat(folder)).st_ino
        except OSError:
            continue  # gone meanwhile
        if inode not in watched and os.access(folder, os.R_OK | os.X_OK):
            missing += 1
    return missing


def _inotify_watched_inodes() -> set[int] | None:
    """Inodes watched by this process's inotify instances (``/proc/self/fdinfo``)."""
    try:
        fds = os.listdir("/proc/self/fdinfo")
    except OSError:
        return None
    inodes: set[int] = set()
    for fd in fds:
        try:
            with open(f"/proc/self/fdinfo/{fd}") as fh:
                for line in fh:  # "inotify wd:1 ino:2a3 sdev:800001 mask:..."
                    if line.startswith("inotify wd:") and " ino:" in line:
                        inodes.add(int(line.split(" ino:", 1)[1].split(None, 1)[0], 16))
        except (OSError, ValueError):
            continue
    return inodes


def _watch_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return ("the inotify watch limit is exhausted (raise it with "
                "`sysctl fs.inotify.max_user_watches=524288`)")
    if exc.errno == errno.EMFILE:
        return ("too many inotify instances (raise `fs.inotify.max_user_instances`)")
    return exc.strerror or str(exc)
