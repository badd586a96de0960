"""The daemon's Unix-socket server: many clients at once, none can stall another.

One thread per connection, with a cap on connections, so a slow or stuck client
only ever blocks itself. Only processes of the daemon's own user are served
(``SO_PEERCRED``, checked before a client costs a thread), on top of the 0700
folder and 0600 socket. A client gets ``FINDSIMILAR_CLIENT_TIMEOUT`` seconds
(default 60) to start a request, as long again to finish sending it however it
trickles the bytes, and as long to take each reply; then it is dropped. Every
request gets a reply, and so does every failure where one can still be sent:
failures come back as data. A client that hangs up while its request runs has its
work stopped: the handler is given a check (:func:`hung_up`) to ask between units of
work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from findsimilar.config import setting
from findsimilar.protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    encode_message,
    error_reply,
    recv_message,
    send_message,
)

__all__ = ["DEFAULT_CLIENT_TIMEOUT", "SocketServer", "bind_unix_socket", "client_timeout",
           "hung_up", "peer_uid"]

log = logging.getLogger(__name__)

# A handler gets the request and a check that says whether its client has hung up.
Handler = Callable[[dict[str, Any], Callable[[], bool]], dict[str, Any]]

DEFAULT_CLIENT_TIMEOUT = 60.0


def client_timeout() -> float:
    """The ``client_timeout`` setting in seconds (FINDSIMILAR_CLIENT_TIMEOUT, which tests
    shorten, or the config file), else 60."""
    return setting("client_timeout") or DEFAULT_CLIENT_TIMEOUT


def bind_unix_socket(path: Path) -> socket.socket:
    """Bind and listen on ``path``: folder 0700 and socket 0600, both ours.

    A stale socket file (no one answers) is replaced; a live one raises OSError.
    """
    folder = path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = folder.stat()
    if st.st_uid != os.getuid():
        raise OSError(f"{folder} belongs to another user; refusing to put the socket there")
    if stat.S_IMODE(st.st_mode) & 0o077 and folder.name.startswith("findsimilar"):
        os.chmod(folder, 0o700)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: left by a daemon that died
        else:
            raise OSError(f"another daemon is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of ``conn`` (from the kernel, not the peer)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def hung_up(conn: socket.socket) -> Callable[[], bool]:
    """A check, cheap enough to call between any two units of work (one ``poll``: 1.6 µs)
    and from any thread, of whether the client of ``conn`` has gone away.

    It asks the kernel for POLLHUP, which a Unix socket shows once the peer has closed
    its end (or the process holding it died): nobody can take the reply any more. It
    reads nothing, so a next request the client pipelined stays queued; and a client
    that only half-closed (``shutdown(SHUT_WR)`` after its request, POLLRDHUP) still
    waits for its answer and gets it.
    """
    def gone() -> bool:
        fd = conn.fileno()
        if fd < 0:
            return True
        poller = select.poll()  # one per call: a poll object refuses concurrent use
        poller.register(fd, select.POLLHUP)
        return any(event & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                   for _, event in poller.poll(0))

    return gone


class _ThrottledLog:
    """At most one line per ``every`` seconds for each kind of event, so that a client
    flooding the socket cannot flood the journal; the next line counts the skipped."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, level: int, kind: str, msg: str, *args: object,
                 exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -self.every) < self.every:
                self._skipped[kind] = self._skipped.get(kind, 0) + 1
                return
            self._last[kind] = now
            skipped = self._skipped.pop(kind, 0)
        if skipped:
            msg, args = msg + " (and %d more like it before this)", (*args, skipped)
        log.log(level, msg, *args, exc_info=exc_info)


