"""The long-lived daemon's lifecycle: the lock, the socket, signals, the parts, the
periodic work, and stopping. The model is not loaded here: it runs in a worker process
started when a picture needs it and ended when idle (``model.client``).

The parts, each owning what it changes:
  * the engine (store, index, model): the one façade every part uses;
  * the scheduler (``scheduler``): thread fs-index, the store's only writer, runs the
    start-up reconcile, then file events and requests, one typed task at a time;
  * the watched folders (``indexing.roots``: their state behind one lock) with thread
    fs-roots, which notices one renamed away, replaced or (un/re)mounted; the watcher
    (watchdog's threads and fs-debounce: file events -> settled operations);
  * the verbs (``api``), answered by the socket server (fs-accept / fs-client threads:
    queries never wait for indexing);
  * the self-check (``selfcheck``, thread self-check): match quality measured in idle time;
  * the upgrade to a newly configured extractor (``upgrade``: thread fs-upgrade), while
    the old index answers;
  * main thread: signals, periodic work (saves, rescans, the duplicate pre-check, starting
    the self-check), stop.

SIGTERM: stop accepting, let the indexer commit its current batch, save the
index atomically, exit (well inside systemd's 10 s; target 5 s).

A store SQLite finds damaged stops the daemon with exit code 6 and recovery steps (the
file is left as it is); a full disk pauses indexing, not searching (see ``diskspace``); a
locked or read-only store makes indexing wait (see ``storeaccess``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from findsimilar import __version__, systemd
from findsimilar.config import Config, default_pictures_dir, standard_data_dir
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.indexing.roots import Roots
from findsimilar.daemon.indexing.watcher import Op, Watcher
from findsimilar.daemon.model.memory import give_back_if_quiet
from findsimilar.daemon.service.api import DaemonVerbs
from findsimilar.daemon.service.follow import Announcer, DupesFeed
from findsimilar.daemon.service.logs import flush_repeats
from findsimilar.daemon.service.metrics import SearchTimes
from findsimilar.daemon.service.scheduler import (
    Announce,
    ApplyEvents,
    Precheck,
    Reconcile,
    Scheduler,
)
from findsimilar.daemon.service.selfcheck import SelfCheck
from findsimilar.daemon.service.server import SocketServer, bind_unix_socket
from findsimilar.daemon.service.status import StatusReport
from findsimilar.daemon.service.upgrade import Upgrade
from findsimilar.daemon.service.work import Listings, Work
from findsimilar.daemon.storage.diskspace import DiskFull
from findsimilar.daemon.storage.storeaccess import StoreAccess
from findsimilar.errors import EXIT_DAEMON_RUNNING, FindSimilarError, StoreError, store_damage

if TYPE_CHECKING:
    from findsimilar.daemon.service.notify import Notifier

__all__ = ["AlreadyRunning", "Daemon"]

log = logging.getLogger(__name__)

SAVE_EVERY = 30.0  # seconds between saves of a changed index (a crash loses nothing)
# Requests that are no work for the daemon: they never make the self-check yield.
_QUIET_COMMANDS = frozenset({"status", "ping", "dupes_follow", "watch_list", "self_check"})


class AlreadyRunning(FindSimilarError):
    exit_code = EXIT_DAEMON_RUNNING


class Daemon:
    """One per data dir (enforced by a lock file)."""

    def __init__(self, config: Config, *, listen_socket: socket.socket | None = None,
                 idle_exit: float | None = None) -> None:
        self.config = config
        self.listen_socket = listen_socket
        # Exit after this many idle seconds, but only with no folder to watch.
        self.idle_exit = idle_exit
        self.stopping = threading.Event()
        self.disk = DiskFull(config.data_dir)
        self.access = StoreAccess(config.store_path)
        self.scheduler = Scheduler(config.store_path, self.disk, self.access, self.stopping,
                                   on_damage=self._store_damaged)
        # How each watched folder is followed, and whether its path still holds it.
        self.folders = Roots(self.roots, self._roots_changed)
        self.engine: Engine | None = None
        self.watcher: Watcher | None = None
        self._last_activity = time.monotonic()
        self._last_query = 0.0  # the last request that is work (not status: _QUIET_COMMANDS)
        self.selfcheck: SelfCheck | None = None
        self._last_save = 0.0
        self._last_rescan = time.monotonic()
        self._lock_fd: int | None = None
        self._owns_socket_file = False
        self._fatal: StoreError | None = None  # the store is damaged: exit with it
        self.notifier: Notifier | None = None  # desktop notifications (config: notify)
        self.startup = Reconcile()  # the start-up reconcile (the first `index` is told)
        self.upgrade: Upgrade | None = None  # to the configured extractor, if need be

    # -- lifecycle ---------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or a ``stop`` command; returns the exit code."""
        self._take_lock()
        try:
            sock = self.listen_socket or self._bind()
            self.engine = engine = self._open_engine()
            self.watcher = Watcher(self._enqueue_ops,
                                   settle_after_close=self.config.settle_after_close,
                                   settle_quiet=self.config.settle_quiet,
                                   on_watch_failed=self.folders.set_rescan,
                                   on_root_gone=self._root_gone)
            work, verbs = self._assemble(engine, self.watcher)
            self.upgrade = Upgrade(engine, self.config, self.scheduler, self.stopping,
                                   self.disk)
            engine.upgrade_status = self.upgrade.status
            server = SocketServer(sock, self._handle(verbs),
                                  on_client_done=engine.release_reader)
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stopping.set())
            # Queued before the first client is served, so that tasks run in the order
            # clients see: the start-up reconcile, then whatever they ask for.
            self.scheduler.put(self.startup)
            server.start()
            self.watcher.start()
            self.scheduler.start(work)
            self.upgrade.start()  # (after the start-up reconcile, which it waits for)
            threading.Thread(target=self._watch_roots, name="fs-roots", daemon=True).start()
            systemd.notify_ready(f"serving on {self.config.socket_path}")
            log.info("findsimilar %s serving %s (data in %s)", __version__,
                     self.config.socket_path, self.config.data_dir)
            while not self.stopping.wait(timeout=0.5):
                self._tick(work)
            code = self._shutdown(server)
            if self._fatal is not None:
                raise self._fatal  # the command line prints it and exits with its code
            return code
        finally:
            self._release()

    def _assemble(self, engine: Engine, watcher: Watcher) -> tuple[Work, DaemonVerbs]:
        """The indexing work, the status report and the verbs, wired to each other."""
        listings = Listings(engine)
        if self.config.notify:
            from findsimilar.daemon.service.notify import Notifier

            self.notifier = Notifier()
        feed = DupesFeed(always=self.notifier is not None)
        announcer = Announcer(feed, engine.groups_around,
                              lambda paths: self.scheduler.put(Announce(paths)), self.notifier)
        self.selfcheck = SelfCheck(
            self.config, engine, idle=lambda: self.scheduler.idle and not self.stopping.is_set(),
            last_busy=lambda: max(self._last_query, self.scheduler.last_work))
        report: list[StatusReport] = []  # (the work's status line needs the report)
        searches = SearchTimes()  # timed by the verbs, shown by the status
        work = Work(engine, watcher, self.folders, self.roots,
                    progress=self.scheduler.progress, stopping=self.stopping,
                    disk=self.disk, access=self.access, listings=listings,
                    more_waiting=self.scheduler.has_waiting,
                    status_line=lambda: report[0].line(), announcer=announcer)
        report.append(StatusReport(self.config, engine, scheduler=self.scheduler, work=work,
                                   listings=listings, folders=self.folders, watcher=watcher,
                                   roots=self.roots, disk=self.disk, access=self.access,
                                   notifier=self.notifier, searches=searches,
                                   selfcheck=self.selfcheck))
        verbs = DaemonVerbs(self.config, engine, listings, scheduler=self.scheduler,
                            folders=self.folders, watcher=watcher, roots=self.roots,
                            status=report[0], stopping=self.stopping, disk=self.disk,
                            on_damage=self._store_damaged, feed=feed, searches=searches,
                            startup=self.startup, selfcheck=self.selfcheck)
        return work, verbs

    def _handle(self, verbs: DaemonVerbs) -> Callable[..., dict[str, Any]]:
        def handle(message: dict[str, Any], client_gone: Callable[[], bool]) -> dict:
            self._last_activity = time.monotonic()
            if message.get("command") not in _QUIET_COMMANDS:
                self._last_query = self._last_activity
            return verbs.handle(message, client_gone)
        return handle

    def _open_engine(self) -> Engine:
        """The engine; a store that SQLite finds damaged while the index is checked
        against it raises StoreError (with the recovery steps), not a traceback."""
        try:
            return Engine(self.config)
        except Exception as exc:
            damage = store_damage(self.config.store_path, exc)
            if damage is None:
                raise
            raise damage from exc

    def _store_damaged(self, error: StoreError) -> None:
        """SQLite found the store damaged while running: stop, and exit with ``error``."""
        if self._fatal is None:
            log.error("the store is damaged: stopping")
            self._fatal = error
        self.stopping.set()

    def stop(self) -> None:
        self.stopping.set()

    def _take_lock(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        fd, writable = _open_lock_file(self.config.data_dir / "daemon.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(
                f"a findsimilar daemon (pid {pid or '?'}) already serves "
                f"{self.config.data_dir}") from None
        if writable:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _bind(self) -> socket.socket:
        sock = bind_unix_socket(self.config.socket_path)
        self._owns_socket_file = True
        return sock

    def _release(self) -> None:
        if self._owns_socket_file:
            with contextlib.suppress(OSError):
                self.config.socket_path.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _shutdown(self, server: SocketServer) -> int:
        assert self.engine is not None and self.watcher is not None
        systemd.notify_stopping()
        log.info("stopping")
        server.close()
        self.watcher.stop()
        if self.selfcheck is not None:
            self.selfcheck.stop()
        if self.upgrade is not None:
            self.upgrade.stop()
        if self.notifier is not None:
            self.notifier.close()
        if not self.scheduler.quit(timeout=4):
            log.warning("indexer still busy at shutdown; its last batch is lost, not damaged")
        try:
            self.engine.close()
        except Exception as exc:  # the store is committed; the index is repaired from it
            why = "the disk is full" if self.disk.caused(exc) else self.access.classify(exc)
            if why is None:
                raise
            log.error("could not save the index (%s); it is brought in step with the store "
                      "at the next start", why)
        log.info("stopped")
        return 0

    # -- watched folders -----------------------------------------------------------------
    def roots(self) -> list[dict[str, Any]]:
        """The watched folders as chosen (store rows), or the XDG pictures folder for the
        standard data dir while the user has chosen none."""
        assert self.engine is not None
        roots = self.engine.watched_roots()
        if (not roots and self.config.data_dir == standard_data_dir()
                and not self.engine.setting("roots_configured")):
            pictures = default_pictures_dir()
            return [{"path": str(pictures), "dev": None, "excludes": [], "default": True}]
        return roots

    def _enqueue_ops(self, ops: list[Op]) -> None:
        self.scheduler.put(ApplyEvents(ops))

    def _root_gone(self, root: str) -> None:
        """watchdog saw the watched folder itself deleted (its watch is over): reconcile
        the path, which watches whatever folder is there now."""
        self.scheduler.put(Reconcile([root]))

    def _roots_changed(self, paths: list[str]) -> None:
        """These watched paths no longer hold the folder that is watched (or came back):
        drop their watches at once, so that no event of a folder moved elsewhere is taken
        for one of the path, and reconcile them (which decides what they hold now)."""
        assert self.watcher is not None
        for path in paths:
            self.watcher.remove_root(path)
        self.scheduler.put(Reconcile(list(paths)))

    def _watch_roots(self) -> None:
        """Thread fs-roots: compare each watched path with the folder it holds, twice a
        second (a stat per folder; a hung network mount stalls only this thread)."""
        while not self.stopping.wait(0.5):
            self._survive(self.folders.check, "checking the watched folders")

    # -- periodic work (main thread) -------------------------------------------------------
    def _tick(self, work: Work) -> None:
        self._survive(lambda: self._periodic(work), "periodic work")
        flush_repeats()

    def _survive(self, task: Callable[[], object], what: str) -> None:
        """Run ``task``; a failure is logged, never fatal, but for a damaged store, which
        stops the daemon."""
        try:
            task()
        except Exception as exc:
            damage = store_damage(self.config.store_path, exc)
            if damage is not None:
                self._store_damaged(damage)
            else:
                log.exception("%s failed", what)

    def _periodic(self, work: Work) -> None:
        """Give memory back; resume indexing once disk space is freed; exit when idle with
        nothing to watch (if asked to); keep the index in its layout and saved; pre-check
        duplicates and run the self-check when idle; rescan folders inotify could not
        watch."""
        assert self.engine is not None
        now = time.monotonic()
        give_back_if_quiet()  # what big pictures or an indexing pass left free
        if self.disk.space_back():
            self.disk.resume()
            self.scheduler.put(Reconcile())  # catches up on what was skipped
        if self._idle_for(now) > (self.idle_exit or float("inf")) and not self.roots():
            log.info("idle for %.0f s with no folder to watch: exiting", self.idle_exit)
            self.stopping.set()
            return
        self.engine.maintain_index()
        if self.engine.dirty and now - self._last_save >= SAVE_EVERY:
            self._last_save = now
            work.save_index()
        if self._precheck_due(work, now):
            self.scheduler.put(Precheck(self.scheduler.generation))
        if self.selfcheck is not None and not self.disk.problem:
            self.selfcheck.maybe_start()  # in idle time only; it yields to any work
        if now - self._last_rescan >= self.config.rescan_interval:
            self._last_rescan = now
            due = self.folders.paths("rescan")  # not watched by inotify: rescanned instead
            if due:
                self.scheduler.put(Reconcile(due))

    def _idle_for(self, now: float) -> float:
        """Seconds since the last request or task (0 while there is work)."""
        if not self.scheduler.idle or (self.upgrade is not None and self.upgrade.busy):
            return 0.0
        return now - max(self._last_activity, self.scheduler.last_work)

    def _precheck_due(self, work: Work, now: float) -> bool:
        after = self.config.precheck_after
        return bool(after and work.prechecked != self.scheduler.generation
                    and not self.disk.problem and self.scheduler.idle
                    and now - self.scheduler.last_work >= after)


def _open_lock_file(path: Path) -> tuple[int, bool]:
    """(descriptor to flock, whether the pid can be written in it). In a read-only data
    dir the lock file is locked read-only (flock needs no write access), or, if it was
    never made, the folder itself."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600), True
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    try:
        return os.open(path, os.O_RDONLY), False
    except FileNotFoundError:
        return os.open(path.parent, os.O_RDONLY), False
