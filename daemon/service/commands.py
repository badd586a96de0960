"""The daemon's socket commands: one ``cmd_<verb>`` method per request (dmypy's layout),
mixed into ``service.Daemon``. ``handle`` routes a request to its method and turns every
failure into data (``{"error": ...}``); indexing work is queued as a :class:`Task` for
the daemon's one indexing thread.
"""

from __future__ import annotations

import base64
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from findsimilar import __version__
from findsimilar.config import Config
from findsimilar.daemon.dupes.grouping import DupesOptions, options_from
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.indexing.roots import Roots, identify
from findsimilar.daemon.indexing.watcher import Watcher
from findsimilar.daemon.storage.diskspace import DiskFull
from findsimilar.errors import (
    Cancelled,
    FindSimilarError,
    MissingFileError,
    StoreError,
    store_damage,
)
from findsimilar.protocol import error_reply, ok_reply

__all__ = ["Commands", "Task"]

StopFn = Callable[[], bool]
# The commands whose work stops when their client hangs up (given ``should_stop``).
_CANCELLABLE = frozenset({"search", "search_bytes", "same_picture", "dupes"})


@dataclass
class Task:
    """Work for the indexing thread; ``done`` carries its result to whoever waits."""

    kind: str  # "reconcile" | "ops" | "index" | "precheck" | "quit"
    payload: Any = None
    done: Future[Any] = field(default_factory=Future)


@dataclass(frozen=True)
class Rescan:
    """A reconcile: every watched folder, or these paths (watched folders, or folders and
    files below them); ``rehash`` reads every file again however unchanged it looks."""

    paths: list[str] | None = None
    rehash: bool = False


