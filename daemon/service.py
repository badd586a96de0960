"""The long-lived daemon: warm model, watched folders, background indexing, socket API.

Threads:
  * main: signals and shutdown;
  * fs-accept / fs-client: the socket server (queries never wait for indexing,
    except for one model batch when a query needs the model);
  * fs-index: the only writer; runs the start-up reconcile, then watcher
    operations, in order;
  * watchdog's threads and fs-debounce: file events -> settled operations.

SIGTERM: stop accepting, let the indexer commit its current batch, save the
index atomically, exit (well inside systemd's 10 s; target 5 s).

A store SQLite finds damaged stops the daemon with exit code 6 and recovery steps (the
file is left as it is); a full disk pauses indexing, not searching (see ``diskspace``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import signal
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from findsimilar import __version__, systemd
from findsimilar.config import Config, default_pictures_dir, standard_data_dir
from findsimilar.errors import FindSimilarError, StoreError, store_damage
from findsimilar.text import is_under

from .commands import Commands, Task
from .diskspace import DiskFull, DiskFullError
from .dupes import DupesOptions
from .engine import Engine
from .indexer import IndexSummary
from .logs import flush_repeats
from .memory import give_back_if_quiet, give_back_soon
from .server import SocketServer, bind_unix_socket
from .watcher import Delete, Move, Op, Upsert, Watcher

__all__ = ["AlreadyRunning", "Daemon"]

log = logging.getLogger(__name__)


class AlreadyRunning(FindSimilarError):
    exit_code = 7


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
        self._rescan: dict[str, str] = {}  # root -> why it is rescanned, not watched
        self._unavailable: set[str] = set()
        self._lock_fd: int | None = None
        # Since start: pictures through the model (a move must not add to it).
        self._totals = {"extracted": 0, "indexing_runs": 0}
        self._owns_socket_file = False
        self.watcher: Watcher | None = None
        self.disk = DiskFull(config.data_dir)
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
            self._tasks.put(Task("reconcile", None))
            server.start()
            self.watcher.start()
            worker = threading.Thread(target=self._work, name="fs-index", daemon=True)
            worker.start()
            systemd.notify_ready(f"serving on {self.config.socket_path}")
            log.info("findsimilar %s serving %s (data in %s)", __version__,
                     self.config.socket_path, self.config.data_dir)
            self._warm_up()
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
        fd = os.open(self.config.data_dir / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(
                f"a findsimilar daemon (pid {pid or '?'}) already serves "
                f"{self.config.data_dir}") from None
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

    def _warm_up(self) -> None:
        """Load the model now, so the first query does not pay for it."""
        assert self.engine is not None
        import numpy as np

        size = self.engine.extractor.input_size
        self.engine.extractor.embed(np.zeros((1, size, size, 3), np.uint8))

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
            if not self.disk.caused(exc):
                raise
            log.error("could not save the index: the disk is full; it is brought in step "
                      "with the store at the next start")
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

    def _root_available(self, root: dict[str, Any]) -> bool:
        """False for a root that is missing, or an empty mount point of another disk."""
        path = root["path"]
        try:
            st = os.stat(path)
        except OSError:
            return False
        if root.get("dev") is not None and st.st_dev != root["dev"]:
            return False
        return os.path.isdir(path)

    def _watch_failed(self, root: str, why: str) -> None:
        self._rescan[root] = why

    def _root_gone(self, root: str) -> None:
        self._unavailable.add(root)
        assert self.watcher is not None
        self.watcher.remove_root(root)

    def _tick(self) -> None:
        """The main thread's periodic work; a failure is logged, never fatal (but for a
        damaged store)."""
        try:
            self._periodic()
        except Exception as exc:
            damage = store_damage(self.config.store_path, exc)
            if damage is not None:
                self._store_damaged(damage)
            else:
                log.exception("periodic work failed")
        flush_repeats()

    def _periodic(self) -> None:
        """Rescan roots that inotify could not watch; pick up roots that came back;
        resume indexing once disk space is freed; exit when idle with nothing to watch
        (if asked to)."""
        now = time.monotonic()
        give_back_if_quiet()  # what big pictures or an indexing pass left free
        if self.disk.space_back():
            self.disk.resume()
            self._tasks.put(Task("reconcile", None))  # catches up on what was skipped
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
        last = getattr(self, "_last_periodic", 0.0)
        if now - last < min(self.config.rescan_interval, 60.0):
            return
        self._last_periodic = now
        due = list(self._unavailable)  # came back yet? (checked every minute)
        if now - getattr(self, "_last_rescan", 0.0) >= self.config.rescan_interval:
            self._last_rescan = now
            due += list(self._rescan)  # not watched by inotify: rescanned instead
        if due:
            self._tasks.put(Task("reconcile", sorted(set(due))))

    def _save_index(self) -> None:
        assert self.engine is not None
        try:
            self.engine.save()
        except Exception as exc:
            if not self.disk.caused(exc):
                raise
            self.disk.report("saving the index")

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
                task.done.set_result(self._run_task(task))
                if task.kind != "precheck":
                    self._generation += 1  # the library may have changed
            except Exception as exc:
                task.done.set_exception(self._task_failed(task.kind, exc))
            finally:
                self._progress.state = "idle" if self._tasks.empty() else "busy"
                if self._progress.state == "idle":
                    give_back_soon("indexing done")
                self._last_activity = self._last_work = time.monotonic()

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
            return self._reconcile(task.payload)
        if task.kind == "ops":
            ops = list(task.payload)
            while not self._tasks.empty():  # coalesce a storm of events into one pass
                nxt = self._tasks.queue[0]
                if nxt.kind != "ops":
                    break
                ops.extend(self._tasks.get_nowait().payload)
            return self._apply_ops(ops)
        if task.kind == "index":
            return self._index(task.payload, "indexing").as_dict()
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
               explicit: bool = True, save: bool = True) -> IndexSummary:
        assert self.engine is not None
        self._progress = _Progress(state=state, started=time.monotonic())

        def progress(done: int, total: int) -> None:
            self._progress.done, self._progress.total = done, total
            self._progress.recent.append((time.monotonic(), done))

        summary = self.engine.indexer.index_paths(
            paths, progress, should_stop=self._stop.is_set, exclude=exclude or (),
            explicit_files=explicit)
        self._totals["extracted"] += summary.extracted
        self._totals["indexing_runs"] += 1
        if save:
            self.engine.save()
        systemd.notify_status(self._status_line())
        return summary

    def _reconcile(self, only: list[str] | None) -> dict[str, Any]:
        assert self.watcher is not None
        done = {}
        for root in self.roots():
            path = root["path"]
            if only and path not in only:
                continue
            if not self._root_available(root):
                if path not in self._unavailable:
                    log.warning("watched folder %s is not available; keeping its files", path)
                self._unavailable.add(path)
                self.watcher.remove_root(path)
                continue
            self._unavailable.discard(path)
            # Before the scan; a root inotify could not watch is tried again (the limit
            # may have been raised since, as the log advised).
            if self.watcher.add_root(path, root.get("excludes", [])):
                self._rescan.pop(path, None)
            summary = self._index([path], "reconciling", exclude=root.get("excludes", []))
            done[path] = summary.as_dict()
            log.info("reconciled %s: %d new, %d changed, %d moved, %d removed, %d failed",
                     path, summary.new, summary.changed, summary.moved, summary.removed,
                     len(summary.failed))
        return done

    def _apply_ops(self, ops: list[Op]) -> int:
        assert self.engine is not None
        indexer = self.engine.indexer
        upserts: list[str] = []
        for op in ops:
            if isinstance(op, Upsert):
                upserts.append(op.path)
                continue
            if upserts:  # keep the order: changes before this move/delete happen first
                self._index_changed(upserts)
                upserts = []
            if isinstance(op, Move):
                if indexer.move_path(op.src, op.dst) == 0:
                    upserts.append(op.dst)  # moved in from an excluded or unknown place
            elif isinstance(op, Delete) and not self._under_unavailable_root(op.path):
                indexer.remove_paths([op.path])
        if upserts:
            self._index_changed(upserts)
        # No save here: rewriting the whole index file per event costs ~46 ms at 10k
        # photos under the lock searches need. _periodic saves within 30 s; a crash
        # before that is repaired from SQLite at the next start.
        return len(ops)

    def _index_changed(self, paths: list[str]) -> None:
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

    def _under_unavailable_root(self, path: str) -> bool:
        return any(is_under(path, r) for r in self._unavailable)

    # -- status ------------------------------------------------------------------------
    def _queued(self) -> int:
        p = self._progress
        in_flight = max(0, p.total - p.done) if p.state != "idle" else 0
        waiting = sum(len(t.payload) for t in list(self._tasks.queue)
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
            # Why indexing cannot go on (the disk is full), or None.
            "problem": self.disk.problem,
            "rate": round(rate, 2),
            "eta_seconds": round(queued / rate, 1) if rate > 0 and queued else None,
            "roots": [{"path": r["path"], "excludes": r.get("excludes", []),
                       "default": bool(r.get("default")),
                       "mode": ("unavailable" if r["path"] in self._unavailable else
                                "rescan" if r["path"] in self._rescan else "watch"),
                       "why": self._rescan.get(r["path"])} for r in self.roots()],
        })
        return info


# What a task was doing, for the log line of a full disk.
_DOING = {"reconcile": "reconciling the watched folders", "ops": "indexing changed files",
          "index": "indexing", "precheck": "saving duplicate checks"}


def _excludes_for(path: str, roots: list[dict[str, Any]]) -> tuple[str, ...]:
    """The user's exclude globs of the watched roots that hold ``path``."""
    return tuple(dict.fromkeys(
        g for r in roots if is_under(path, r["path"]) for g in r.get("excludes", [])))
