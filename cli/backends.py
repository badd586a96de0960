"""Where a command runs: in the daemon (default) or in this process (``--no-daemon``).

One command path: both backends run the daemon's own verbs (``daemon/service/api.py``)
by name with the same arguments, the daemon's over its socket, ``--no-daemon``'s in this
process (``LocalVerbs``), so the commands print the same thing either way and a bug is
fixed once. What differs is only how progress is seen (polled from the daemon's status,
or called back here) and the daemon's retry of a search with the file's bytes.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from findsimilar.cli.client import DaemonClient, DaemonUnavailable, RemoteError, start_daemon
from findsimilar.config import Config, setting, standard_data_dir
from findsimilar.errors import (
    FileAccessError,
    FindSimilarError,
    NotRegularFileError,
    error_data,
)
from findsimilar.protocol import MAX_MESSAGE
from findsimilar.safeio import FileTooBig, NotRegularFile, megabytes, read_regular

__all__ = ["Backend", "DaemonBackend", "LocalBackend", "choose_backend", "offline_status",
           "running_status"]

ProgressFn = Callable[[int, int], None]
# The daemon's error types for a query it could not see or open, which this process
# may be able to read (its bytes are then sent).
_DAEMON_CANNOT_READ = frozenset({"MissingFileError", "FileAccessError"})
# The most bytes a search_bytes request can carry: base64 makes 3 bytes 4, and 64 KB
# leave room for the rest of the request (the name is at most 4 KB of path, 6 bytes a
# character once JSON-escaped).
MAX_SEND_BYTES = (MAX_MESSAGE - 65536) // 4 * 3
# A daemon with nothing of its own to watch exits after this long idle; the next
# command (or the systemd socket) starts it again.
AUTOSTART_IDLE_EXIT = 600.0


class Backend(Protocol):
    def index(self, paths: list[str], progress: ProgressFn | None,
              rehash: bool = False, exclude: list[str] | None = None) -> dict[str, Any]: ...
    def search(self, paths: list[str], k: int, min_score: float | str | None) -> list[dict]: ...
    def status(self) -> dict[str, Any]: ...
    def call(self, command: str, args: dict[str, Any],
             progress: ProgressFn | None = None) -> Any: ...
    def close(self) -> None: ...


class LocalBackend:
    """Runs the daemon's verbs in this process: loads the model (here, not in a worker
    process) for every command that needs it."""

    def __init__(self, config: Config) -> None:
        from findsimilar.daemon.engine import Engine
        from findsimilar.daemon.service.api import LocalVerbs

        self.engine = Engine(config, in_process=True)
        self.verbs = LocalVerbs(self.engine)

    def index(self, paths: list[str], progress: ProgressFn | None,
              rehash: bool = False, exclude: list[str] | None = None) -> dict[str, Any]:
        return self.call("index", {"paths": paths, "rehash": rehash,
                                   "exclude": list(exclude or [])}, progress)

    def search(self, paths: list[str], k: int, min_score: float | str | None) -> list[dict]:
        if self.engine.target is not None:  # its vectors are incomplete (serving.py)
            print(f"findsimilar: note: searching with {self.engine.spec.id}: the vectors of "
                  f"{self.engine.target.id} are not complete yet (the daemon extracts "
                  "them in the background, or run `findsimilar index`)", file=sys.stderr)
        return self.call("search", {"paths": paths, "k": k, "min_score": min_score})

    def status(self) -> dict[str, Any]:
        return self.call("status", {})

    def call(self, command: str, args: dict[str, Any],
             progress: ProgressFn | None = None) -> Any:
        """Verb ``command`` run here: the same arguments and results as the daemon's."""
        self.verbs.progress = progress
        return self.verbs.call(command, args)

    def close(self) -> None:
        self.engine.close()


