"""Talking to systemd without libsystemd: readiness notification and socket activation.

Stdlib only, and light (the CLI may import this): ``notify`` is ``sd_notify(3)`` and
``listen_fds`` is ``sd_listen_fds(3)`` with ``unset_environment=1``; the variables they
use are read through findsimilar.config. Outside systemd both do nothing:
``notify`` returns False and ``listen_fds`` returns an empty list.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from findsimilar.config import notify_socket, take_listen_environment

__all__ = ["LISTEN_FDS_START", "first_unix_listener", "listen_fds", "notify", "notify_ready",
           "notify_status", "notify_stopping", "notify_watchdog"]

# The first file descriptor systemd passes (SD_LISTEN_FDS_START): 0-2 are stdio.
LISTEN_FDS_START = 3


def notify(message: str) -> bool:
    """Send ``message`` (newline-separated ``KEY=VALUE`` lines) to the service manager.

    Returns True when the datagram was sent; False when not run by systemd
    (``$NOTIFY_SOCKET`` unset or not a Unix socket address) or when sending failed.
    Never raises: a daemon must not die because its manager stopped listening.
    """
    address = notify_socket()
    if address.startswith("@"):
        # A Linux abstract socket: its name begins with a NUL byte instead of '@'.
        target = b"\0" + os.fsencode(address[1:])
    elif address.startswith("/"):
        target = os.fsencode(address)
    else:
        return False  # unset, or a transport we do not speak (e.g. vsock)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(message.encode("utf-8", "surrogateescape"))
    except OSError:
        return False
    return True


def _one_line(status: str) -> str:
    # A newline would start a new assignment, so a status could forge READY=1 etc.
    return " ".join(status.splitlines())


def notify_ready(status: str | None = None) -> bool:
    """Tell systemd the service is up (``READY=1``), optionally with a status line.

    Returns what :func:`notify` returns.
    """
    message = "READY=1"
    if status:
        message += f"\nSTATUS={_one_line(status)}"
    return notify(message)


def notify_status(status: str) -> bool:
    """Set the free-form status shown by ``systemctl status``. Returns what :func:`notify` does."""
    return notify(f"STATUS={_one_line(status)}")


def notify_stopping() -> bool:
    """Tell systemd the service is shutting down (``STOPPING=1``). Returns what notify does."""
    return notify("STOPPING=1")


def notify_watchdog() -> bool:
    """Reset the watchdog timer (``WATCHDOG=1``, for ``WatchdogSec=``). Returns what notify does."""
    return notify("WATCHDOG=1")


def listen_fds() -> list[socket.socket]:
    """Take the sockets systemd passed to this process (socket activation).

    Returns one socket object per passed descriptor (fd 3, 4, ...), in order; an
    empty list when none were passed to *this* process (``$LISTEN_PID`` is another
    pid, or the variables are unset or malformed). Descriptors that are not sockets
    are skipped. The returned sockets are close-on-exec, and ``LISTEN_PID``,
    ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` are removed from the environment in every
    case, so child processes never mistake them for their own.
    """
    listen_pid, listen_fds = take_listen_environment()
    try:
        pid, count = int(listen_pid), int(listen_fds)
    except ValueError:
        return []
    if pid != os.getpid() or count <= 0:
        return []
    sockets = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        try:
            os.set_inheritable(fd, False)  # sets FD_CLOEXEC
            sockets.append(socket.socket(fileno=fd))
        except OSError:
            continue  # not open, or not a socket (e.g. a FIFO from ListenFIFO=)
    return sockets


def first_unix_listener(sockets: Iterable[socket.socket]) -> socket.socket | None:
    """Returns the first listening ``AF_UNIX`` ``SOCK_STREAM`` socket in ``sockets``, or None."""
    for sock in sockets:
        if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            continue
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return sock
    return None