class Commands:
    """The ``cmd_*`` handlers; the attributes below are the daemon's (``service.Daemon``)."""

    config: Config
    engine: Engine | None
    watcher: Watcher | None
    disk: DiskFull
    _tasks: queue.Queue[Task]
    _stop: threading.Event
    _dupes_runs: list[dict[str, int]]
    folders: Roots
    _last_activity: float

    def status(self) -> dict[str, Any]:
        raise NotImplementedError

    def roots(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _store_damaged(self, error: StoreError) -> None:
        raise NotImplementedError

    def handle(self, message: dict[str, Any],
               client_gone: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """The reply to ``message``. The commands in ``_CANCELLABLE`` are also given
        ``client_gone`` (the server's check that the client hung up) as ``should_stop``,
        and stop their work between units of it once it says so."""
        self._last_activity = time.monotonic()
        data_dir = message.get("data_dir")
        if data_dir and Path(data_dir) != self.config.data_dir:
            return error_reply("WrongDaemon", f"this daemon serves {self.config.data_dir}, "
                               f"not {data_dir}; set FINDSIMILAR_SOCKET to another path", 1)
        extractor = message.get("extractor")
        if extractor and extractor != self.config.extractor:
            return error_reply("WrongDaemon", f"the daemon runs the {self.config.extractor} "
                               f"model, not {extractor}: restart it to switch "
                               "(`findsimilar daemon stop`)", 1)
        handler = getattr(self, "cmd_" + message["command"], None)
        if handler is None:
            return error_reply("UnknownCommand", f"unknown command {message['command']!r}")
        args = message.get("args") or {}
        if not isinstance(args, dict):
            return error_reply("ProtocolError", "'args' must be an object")
        # A client's own "should_stop" collides with this one: a TypeError, refused below.
        stop = {"should_stop": client_gone} if message["command"] in _CANCELLABLE else {}
        try:
            return ok_reply(handler(**args, **stop))
        except FindSimilarError as exc:
            return error_reply(type(exc).__name__, str(exc), exc.exit_code)
        except TypeError as exc:
            return error_reply("BadArguments", str(exc), 2)
        except Exception as exc:  # the store's or the disk's trouble, said in words
            error = store_damage(self.config.store_path, exc)
            if error is not None:
                self._store_damaged(error)
            elif self.disk.caused(exc):
                error = self.disk.report(f"the {message['command']} command")
            else:
                raise
            return error_reply(type(error).__name__, str(error), error.exit_code)

    def cmd_ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": __version__, "data_dir": str(self.config.data_dir)}

    def cmd_status(self) -> dict[str, Any]:
        return self.status()

    def cmd_search(self, paths: list[str], k: int = 10, min_score: float | None = None, *,
                   should_stop: StopFn) -> list[dict[str, Any]]:
        """One result (or error entry) per path; stops between paths (and before each
        model call) once ``should_stop`` says the client hung up."""
        assert self.engine is not None
        out = []
        for path in paths:
            try:
                out.append(self.engine.search(path, k=int(k), min_score=min_score,
                                              should_stop=should_stop).as_dict())
            except Cancelled:
                raise
            except FindSimilarError as exc:
                out.append({"query": os.path.abspath(path), "error": {
                    "type": type(exc).__name__, "message": str(exc),
                    "exit_code": exc.exit_code}})
            if should_stop():
                raise Cancelled(f"the client hung up after {len(out)} of {len(paths)} queries")
        return out

    def cmd_search_bytes(self, data: str, name: str = "<bytes>", k: int = 10,
                         min_score: float | None = None, *,
                         should_stop: StopFn) -> dict[str, Any]:
        assert self.engine is not None
        try:
            raw = base64.b64decode(data.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise TypeError("'data' must be base64-encoded image bytes") from None
        return self.engine.search_bytes(raw, k=int(k), min_score=min_score, name=name,
                                        should_stop=should_stop).as_dict()

    def cmd_index(self, paths: list[str], wait: bool = True,
                  rehash: bool = False) -> dict[str, Any]:
        for p in paths:
            if not os.path.lexists(p):
                raise MissingFileError(f"no such file or folder: {p}")
        task = Task("index", Rescan([os.path.abspath(p) for p in paths], bool(rehash)))
        self._tasks.put(task)
        if not wait:
            return {"queued": True}
        return task.done.result()

    def cmd_dupes(self, *, should_stop: StopFn, **args: Any) -> dict[str, Any]:
        """Duplicate groups; runs in this client's thread, beside indexing, until the
        daemon stops or the client hangs up. Its pixel checks show in ``status`` under
        ``dupes_progress``."""
        return self._duplicates(options_from(**args),
                                lambda: self._stop.is_set() or should_stop())

    def _duplicates(self, options: DupesOptions, should_stop: Callable[[], bool], *,
                    background: bool = False) -> dict[str, Any]:
        """``engine.duplicates`` with its pixel-check progress shown in ``status`` under
        ``dupes_progress`` (``background``: the daemon's own run, see _precheck)."""
        assert self.engine is not None
        progress = {"done": 0, "total": 0, **({"background": 1} if background else {})}
        self._dupes_runs.append(progress)

        def report(done: int, total: int) -> None:
            progress.update(done=done, total=total)

        try:
            return self.engine.duplicates(options, report, should_stop=should_stop)
        finally:
            self._dupes_runs.remove(progress)

    def cmd_same_picture(self, query: str, paths: list[str], *,
                         should_stop: StopFn) -> dict[str, Any]:
        """Pixel-check scores of ``query`` against ``paths`` (``show`` marks duplicates)."""
        assert self.engine is not None
        return self.engine.same_picture(os.path.abspath(query),
                                        [os.path.abspath(p) for p in paths],
                                        should_stop=should_stop)

    def cmd_not_duplicates(self, paths: list[str], forget: bool = False) -> dict[str, Any]:
        assert self.engine is not None
        return self.engine.not_duplicates(paths, forget=bool(forget))

    def cmd_watch_add(self, path: str, excludes: list[str] | None = None) -> dict[str, Any]:
        assert self.engine is not None
        path = os.path.abspath(path)
        if not os.path.isdir(path):
            raise MissingFileError(f"not a folder: {path}")
        self.engine.store.add_root(path, identify(path), list(excludes or []))
        self.engine.store.set_setting("roots_configured", "1")
        self._tasks.put(Task("reconcile", Rescan([path])))
        return {"path": path, "excludes": list(excludes or []), "queued": True}

    def cmd_watch_remove(self, path: str) -> dict[str, Any]:
        assert self.engine is not None and self.watcher is not None
        path = os.path.abspath(path)
        found = self.engine.store.remove_root(path)
        self.engine.store.set_setting("roots_configured", "1")
        self.watcher.remove_root(path)
        self.folders.forget(path)
        return {"path": path, "removed": found}

    def cmd_watch_list(self) -> list[dict[str, Any]]:
        return self.status()["roots"]

    def cmd_reindex(self, paths: list[str] | None = None,
                    rehash: bool = False) -> dict[str, Any]:
        """Rescan watched folders (all, or ``paths``: watched folders, or anything below
        them or indexed); ``rehash`` reads every file again."""
        chosen = [os.path.abspath(p) for p in paths or []]
        watched = {r["path"] for r in self.roots()}
        for p in chosen:
            if p not in watched and not os.path.lexists(p):
                raise MissingFileError(f"no such file or folder: {p}")
        self._tasks.put(Task("reconcile", Rescan(chosen or None, bool(rehash))))
        return {"queued": True, "rehash": bool(rehash)}

    def cmd_stop(self) -> dict[str, Any]:
        threading.Timer(0.05, self._stop.set).start()
        return {"stopping": True, "pid": os.getpid()}