class DaemonBackend:
    """Asks the running daemon (its model worker stays warm between requests, until idle)."""

    def __init__(self, client: DaemonClient, *, started: bool = False) -> None:
        self.client = client
        # This process started the daemon: its first `index` is told what the daemon's
        # start-up reconcile did in the folders asked for.
        self.started = started

    def index(self, paths: list[str], progress: ProgressFn | None,
              rehash: bool = False, exclude: list[str] | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"paths": [os.path.abspath(p) for p in paths]}
        if rehash:  # only then: an older daemon does not know the argument
            args["rehash"] = True
        if exclude:  # (the same)
            args["exclude"] = list(exclude)
        if self.started:  # (a daemon we started is ours: it knows the argument)
            args["startup"], self.started = True, False  # told once
        return self._with_progress("index", args, progress,
                                   lambda info: info.get("progress") or {})

    def _with_progress(self, command: str, args: dict[str, Any], progress: ProgressFn | None,
                       pick: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
        """Run ``command`` while a second connection polls ``status`` for its progress
        (``pick`` finds it in the status)."""
        stop = threading.Event()
        watcher = None
        if progress is not None:
            watcher = threading.Thread(target=self._poll_progress, args=(progress, stop, pick),
                                       daemon=True)
            watcher.start()
        try:
            return self.client.call(command, **args)
        finally:
            stop.set()
            if watcher:
                watcher.join(timeout=1)

    def _poll_progress(self, progress: ProgressFn, stop: threading.Event,
                       pick: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        try:
            with DaemonClient(self.client.config, timeout=5) as c:
                while not stop.wait(0.25):
                    p = pick(c.call("status"))
                    if p.get("total"):
                        progress(int(p["done"]), int(p["total"]))
        except FindSimilarError:
            return

    def search(self, paths: list[str], k: int, min_score: float | str | None) -> list[dict]:
        queries = [os.path.abspath(p) for p in paths]
        results = self.client.call("search", paths=queries, k=k, min_score=min_score)
        return [self._retry_with_bytes(r, k, min_score) for r in results]

    def _retry_with_bytes(self, result: dict, k: int, min_score: float | str | None) -> dict:
        """A file we can read but the daemon cannot (permissions, private mounts) is sent
        as bytes: only when the daemon said it could not see or open it (by the error's
        type), only a regular file (safeio: a FIFO or device is never opened for a
        blocking read), and only what fits in one message."""
        err = result.get("error")
        if not err or err.get("type") not in _DAEMON_CANNOT_READ:
            return result
        query = result["query"]
        try:
            data = read_regular(query, MAX_SEND_BYTES)
        except NotRegularFile as exc:
            return _error_entry(query, NotRegularFileError(f"{exc.strerror}: {query}"))
        except FileTooBig as exc:
            return _error_entry(query, FileAccessError(_too_big_to_send(err["message"], exc)))
        except OSError:  # we cannot read it either: the daemon's reason stands
            return result
        import base64

        try:
            return self.client.call("search_bytes", data=base64.b64encode(data).decode(),
                                    name=query, k=k, min_score=min_score)
        except RemoteError as exc:
            return {"query": os.path.abspath(query), "error": exc.as_data()}

    def status(self) -> dict[str, Any]:
        return self.client.call("status")

    def call(self, command: str, args: dict[str, Any],
             progress: ProgressFn | None = None) -> Any:
        if command == "dupes":
            return self._with_progress(
                command, args, progress, _listing_progress)
        return self.client.call(command, **args)

    def close(self) -> None:
        self.client.close()


def _listing_progress(info: dict[str, Any]) -> dict[str, Any]:
    """The newest client listing's progress in a daemon status (not the daemon's own
    background check)."""
    runs = [p for p in info.get("dupes_progress") or [] if not p.get("background")]
    return runs[-1] if runs else {}


def _too_big_to_send(daemon_said: str, exc: FileTooBig) -> str:
    return (f"{daemon_said}; and at {megabytes(exc.size)} the file is too big to send to "
            f"the daemon instead (the limit is {megabytes(exc.limit)}): make it readable to "
            "the daemon's user, or search with --no-daemon")


def _error_entry(path: str, exc: FindSimilarError) -> dict[str, Any]:
    """A search's error entry, as the daemon's verbs make them (``error_data``)."""
    return {"query": os.path.abspath(path), "error": error_data(exc)}


def no_daemon_requested(flag: bool) -> bool:
    return flag or bool(setting("no_daemon"))


def daemon_backend(config: Config) -> DaemonBackend:
    """The daemon (started if need be), for the verbs only it has (watched folders,
    reindex); raises DaemonUnavailable, saying so, when the user asked for no daemon."""
    if no_daemon_requested(False):
        raise DaemonUnavailable("watched folders and `reindex` are the daemon's, and "
                                "FINDSIMILAR_NO_DAEMON is set: unset it (or use "
                                "`findsimilar index FOLDER`)")
    chosen = choose_backend(config, no_daemon=False)
    assert isinstance(chosen, DaemonBackend)
    return chosen


def choose_backend(config: Config, *, no_daemon: bool, autostart: bool = True) -> Backend:
    """The daemon if it runs (starting it if allowed), else this process."""
    if no_daemon_requested(no_daemon):
        return LocalBackend(config)
    try:
        return DaemonBackend(DaemonClient(config).connect())
    except DaemonUnavailable:
        if not autostart:
            raise
    # The daemon of the standard data dir watches ~/Pictures and stays; one started
    # for another data dir with no folders to watch exits when idle.
    idle = None if config.data_dir == standard_data_dir() else AUTOSTART_IDLE_EXIT
    pid = start_daemon(config, idle_exit=idle)
    print(f"findsimilar: started the daemon (pid {pid}); it keeps the index (and, while "
          "in use, the model) loaded"
          + (" and watches your folders" if idle is None else
             f" and exits after {int(idle // 60)} idle minutes")
          + ". `findsimilar daemon stop` stops it; --no-daemon skips it.", file=sys.stderr)
    return DaemonBackend(DaemonClient(config).connect(), started=True)


def running_status(config: Config) -> dict[str, Any]:
    """``status`` without --no-daemon: the running daemon's, else :func:`offline_status`
    (a daemon is never started to say how things stand)."""
    try:
        with DaemonClient(config) as client:
            return client.call("status")
    except DaemonUnavailable:
        return offline_status(config)


def offline_status(config: Config) -> dict[str, Any]:
    """Counts straight from SQLite (no model, no daemon) for `status` when none runs;
    read-only, through the store's light summary module (stdlib sqlite3 only)."""
    info: dict[str, Any] = {"files": 0, "indexed": 0, "failed": 0, "unique_images": 0,
                            "queued": 0, "daemon": None, "data_dir": str(config.data_dir),
                            "config_file": str(config.config_file) if config.config_file
                            else None}
    path = config.store_path
    if not path.exists():
        return info
    from findsimilar.daemon.storage.summary import read_summary

    info.update(read_summary(path))
    info["store_bytes"] = sum(f.stat().st_size for f in config.data_dir.glob("store.db*"))
    return info
