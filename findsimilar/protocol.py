"""The socket protocol between the CLI and the daemon (stdlib only: the client is light).

A message is a 4-byte big-endian unsigned length followed by that many bytes of
UTF-8 JSON. A request is ``{"v": 1, "command": "search", "args": {...}}``; a reply
is ``{"v": 1, "ok": true, "result": ...}`` or ``{"v": 1, "ok": false, "error":
{"type": ..., "message": ..., "exit_code": N}}``: errors travel back as data.

Reading is hostile-input safe: the length is checked against a limit before
anything is read, the body buffer grows only as bytes actually arrive (a peer
that claims 60 MB and sends 10 bytes costs 10 bytes), and anything that is not
JSON, including JSON nested too deep or with numbers too long to convert, is a
ProtocolError rather than some other exception.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

__all__ = ["MAX_MESSAGE", "PROTOCOL_VERSION", "ProtocolError", "encode_message", "error_reply",
           "ok_reply", "recv_message", "request", "send_message"]

PROTOCOL_VERSION = 1
MAX_MESSAGE = 64 * 1024 * 1024  # room for a base64 photo in search-by-bytes
_HEADER = struct.Struct(">I")
_CHUNK = 256 * 1024  # the most one recv() may allocate beyond what has arrived


class ProtocolError(Exception):
    """The peer sent something that is not a valid message (or hung up mid-way)."""


def encode_message(obj: Any) -> bytes:
    """``obj`` as one framed message (header and body).

    Raises ProtocolError if it is larger than MAX_MESSAGE, TypeError or ValueError if
    it is not JSON-serialisable.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        # A lone surrogate that is not a surrogate-escaped byte (e.g. "\ud800" sent by
        # a client and echoed in an error): \u escapes keep it, and stay valid JSON.
        data = json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE} limit")
    return _HEADER.pack(len(data)) + data


def send_message(sock: socket.socket, obj: Any) -> None:
    sock.sendall(encode_message(obj))


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytearray:
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the message did not arrive in time")
            sock.settimeout(left)
        chunk = sock.recv(min(n - len(buf), _CHUNK))
        if not chunk:
            raise ProtocolError("connection closed mid-message" if buf or n != 4
                                else "connection closed")
        buf += chunk
    return buf


def recv_message(sock: socket.socket, limit: int = MAX_MESSAGE, *,
                 deadline: float | None = None) -> Any:
    """Read one message and return it, decoded.

    ``deadline`` (a ``time.monotonic()`` value) bounds the whole message, however
    the peer trickles it; without one, the socket's own timeout applies to each read.
    Raises ProtocolError (too large, truncated, not JSON), TimeoutError, OSError.
    """
    (length,) = _HEADER.unpack(_recv_exact(sock, 4, deadline))
    if length > limit:
        raise ProtocolError(f"message of {length} bytes exceeds the {limit} limit")
    text = _recv_exact(sock, length, deadline).decode("utf-8", "surrogateescape")
    try:
        return json.loads(text)
    # ValueError covers JSONDecodeError and integers past the int-conversion limit.
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"not a JSON message: {str(exc)[:200]}") from None


def request(command: str, **args: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "command": command, "args": args}


def ok_reply(result: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": True, "result": result}


def error_reply(kind: str, message: str, exit_code: int = 1) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": False,
            "error": {"type": kind, "message": message, "exit_code": exit_code}}
