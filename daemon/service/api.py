"""The verbs of findsimilar, one ``cmd_<verb>`` method each (dmypy's layout), over the
engine, the scheduler and the watched folders.

One command path: :class:`Verbs` are the verbs that need only the engine (search, the
duplicate listings, pixel checks, "not duplicates"); the daemon serves them with
:class:`DaemonVerbs` (which adds the daemon's own: index through the scheduler, watched
folders, status, the self-check, stop), and `--no-daemon` runs the very same methods in
the calling process with :class:`LocalVerbs`. Results are plain data, the same either way; errors
are FindSimilarError subclasses, which the daemon sends back as data (``error_data``).
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from findsimilar import __version__
from findsimilar.config import Config
from findsimilar.daemon.dupes.grouping import options_from
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.indexing.scanner import check_index_paths
from findsimilar.daemon.service.follow import DupesFeed
from findsimilar.daemon.service.metrics import SearchTimes
from findsimilar.daemon.service.scheduler import IndexPaths, Reconcile, Scheduler
from findsimilar.daemon.service.startup import with_startup
from findsimilar.daemon.service.work import Listings
from findsimilar.errors import (
    Cancelled,
    FindSimilarError,
    MissingFileError,
    StoreError,
    error_data,
    store_damage,
)
from findsimilar.protocol import PROTOCOL_VERSION, ok_reply

if TYPE_CHECKING:
    from findsimilar.daemon.indexing.roots import Roots
    from findsimilar.daemon.indexing.watcher import Watcher
    from findsimilar.daemon.service.selfcheck import SelfCheck
    from findsimilar.daemon.storage.diskspace import DiskFull

__all__ = ["DaemonVerbs", "LocalVerbs", "UnknownCommand", "Verbs"]

StopFn = Callable[[], bool]
ProgressFn = Callable[[int, int], None]


class UnknownCommand(FindSimilarError):
    pass


class BadArguments(FindSimilarError):
    exit_code = 2


class Verbs:
    """The verbs that need only the engine; ``call`` runs one by name."""

    # Verbs whose work stops when their caller goes away (given ``should_stop``).
    cancellable = frozenset({"search", "search_bytes", "same_picture", "dupes"})

    def __init__(self, engine: Engine, listings: Listings | None = None) -> None:
        self.engine = engine
        self.listings = listings or Listings(engine)
        # Called with (done, total) by work that reports progress (in-process only: the
        # daemon's clients poll its status instead).
        self.progress: ProgressFn | None = None
        # Each query's time, by kind (``status``: ``metrics``).
        self.searches = SearchTimes()

    def call(self, command: str, args: dict[str, Any],
             should_stop: StopFn = lambda: False) -> Any:
        """The result of verb ``command`` with ``args``. Raises UnknownCommand,
        BadArguments (wrong or missing arguments), or the verb's FindSimilarError."""
        handler = getattr(self, "cmd_" + command, None) if isinstance(command, str) else None
        if handler is None:
            raise UnknownCommand(f"unknown command {command!r}")
        if not isinstance(args, dict):
            raise BadArguments("'args' must be an object")
        # A caller's own "should_stop" collides with this one: a TypeError, refused below.
        stop = {"should_stop": should_stop} if command in self.cancellable else {}
        try:
            return handler(**args, **stop)
        except TypeError as exc:  # missing, unknown or ill-typed arguments
            raise BadArguments(str(exc)) from None

    def cmd_search(self, paths: list[str], k: int = 10,
                   min_score: float | str | None = None, *,
                   should_stop: StopFn) -> list[dict[str, Any]]:
        """One result (or error entry) per path; stops between paths (and before each
        model call) once ``should_stop`` says the caller went away. Each query answered
        is timed (``searches``), from taking it to its result built."""
        out = []
        for path in paths:
            try:
                started = time.perf_counter()
                result = self.engine.search(path, k=int(k), min_score=min_score,
                                            should_stop=should_stop)
                self.searches.record("indexed" if result.indexed else "new",
                                     time.perf_counter() - started, result.reranked)
                out.append(result.as_dict())
            except Cancelled:
                raise
            except FindSimilarError as exc:
                out.append({"query": os.path.abspath(path), "error": error_data(exc)})
            if should_stop():
                raise Cancelled(f"the client hung up after {len(out)} of {len(paths)} queries")
        return out

    def cmd_search_bytes(self, data: str, name: str = "<bytes>", k: int = 10,
                         min_score: float | str | None = None, *,
                         should_stop: StopFn) -> dict[str, Any]:
        try:
            raw = base64.b64decode(data.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError, AttributeError):
            raise BadArguments("'data' must be base64-encoded image bytes") from None
        started = time.perf_counter()
        result = self.engine.search_bytes(raw, k=int(k), min_score=min_score, name=name,
                                          should_stop=should_stop)
        self.searches.record("new", time.perf_counter() - started)
        return result.as_dict()

    def cmd_dupes(self, *, should_stop: StopFn, **args: Any) -> dict[str, Any]:
        """Duplicate groups; its pixel checks show in ``status`` under
        ``dupes_progress`` while it runs."""
        return self.listings.run(options_from(**args), should_stop, self.progress)

    def cmd_same_picture(self, query: str, paths: list[str],
                         cosines: list[float] | None = None, *,
                         should_stop: StopFn) -> dict[str, Any]:
        """Pixel-check scores of ``query`` against ``paths`` (``show`` marks duplicates;
        ``cosines``: the search's scores, the serving extractor's floor applied)."""
        return self.engine.same_picture(os.path.abspath(query),
                                        [os.path.abspath(p) for p in paths],
                                        cosines=cosines, should_stop=should_stop)

    def cmd_not_duplicates(self, paths: list[str], forget: bool = False) -> dict[str, Any]:
        return self.engine.not_duplicates(paths, forget=bool(forget))