class SocketServer:
    """Accepts connections on a listening socket and answers requests with ``handler``.

    ``timeout`` (default: ``client_timeout()``) bounds each wait on a client: for a
    request to begin, for the rest of it to arrive, for a reply to be taken.
    """

    def __init__(self, sock: socket.socket, handler: Handler, *, timeout: float | None = None,
                 max_clients: int = 256,
                 on_client_done: Callable[[], None] | None = None) -> None:
        self.sock = sock
        self.handler = handler
        # Runs in a connection's own thread as it ends: frees what the thread opened.
        self.on_client_done = on_client_done
        self.timeout = timeout if timeout is not None else client_timeout()
        self._slots = threading.BoundedSemaphore(max_clients)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="fs-accept", daemon=True)
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._note = _ThrottledLog()

    def start(self) -> None:
        self.sock.settimeout(0.2)  # lets the accept loop notice close()
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self.sock.close()
        with self._lock:
            for conn in list(self._clients):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._closing.is_set():
                    return
                # EMFILE and the like: pause instead of spinning (and logging) in a loop.
                self._note(logging.ERROR, "accept", "accepting a client failed: %s", exc)
                self._closing.wait(0.1)
                continue
            self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        """Give ``conn`` a thread of its own, or refuse it with a reason."""
        try:
            uid = peer_uid(conn)
        except OSError:
            conn.close()
            return
        if uid != os.getuid():
            self._note(logging.WARNING, "uid", "refused a connection from uid %d", uid)
            self._refuse(conn, "permission denied: the daemon serves only its own user")
            return
        if not self._slots.acquire(blocking=False):
            self._note(logging.WARNING, "busy", "refused a client: all slots are taken")
            self._refuse(conn, "busy: too many clients at once, try again")
            return
        try:
            threading.Thread(target=self._serve, args=(conn,), name="fs-client",
                             daemon=True).start()
        except RuntimeError:  # no thread to be had: the same answer as a full house
            self._slots.release()
            self._refuse(conn, "busy: too many clients at once, try again")

    def _refuse(self, conn: socket.socket, why: str) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(1)
            send_message(conn, error_reply("Refused", why))
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._clients.add(conn)
        try:
            self._converse(conn)
        except OSError:
            pass  # the client went away, or would not take its reply: its loss only
        finally:
            with self._lock:
                self._clients.discard(conn)
            conn.close()
            self._slots.release()
            if self.on_client_done is not None:
                try:
                    self.on_client_done()
                except Exception:
                    log.exception("cleaning up after a client failed")

    def _converse(self, conn: socket.socket) -> None:
        """Answer requests until the client hangs up, breaks the protocol or dawdles."""
        while not self._closing.is_set():
            try:
                message = self._read_request(conn)
            except ProtocolError as exc:
                if str(exc) != "connection closed":
                    self._note(logging.INFO, "protocol", "dropped a client: %s", exc)
                    self._reply(conn, error_reply("ProtocolError", str(exc)))
                return
            except TimeoutError:
                self._note(logging.INFO, "timeout", "dropped a client that sent no "
                           "complete request within %g s", self.timeout)
                self._reply(conn, error_reply(
                    "Timeout", f"no complete request within {self.timeout:g} s: "
                               "closing the connection"))
                return
            gone = hung_up(conn)
            reply = self._answer(message, gone)
            if gone():
                self._note(logging.INFO, "hung-up", "a client hung up while its %s request "
                           "ran; its answer was dropped", _command(message))
                return
            self._reply(conn, reply)

    def _read_request(self, conn: socket.socket) -> Any:
        """The next request: ``timeout`` for its first byte, then ``timeout`` for the rest
        (a deadline, so a byte a second does not keep the connection forever)."""
        conn.settimeout(self.timeout)
        if not conn.recv(1, socket.MSG_PEEK):
            raise ProtocolError("connection closed")
        return recv_message(conn, deadline=time.monotonic() + self.timeout)

    def _reply(self, conn: socket.socket, reply: dict[str, Any]) -> None:
        try:
            data = encode_message(reply)
        except (ProtocolError, TypeError, ValueError) as exc:  # too big, or not JSON
            self._note(logging.ERROR, "reply", "a reply could not be encoded: %s", exc)
            data = encode_message(error_reply("InternalError",
                                              f"the reply could not be sent: {exc}"))
        conn.settimeout(self.timeout)  # sendall: the total time, however slow the reader
        conn.sendall(data)

    def _answer(self, message: Any, gone: Callable[[], bool]) -> dict[str, Any]:
        if not isinstance(message, dict) or not isinstance(message.get("command"), str):
            return error_reply("ProtocolError", "a request is an object with a 'command'")
        if message.get("v") != PROTOCOL_VERSION:
            return error_reply("ProtocolError",
                               f"protocol version {message.get('v')!r} is not supported; "
                               f"this daemon speaks {PROTOCOL_VERSION}")
        for key in ("data_dir", "extractor"):
            if message.get(key) is not None and not isinstance(message[key], str):
                return error_reply("ProtocolError", f"'{key}' must be a string")
        try:
            return self.handler(message, gone)
        except Exception as exc:  # a bug in one command must not cost the connection
            self._note(logging.ERROR, _where(exc), "command %r failed", message["command"],
                       exc_info=True)
            return error_reply("InternalError", f"{type(exc).__name__}: {exc}")


def _command(message: Any) -> str:
    command = message.get("command") if isinstance(message, dict) else None
    return repr(command) if isinstance(command, str) else "unnamed"


def _where(exc: BaseException) -> str:
    """The exception's type and the line that raised it: one bug, one kind of log line."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    line = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb else "?"
    return f"internal:{type(exc).__name__}:{line}"
