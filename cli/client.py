"""The thin socket client: stdlib only, so `findsimilar photo.jpg` starts instantly.

No torch, faiss or numpy is imported on this path (``python -X importtime`` is
checked in the tests).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from findsimilar.config import Config, child_environment, setting
from findsimilar.errors import (
    ERROR_PREFIX,
    EXIT_DATA_DIR,
    EXIT_NO_DAEMON,
    EXIT_STORE,
    DataDirError,
    FindSimilarError,
    StoreError,
)
from findsimilar.protocol import ProtocolError, recv_message, request, send_message

__all__ = ["DaemonClient", "DaemonUnavailable", "RemoteError", "last_logged_error", "start_daemon"]

CONNECT_TIMEOUT = 5.0  # seconds


class DaemonUnavailable(FindSimilarError):
    """Nothing answers on the socket."""

    exit_code = EXIT_NO_DAEMON


class RemoteError(FindSimilarError):
    """The daemon answered with an error; carries its type and exit code."""

    def __init__(self, kind: str, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.kind = kind
        self.exit_code = exit_code

    def as_data(self) -> dict[str, object]:
        """The error as the daemon sent it (its type is the daemon's, not ours)."""
        return {"type": self.kind, "message": str(self), "exit_code": self.exit_code}


class DaemonClient:
    """One connection to the daemon; ``call`` sends a request and returns its result."""

    def __init__(self, config: Config, timeout: float | None = None) -> None:
        self.config = config
        self.timeout = timeout
        self._sock: socket.socket | None = None

    def connect(self) -> DaemonClient:
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(str(self.config.socket_path))
                break
            except BlockingIOError:
                # EAGAIN: the daemon's accept backlog is full (a burst of clients), which
                # a moment's wait cures; a dead daemon gives ECONNREFUSED or ENOENT.
                sock.close()
                if time.monotonic() > deadline:
                    raise DaemonUnavailable(f"the daemon on {self.config.socket_path} "
                                            "accepts no connections (too busy)") from None
                time.sleep(0.01)
            except OSError as exc:
                sock.close()
                raise DaemonUnavailable(
                    f"no findsimilar daemon answers on {self.config.socket_path} "
                    f"({exc.strerror or exc})") from None
        sock.settimeout(self.timeout)
        self._sock = sock
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> DaemonClient:
        return self if self._sock else self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, command: str, **args: Any) -> Any:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        message = request(command, **args)
        message["data_dir"] = str(self.config.data_dir)
        if setting("extractor"):  # chosen, not the default: the daemon must run it
            message["extractor"] = self.config.extractor
        try:
            send_message(self._sock, message)
            reply = recv_message(self._sock)
        except (OSError, ProtocolError) as exc:
            self.close()
            raise DaemonUnavailable(f"lost the connection to the daemon: {exc}") from None
        if not isinstance(reply, dict):
            raise RemoteError("ProtocolError", "the daemon sent a malformed reply")
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise RemoteError(str(err.get("type", "Error")), str(err.get("message", reply)),
                              int(err.get("exit_code", 1)))
        return reply.get("result")


def daemon_command(config: Config, idle_exit: float | None) -> list[str]:
    cmd = [sys.executable, "-m", "findsimilar", "daemon", "run"]
    if idle_exit:
        cmd += ["--idle-exit", str(int(idle_exit))]
    return cmd


def start_daemon(config: Config, *, idle_exit: float | None = None,
                 wait: float = 60.0) -> int:
    """Start a background daemon and return its pid once it answers.

    Its log goes to ``config.log_path`` (in ``$XDG_STATE_HOME/findsimilar``). Raises
    DaemonUnavailable if it dies or does not answer within ``wait`` seconds.
    """
    import subprocess

    config.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = config.log_path
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logged_before = log_path.stat().st_size if log_path.exists() else 0
    env = child_environment(FINDSIMILAR_DATA_DIR=str(config.data_dir),
                            FINDSIMILAR_SOCKET=str(config.socket_path))
    with open(log_path, "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(daemon_command(config, idle_exit), stdin=devnull, stdout=log,
                                stderr=log, env=env, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = _last_error(log_path, logged_before)
            if proc.returncode == EXIT_STORE:  # a damaged store: pass on what to do
                raise StoreError(said or f"the daemon cannot use its store; see {log_path}")
            if proc.returncode == EXIT_DATA_DIR:  # a read-only data dir: say which
                raise DataDirError(said or f"the daemon cannot write its data dir "
                                           f"{config.data_dir}; see {log_path}")
            raise DaemonUnavailable(f"the daemon exited at start (code {proc.returncode}): "
                                    f"{said or _tail(log_path)}")
        with contextlib.suppress(DaemonUnavailable), DaemonClient(config, timeout=5) as c:
            c.call("ping")
            return proc.pid
        time.sleep(0.05)
    raise DaemonUnavailable(f"the daemon did not answer within {wait:.0f} s; see {log_path}")


def last_logged_error(path: Path) -> str:
    """The last ``findsimilar: error:`` message in the last 64 KB of the daemon's log
    (``""``: none)."""
    try:
        size = path.stat().st_size
    except OSError:
        return ""
    return _last_error(path, max(0, size - 65536))


def _last_error(path: Path, offset: int) -> str:
    """The last ``findsimilar: error:`` message (it may span lines) logged after ``offset``."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    return text.rsplit(ERROR_PREFIX, 1)[1].strip() if ERROR_PREFIX in text else ""


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])