class LocalVerbs(Verbs):
    """The verbs run in the calling process (`--no-daemon`): indexing runs right here."""

    def cmd_index(self, paths: list[str], wait: bool = True, rehash: bool = False,
                  exclude: list[str] | None = None) -> dict[str, Any]:
        """Index ``paths``; then, if the configured extractor's vectors are incomplete,
        extract them here and switch to it (with no daemon, nothing else would)."""
        from findsimilar.daemon.service.upgrade import upgrade_in_foreground

        summary = self.engine.index_paths(paths, self.progress, rehash=bool(rehash),
                                          skip=_globs(exclude))
        summary.extracted += upgrade_in_foreground(self.engine, self.progress)
        return summary.as_dict()

    def cmd_status(self) -> dict[str, Any]:
        return {**self.engine.status(), "queued": 0, "daemon": None}


class DaemonVerbs(Verbs):
    """The verbs as the daemon serves them on its socket: also indexing through the
    scheduler, the watched folders, status, the self-check and stop; ``handle`` answers
    a request."""

    cancellable = Verbs.cancellable | {"dupes_follow"}

    def __init__(self, config: Config, engine: Engine, listings: Listings, *,
                 scheduler: Scheduler, folders: Roots, watcher: Watcher,
                 roots: Callable[[], list[dict[str, Any]]], status: Callable[[], dict],
                 stopping: threading.Event, disk: DiskFull,
                 on_damage: Callable[[StoreError], None], feed: DupesFeed | None = None,
                 searches: SearchTimes | None = None,
                 startup: Reconcile | None = None,
                 selfcheck: SelfCheck | None = None) -> None:
        super().__init__(engine, listings)
        self.selfcheck = selfcheck
        self.searches = searches or self.searches  # shared with ``status``
        self.startup = startup  # the start-up reconcile (told to the `index` that started us)
        self.feed = feed or DupesFeed()
        self.config = config
        self.scheduler = scheduler
        self.folders = folders
        self.watcher = watcher
        self.roots = roots
        self.status = status
        self.stopping = stopping
        self.disk = disk
        self.on_damage = on_damage

    def handle(self, message: dict[str, Any],
               client_gone: StopFn = lambda: False) -> dict[str, Any]:
        """The reply to a request (the socket server's handler): the result, or the error
        as data. ``client_gone`` (the server's check that the client hung up) stops the
        cancellable verbs' work between units of it, and a listing also stops with the
        daemon."""
        refused = self._refused(message)
        if refused is not None:
            return _failure(refused)
        command = message["command"]
        try:
            return ok_reply(self.call(command, message.get("args") or {},
                                      lambda: self.stopping.is_set() or client_gone()))
        except FindSimilarError as exc:
            return _failure(exc)
        except Exception as exc:  # the store's or the disk's trouble, said in words
            error = store_damage(self.config.store_path, exc)
            if error is not None:
                self.on_damage(error)
            elif self.disk.caused(exc):
                error = self.disk.report(f"the {command} command")
            else:
                raise
            return _failure(error)

    def _refused(self, message: dict[str, Any]) -> FindSimilarError | None:
        """A request meant for another daemon (data dir, model) is refused."""
        data_dir = message.get("data_dir")
        if data_dir and Path(data_dir) != self.config.data_dir:
            return WrongDaemon(f"this daemon serves {self.config.data_dir}, not {data_dir}; "
                               "set FINDSIMILAR_SOCKET to another path")
        extractor = message.get("extractor")
        if extractor and extractor != self.config.extractor:
            return WrongDaemon(f"the daemon runs the {self.config.extractor} model, not "
                               f"{extractor}: restart it to switch (`findsimilar daemon stop`)")
        return None

    def cmd_ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "version": __version__,
                "data_dir": str(self.config.data_dir)}

    def cmd_status(self) -> dict[str, Any]:
        # "followed": a `dupes --follow` listens (new photos are checked as they arrive).
        return {**self.status(), "followed": self.feed.followed()}

    def cmd_index(self, paths: list[str], wait: bool = True, rehash: bool = False,
                  exclude: list[str] | None = None, startup: bool = False) -> dict[str, Any]:
        """Index ``paths`` (after the tasks queued before), less what ``exclude`` globs
        match. ``startup``: the caller started this daemon, so what its start-up
        reconcile did under ``paths`` is counted as this request's (see ``startup``)."""
        check_index_paths(paths)
        asked = [os.path.abspath(p) for p in paths]
        task = self.scheduler.put(IndexPaths(asked, bool(rehash), _globs(exclude)))
        if not wait:
            return {"queued": True}
        summary = task.done.result()
        if startup and self.startup is not None:
            return with_startup(summary, asked, self.startup.done)
        return summary

    def cmd_watch_add(self, path: str, excludes: list[str] | None = None) -> dict[str, Any]:
        """Watch ``path`` (persisted). The default folder (watched while none is chosen)
        is no longer followed once another is chosen: ``replaced_default`` names it."""
        path = os.path.abspath(path)
        if not os.path.isdir(path):
            raise MissingFileError(f"not a folder: {path}")
        defaults = [r["path"] for r in self.roots() if r.get("default")]
        self.engine.add_root(path, list(excludes or []))
        replaced = next((p for p in defaults if p != path), None)
        if replaced is not None:  # (the reconcile below drops it too, if one re-added it)
            self.watcher.remove_root(replaced)
            self.folders.forget(replaced)
        self.scheduler.put(Reconcile([path]))
        return {"path": path, "excludes": list(excludes or []), "queued": True,
                "replaced_default": replaced}

    def cmd_watch_remove(self, path: str) -> dict[str, Any]:
        """Stop watching ``path`` (the default folder too); ``watched`` lists the folders
        followed after. A path not watched changes nothing (the default stays)."""
        path = os.path.abspath(path)
        if path not in {r["path"] for r in self.roots()}:
            return {"path": path, "removed": False, "watched": self._watched()}
        self.engine.remove_root(path)  # (also records that the folders are chosen)
        self.watcher.remove_root(path)
        self.folders.forget(path)
        return {"path": path, "removed": True, "watched": self._watched()}

    def _watched(self) -> list[str]:
        return [r["path"] for r in self.roots()]

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
        self.scheduler.put(Reconcile(chosen or None, bool(rehash)))
        return {"queued": True, "rehash": bool(rehash)}

    def cmd_dupes_follow(self, after: int | None = None, wait: float = 20.0, *,
                         should_stop: StopFn) -> dict[str, Any]:
        """Duplicate groups found as photos arrive in watched folders (``follow``): those
        numbered above ``after`` (None: start from now), waiting up to ``wait`` seconds."""
        if not (after is None or type(after) is int) or type(wait) not in (int, float):
            raise BadArguments("'after' must be a whole number or null, 'wait' a number")
        return self.feed.poll(after, wait, should_stop)

    def cmd_self_check(self) -> dict[str, Any]:
        """Run the self-check as soon as the daemon is idle, whatever its interval; returns
        its state as ``status`` shows it (``self_check``), the run not yet done."""
        if self.selfcheck is None:
            raise FindSimilarError("this daemon runs no self-check")
        self.selfcheck.request()
        return self.selfcheck.status()

    def cmd_stop(self) -> dict[str, Any]:
        threading.Timer(0.05, self.stopping.set).start()
        return {"stopping": True, "pid": os.getpid()}


class WrongDaemon(FindSimilarError):
    pass


def _failure(exc: FindSimilarError) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": False, "error": error_data(exc)}


def _globs(value: Any) -> list[str]:
    """A request's list of globs, checked (a client sends what it likes)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise FindSimilarError("exclude: expected a list of glob strings")
    return value
