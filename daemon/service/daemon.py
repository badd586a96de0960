"""The long-lived daemon: watched folders, background indexing, socket API (the model runs
in a worker process started when a picture needs it: ``model.client``).

Threads:
  * main: signals and shutdown;
  * fs-accept / fs-client: the socket server (queries never wait for indexing,
    except for one model batch when a query needs the model);
  * fs-index: the only writer; runs the start-up reconcile, then watcher
    operations, in order;
  * watchdog's threads and fs-debounce: file events -> settled operations;
  * fs-roots: notices a watched folder renamed away, replaced or (un/re)mounted (roots).

SIGTERM: stop accepting, let the indexer commit its current batch, save the
index atomically, exit (well inside systemd's 10 s; target 5 s).

A store SQLite finds damaged stops the daemon with exit code 6 and recovery steps (the
file is left as it is); a full disk pauses indexing, not searching (see ``diskspace``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from findsimilar import __version__, systemd
from findsimilar.config import Config, default_pictures_dir, standard_data_dir
from findsimilar.daemon.dupes.grouping import DupesOptions
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.indexing.indexer import IndexSummary
from findsimilar.daemon.indexing.roots import Roots, availability, identify, mount_points
from findsimilar.daemon.indexing.watcher import Delete, Move, Op, Upsert, Watcher
from findsimilar.daemon.model.memory import give_back_if_quiet, give_back_soon
from findsimilar.daemon.service.commands import Commands, Rescan, Task
from findsimilar.daemon.service.logs import flush_repeats
from findsimilar.daemon.service.server import SocketServer, bind_unix_socket
from findsimilar.daemon.storage.diskspace import DiskFull, DiskFullError
from findsimilar.daemon.storage.storeaccess import StoreAccess
from findsimilar.errors import FindSimilarError, StoreError, store_damage
from findsimilar.text import is_under

__all__ = ["AlreadyRunning", "Daemon"]

log = logging.getLogger(__name__)


class AlreadyRunning(FindSimilarError):
    exit_code = 7


class _Stopped(Exception):
    """The daemon stops while a task waits for the store: the task is dropped (the
    start-up reconcile of the next run catches up on it)."""


@dataclass
class _Progress:
    state: str = "starting"
    done: int = 0
    total: int = 0
    started: float = 0.0
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=200))

    def rate(self) -> float:
        """Images per second over the last minute of progress."""
        now = time.monotonic()
        points = [(t, n) for t, n in self.recent if now - t < 60]
        if len(points) < 2 or points[-1][0] == points[0][0]:
            return 0.0
        return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


class Daemon(Commands):
    """One per data dir (enforced by a lock file); its socket commands are in ``commands``."""

    def __init__(self, config: Config, *, listen_socket: socket.socket | None = None,
                 idle_exit: float | None = None) -> None:
        self.config = config
        self.listen_socket = listen_socket
        # Exit after this many idle seconds, but only with no folder to watch.
        self.idle_exit = idle_exit
        self._last_activity = time.monotonic()
        self.engine: Engine | None = None
        self.started = time.time()
        self._tasks: queue.Queue[Task] = queue.Queue()
        self._stop = threading.Event()
        self._progress = _Progress()
        self._dupes_runs: list[dict[str, int]] = []  # list.append/remove: atomic under the GIL
        self._generation = 0  # counts finished indexing tasks
        self._last_work = time.monotonic()  # when the last task ended (queries do not count)
        self._prechecked = -1  # the generation whose duplicate candidates were all checked
        # How each watched folder is followed, and whether its path still holds it.
        self.folders = Roots(self.roots, self._roots_changed)
        self._last_rescan = time.monotonic()
        self._lock_fd: int | None = None
        # Since start: pictures through the model (a move must not add to it).
        self._totals = {"extracted": 0, "indexing_runs": 0}
        self._owns_socket_file = False
        self.watcher: Watcher | None = None
        self.disk = DiskFull(config.data_dir)
        self.access = StoreAccess(config.store_path)
        self._held: Task | None = None  # the task waiting for the store to be writable
        self._fatal: StoreError | None = None  # the store is damaged: exit with it

    # -- lifecycle ---------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT or a ``stop`` command; returns the exit code."""
        self._take_lock()
        try:
            sock = self.listen_socket or self._bind()
            self.engine = self._open_engine()
            server = SocketServer(sock, self.handle, on_client_done=self._close_reader)
            self.watcher = Watcher(self._enqueue_ops,
                                   settle_after_close=self.config.settle_after_close,
                                   settle_quiet=self.config.settle_quiet,
                                   on_watch_failed=self._watch_failed,
                                   on_root_gone=self._root_gone)
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())
            # Queued before the first client is served, so that tasks run in the order
            # clients see: the start-up reconcile, then whatever they ask for.
            self._tasks.put(Task("reconcile", Rescan()))
            server.start()
            self.watcher.start()
            worker = threading.Thread(target=self._work, name="fs-index", daemon=True)
            worker.start()
            threading.Thread(target=self._watch_roots, name="fs-roots", daemon=True).start()
            systemd.notify_ready(f"serving on {self.config.socket_path}")
            log.info("findsimilar %s serving %s (data in %s)", __version__,
                     self.config.socket_path, self.config.data_dir)
            while not self._stop.wait(timeout=0.5):
                self._tick()
            code = self._shutdown(server, worker)
            if self._fatal is not None:
                raise self._fatal  # the command line prints it and exits with its code
            return code
        finally:
            self._release()

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
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

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

    def _close_reader(self) -> None:
        """A client's thread ends: close its store connection (one thread per client,
        so otherwise every client left two file descriptors behind)."""
        if self.engine is not None:
            self.engine.release_reader()

    def _shutdown(self, server: SocketServer, worker: threading.Thread) -> int:
        assert self.engine is not None and self.watcher is not None
        systemd.notify_stopping()
        log.info("stopping")
        server.close()
        self.watcher.stop()
        self._tasks.put(Task("quit"))
        worker.join(timeout=4)
        if worker.is_alive():
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

    # -- roots -------------------------------------------------------------------
    def roots(self) -> list[dict[str, Any]]:
        assert self.engine is not None
        roots = self.engine.reader().roots()
        if (not roots and self.config.data_dir == standard_data_dir()
                and not self.engine.reader().get_setting("roots_configured")):
            pictures = default_pictures_dir()
            return [{"path": str(pictures), "dev": None, "excludes": [], "default": True}]
        return roots

    def _watch_failed(self, root: str, why: str) -> None:
        self.folders.set_rescan(root, why)

    def _root_gone(self, root: str) -> None:
        """watchdog saw the watched folder itself deleted (its watch is over): reconcile
        the path, which watches whatever folder is there now."""
        self._tasks.put(Task("reconcile", Rescan([root])))

    def _roots_changed(self, paths: list[str]) -> None:
        """These watched paths no longer hold the folder that is watched (or came back):
        drop their watches at once, so that no event of a folder moved elsewhere is taken
        for one of the path, and reconcile them (which decides what they hold now)."""
        assert self.watcher is not None
        for path in paths:
            self.watcher.remove_root(path)
        self._tasks.put(Task("reconcile", Rescan(list(paths))))

    def _watch_roots(self) -> None:
        """Thread fs-roots: compare each watched path with the folder it holds, twice a
        second (a stat per folder; a hung network mount stalls only this thread)."""
        while not self._stop.wait(0.5):
            self._survive(self.folders.check, "checking the watched folders")

    def _tick(self) -> None:
        """The main thread's periodic work."""
        self._survive(self._periodic, "periodic work")
        flush_repeats()

    def _survive(self, work: Callable[[], object], what: str) -> None:
        """Run ``work``; a failure is logged, never fatal, but for a damaged store, which
        stops the daemon."""
        try:
            work()
        except Exception as exc:
            damage = store_damage(self.config.store_path, exc)
            if damage is not None:
                self._store_damaged(damage)
            else:
                log.exception("%s failed", what)

    def _periodic(self) -> None:
        """Rescan roots that inotify could not watch; pick up roots that came back;
        resume indexing once disk space is freed; exit when idle with nothing to watch
        (if asked to)."""
        now = time.monotonic()
        give_back_if_quiet()  # what big pictures or an indexing pass left free
        if self.disk.space_back():
            self.disk.resume()
            self._tasks.put(Task("reconcile", Rescan()))  # catches up on what was skipped
        if (self.idle_exit and now - self._last_activity > self.idle_exit
                and self._tasks.empty() and self._progress.state == "idle" and not self.roots()):
            log.info("idle for %.0f s with no folder to watch: exiting", self.idle_exit)
            self._stop.set()
            return
        if self.engine is not None:
            self.engine.maintain_index()
        if (self.engine is not None and self.engine.index.dirty
                and now - getattr(self, "_last_save", 0.0) >= 30.0):
            self._last_save = now
            self._save_index()
        if self._precheck_due(now):
            self._tasks.put(Task("precheck", self._generation))
        if now - self._last_rescan >= self.config.rescan_interval:
            self._last_rescan = now
            due = self.folders.paths("rescan")  # not watched by inotify: rescanned instead
            if due:
                self._tasks.put(Task("reconcile", Rescan(due)))

    def _save_index(self) -> None:
        assert self.engine is not None
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

    # -- the indexing thread --------------------------------------------------------
    def _enqueue_ops(self, ops: list[Op]) -> None:
        self._tasks.put(Task("ops", ops))

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task.kind == "quit" or self._stop.is_set() and task.kind != "index":
                task.done.cancel()
                if task.kind == "quit":
                    return
                continue
            try:
                task.done.set_result(self._run_waiting(task))
                if task.kind != "precheck":
                    self._generation += 1  # the library may have changed
            except _Stopped:
                task.done.cancel()
            except Exception as exc:
                task.done.set_exception(self._task_failed(task.kind, exc))
            finally:
                self._progress.state = "idle" if self._tasks.empty() else "busy"
                if self._progress.state == "idle":
                    give_back_soon("indexing done")
                self._last_activity = self._last_work = time.monotonic()

    def _run_waiting(self, task: Task) -> Any:
        """Run ``task``; while the store cannot be written for a passing reason (locked
        by another program, read-only), wait and run it again: the work is not lost."""
        while True:
            try:
                result = self._run_task(task)
            except Exception as exc:
                problem = self.access.classify(exc) if task.kind != "precheck" else None
                if problem is None or store_damage(self.config.store_path, exc):
                    raise
                self._wait_for_store(task, problem)
                continue
            if task.kind != "precheck":
                self.access.resume("store")
            return result

    def _wait_for_store(self, task: Task, problem: str) -> None:
        """Hold ``task`` (status: ``waiting``, the problem, its work queued) until a write
        transaction can be started on the store; raises _Stopped if the daemon stops."""
        assert self.engine is not None
        self.access.report("store", problem)
        self._held = task
        self._progress = _Progress(state="waiting", started=time.monotonic())
        delay = 1.0
        try:
            while not self.access.writable():
                if self._stop.wait(delay):
                    raise _Stopped
                delay = min(2 * delay, 10.0)
        finally:
            self._held = None
        if self.access.reopen_needed:  # a connection opened read-only stays read-only
            self.access.reopen_needed = False
            self.engine.reopen_store()

    def _task_failed(self, kind: str, exc: Exception) -> Exception:
        """Log a failed task in the words the user needs (once, for a full disk);
        returns the error for a client waiting for the task."""
        damage = store_damage(self.config.store_path, exc)
        if damage is not None:
            self._store_damaged(damage)
            return damage
        if isinstance(exc, DiskFullError):  # refused while paused: already logged
            return exc
        if self.disk.caused(exc):
            return self.disk.report(_DOING.get(kind, kind))
        problem = self.access.classify(exc)  # the background duplicate check: next time
        if problem is not None:
            log.warning("%s stopped: %s", _DOING.get(kind, kind), problem)
            return exc
        log.exception("indexing task %s failed", kind)
        return exc

    def _run_task(self, task: Task) -> Any:
        assert self.engine is not None
        if self.disk.problem and task.kind != "precheck":
            # Paused: the reconcile queued when space is back catches up on folders and
            # events; a client asking to index is told why not.
            if task.kind == "index":
                raise DiskFullError(self.disk.problem)
            return None
        if task.kind == "reconcile":
            return self._reconcile(task.payload or Rescan())
        if task.kind == "ops":
            while not self._tasks.empty():  # coalesce a storm of events into one pass
                nxt = self._tasks.queue[0]
                if nxt.kind != "ops":
                    break
                task.payload = [*task.payload, *self._tasks.get_nowait().payload]
            return self._apply_ops(task.payload)  # (run again whole if it must wait)
        if task.kind == "index":
            job = task.payload
            return self._index(job.paths, "indexing", rehash=job.rehash).as_dict()
        if task.kind == "precheck":
            return self._precheck(task.payload)
        raise ValueError(task.kind)

    def _precheck_due(self, now: float) -> bool:
        after = self.config.precheck_after
        return bool(after and self.engine is not None and self._prechecked != self._generation
                    and not self.disk.problem
                    and self._tasks.empty() and self._progress.state == "idle"
                    and now - self._last_work >= after)

    def _precheck(self, generation: int) -> dict[str, Any]:
        """Pixel-check the library's new duplicate candidates while nothing else is to be
        done: the next `dupes` answers from the verdict cache. Yields to any task."""
        # Its progress (pairs, not photos) shows under dupes_progress, not as queued work.
        self._progress = _Progress(state="checking duplicates", started=time.monotonic())

        def interrupted() -> bool:
            return self._stop.is_set() or not self._tasks.empty()

        result = self._duplicates(DupesOptions(), interrupted, background=True)
        stats = dict(result["stats"])  # type: ignore[call-overload]
        if not interrupted():
            self._prechecked = generation
            log.info("duplicate candidates checked: %s pairs, %s new",
                     stats.get("candidate_pairs", 0), stats.get("verified_now", 0))
        return stats

    def _index(self, paths: list[str], state: str, exclude: list[str] | None = None,
               explicit: bool = True, save: bool = True, rehash: bool = False) -> IndexSummary:
        assert self.engine is not None
        self._progress = _Progress(state=state, started=time.monotonic())

        def progress(done: int, total: int) -> None:
            self._progress.done, self._progress.total = done, total
            self._progress.recent.append((time.monotonic(), done))

        summary = self.engine.indexer.index_paths(
            paths, progress, should_stop=self._stop.is_set, exclude=exclude or (),
            explicit_files=explicit, rehash=rehash)
        self._totals["extracted"] += summary.extracted
        self._totals["indexing_runs"] += 1
        if save:
            self._save_index()  # a full disk or a read-only data dir is said, not fatal
        systemd.notify_status(self._status_line())
        return summary

    def _reconcile(self, job: Rescan) -> dict[str, Any]:
        """Bring watched folders (all, or ``job.paths``) in step with the disk: each is
        watched as the folder its path holds now and scanned; paths below a watched
        folder (or indexed with `index`) are scanned with their folder's excludes."""
        done: dict[str, Any] = {}
        roots = self.roots()
        for root in roots:
            path = root["path"]
            if job.paths is not None and path not in job.paths:
                continue
            self.folders.reconciling(path)
            if not self._follow(root):
                continue
            summary = self._index([path], "reconciling", exclude=root.get("excludes", []),
                                  rehash=job.rehash)
            done[path] = summary.as_dict()
            log.info("reconciled %s: %d new, %d changed, %d moved, %d removed, %d failed",
                     path, summary.new, summary.changed, summary.moved, summary.removed,
                     len(summary.failed))
        chosen = {r["path"] for r in roots}
        for path in job.paths or []:
            if path not in chosen and os.path.lexists(path) and self.folders.intact(path):
                summary = self._index([path], "reconciling", rehash=job.rehash,
                                      exclude=list(_excludes_for(path, roots)))
                done[path] = summary.as_dict()
        return done

    def _follow(self, root: dict[str, Any]) -> bool:
        """Watch ``root``'s path as the folder it holds now; False (and the folder marked
        unavailable, its photos kept) if it holds none, or an empty mount point."""
        assert self.watcher is not None and self.engine is not None
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
            self.engine.store.set_root_identity(path, now)
        # Before the scan; a root inotify could not watch is tried again (the limit may
        # have been raised since, as the log advised).
        watching = self.watcher.add_root(path, root.get("excludes", []))
        self.folders.set_watching(path, now, rescan_why=None if watching else (
            self.folders.state(path).why or "inotify could not watch it"))
        return True

    def _apply_ops(self, ops: list[Op]) -> int:
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
            recheck += self._apply_move(op) if isinstance(op, Move) else self._apply_delete(op)
        # Moved and deleted paths are looked at once more, as they are now, at the end of
        # the batch (not before: a file renamed twice is at neither earlier name).
        self._index_changed(upserts + recheck)
        # No save here: rewriting the whole index file per event costs ~46 ms at 10k
        # photos under the lock searches need. _periodic saves within 30 s; a crash
        # before that is repaired from SQLite at the next start.
        return len(ops)

    def _apply_move(self, op: Move) -> list[str]:
        """Re-point the rows of a renamed file or folder; returns the paths to look at."""
        assert self.engine is not None
        if os.path.lexists(op.src):
            # Something is at the source: the event does not describe this path (a folder
            # moved out of the tree is still reported under its old name by its watch),
            # or the name was reused at once. Both paths are taken as they are.
            return [op.src, op.dst]
        if self.engine.indexer.move_path(op.src, op.dst) and op.settled:
            self.engine.indexer.keep_facts_of_renamed(op.dst)
        return [op.dst]  # a folder's files not known yet (mid-scan renames) are found

    def _apply_delete(self, op: Delete) -> list[str]:
        assert self.engine is not None
        if os.path.lexists(op.path):
            return [op.path]  # something is there: not a deletion of this path
        self.engine.indexer.remove_paths([op.path])
        return []

    def _index_changed(self, paths: list[str]) -> None:
        if not paths:
            return
        present = [p for p in dict.fromkeys(paths) if os.path.lexists(p)]
        gone = [p for p in dict.fromkeys(paths) if not os.path.lexists(p)]
        if gone:
            self.engine.indexer.remove_paths(gone)  # type: ignore[union-attr]
        roots = self.roots()
        by_excludes: dict[tuple[str, ...], list[str]] = {}
        for p in present:  # a folder moved in is scanned: its root's excludes apply
            by_excludes.setdefault(_excludes_for(p, roots), []).append(p)
        for excludes, group in by_excludes.items():
            self._index(group, "indexing", exclude=list(excludes), explicit=False,
                        save=False)

    # -- status ------------------------------------------------------------------------
    def _queued(self) -> int:
        p = self._progress
        in_flight = max(0, p.total - p.done) if p.state != "idle" else 0
        held = [self._held] if self._held is not None else []
        waiting = sum(len(t.payload) for t in [*held, *list(self._tasks.queue)]
                      if t.kind == "ops" and t.payload)
        return in_flight + waiting + (self.watcher.pending() if self.watcher else 0)

    def _status_line(self) -> str:
        queued = self._queued()
        return f"{self._progress.state}: {queued} queued" if queued else "idle"

    def status(self) -> dict[str, Any]:
        assert self.engine is not None
        info = self.engine.status()
        rate = self._progress.rate()
        queued = self._queued()
        info.update({
            "daemon": {"pid": os.getpid(), "version": __version__,
                       "uptime": round(time.time() - self.started, 1),
                       "socket": str(self.config.socket_path)},
            "state": self._progress.state if queued or self._progress.state != "busy"
            else "idle",
            "queued": queued,
            "extracted_since_start": self._totals["extracted"],
            "progress": {"done": self._progress.done, "total": self._progress.total,
                         "state": self._progress.state},
            # The pixel checks of the `dupes` listings running now (most recent last;
            # "background": the daemon's own, see _precheck).
            "dupes_progress": [dict(p) for p in self._dupes_runs],
            "duplicates_checked": self._prechecked == self._generation,
            # Why indexing cannot go on (the disk is full, the store is locked or
            # read-only, the data dir cannot be written), or None.
            "problem": self.disk.problem or self.access.problem,
            "rate": round(rate, 2),
            "eta_seconds": round(queued / rate, 1) if rate > 0 and queued else None,
            "roots": [{"path": r["path"], "excludes": r.get("excludes", []),
                       "default": bool(r.get("default")),
                       **self._mode(r["path"])} for r in self.roots()],
        })
        return info


    def _mode(self, path: str) -> dict[str, Any]:
        state = self.folders.state(path)
        return {"mode": state.mode, "why": state.why}


# What a task was doing, for the log line of a full disk.
_DOING = {"reconcile": "reconciling the watched folders", "ops": "indexing changed files",
          "index": "indexing", "precheck": "saving duplicate checks"}


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


def _excludes_for(path: str, roots: list[dict[str, Any]]) -> tuple[str, ...]:
    """The user's exclude globs of the watched roots that hold ``path``."""
    return tuple(dict.fromkeys(
        g for r in roots if is_under(path, r["path"]) for g in r.get("excludes", [])))
