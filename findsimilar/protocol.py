"""The socket protocol between the CLI and the daemon (stdlib only: the client is light).

A message is a 4-byte big-endian unsigned length followed by that many bytes of
UTF-8 JSON. A request is ``{"v": 1, "command": "search", "args": {...}}``; a reply
is ``{"v": 1, "ok": true, "result": ...}`` or ``{"v": 1, "ok": false, "error":
{"type": ..., "message": ..., "exit_code": N}}``: errors travel back as data.
The length is checked against a limit before anything is allocated.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

__all__ = ["MAX_MESSAGE", "PROTOCOL_VERSION", "ProtocolError", "error_reply", "ok_reply",
           "recv_message", "request", "send_message"]

PROTOCOL_VERSION = 1
MAX_MESSAGE = 64 * 1024 * 1024  # room for a base64 photo in search-by-bytes
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer sent something that is not a valid message (or hung up mid-way)."""


def send_message(sock: socket.socket, obj: Any) -> None:
    data = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8",
                                                                            "surrogateescape")
    if len(data) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the {MAX_MESSAGE} limit")
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    remaining = n
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ProtocolError("connection closed mid-message" if chunks or n != 4
                                else "connection closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def recv_message(sock: socket.socket, limit: int = MAX_MESSAGE) -> Any:
    """Read one message; raises ProtocolError (too large, truncated, not JSON)."""
    (length,) = _HEADER.unpack(_recv_exact(sock, 4))
    if length > limit:
        raise ProtocolError(f"message of {length} bytes exceeds the {limit} limit")
    try:
        return json.loads(_recv_exact(sock, length).decode("utf-8", "surrogateescape"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not a JSON message: {exc}") from None


def request(command: str, **args: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "command": command, "args": args}


def ok_reply(result: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": True, "result": result}


def error_reply(kind: str, message: str, exit_code: int = 1) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "ok": False,
            "error": {"type": kind, "message": message, "exit_code": exit_code}}
