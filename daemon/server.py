"""The daemon's Unix-socket server: many clients at once, none can stall another.

One thread per connection (with an idle timeout and a cap on connections), so
a slow or stuck client only ever blocks itself. Only processes of the daemon's
own user are served (``SO_PEERCRED``), on top of the 0700 folder and 0600
socket. Every request gets a reply; failures come back as data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from findsimilar.protocol import (
    PROTOCOL_VERSION,
    ProtocolError,
    error_reply,
    recv_message,
    send_message,
)

__all__ = ["SocketServer", "bind_unix_socket"]

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]


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
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


class SocketServer:
    """Accepts connections on a listening socket and answers requests with ``handler``."""

    def __init__(self, sock: socket.socket, handler: Handler, *, idle_timeout: float = 60.0,
                 max_clients: int = 256,
                 on_client_done: Callable[[], None] | None = None) -> None:
        self.sock = sock
        self.handler = handler
        # Runs in a connection's own thread as it ends: frees what the thread opened.
        self.on_client_done = on_client_done
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_clients)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="fs-accept", daemon=True)
        self._clients: set[socket.socket] = set()
        self._lock = threading.Lock()

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
            except OSError:
                if self._closing.is_set():
                    return
                log.exception("accept failed")
                continue
            if not self._slots.acquire(blocking=False):
                self._refuse(conn, "busy: too many clients at once, try again")
                continue
            threading.Thread(target=self._serve, args=(conn,), name="fs-client",
                             daemon=True).start()

    def _refuse(self, conn: socket.socket, why: str) -> None:
        with contextlib.suppress(OSError):
            conn.settimeout(1)
            send_message(conn, error_reply("Refused", why))
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self._clients.add(conn)
        try:
            if peer_uid(conn) != os.getuid():
                log.warning("refused a connection from another user")
                self._refuse(conn, "permission denied: the daemon serves only its own user")
                return
            conn.settimeout(self.idle_timeout)
            while not self._closing.is_set():
                try:
                    message = recv_message(conn)
                except ProtocolError as exc:
                    if str(exc) != "connection closed":
                        with contextlib.suppress(OSError):
                            send_message(conn, error_reply("ProtocolError", str(exc)))
                    return
                except (TimeoutError, OSError):
                    return
                send_message(conn, self._answer(message))
        except OSError:
            pass  # the client went away mid-reply: its loss, nobody else's
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

    def _answer(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict) or not isinstance(message.get("command"), str):
            return error_reply("ProtocolError", "a request is an object with a 'command'")
        if message.get("v") != PROTOCOL_VERSION:
            return error_reply("ProtocolError",
                               f"protocol version {message.get('v')!r} is not supported; "
                               f"this daemon speaks {PROTOCOL_VERSION}")
        try:
            return self.handler(message)
        except Exception as exc:  # a bug in one command must not cost the connection
            log.exception("command %s failed", message.get("command"))
            return error_reply("InternalError", f"{type(exc).__name__}: {exc}")
