"""Messages between the daemon and its model worker, over a Unix socket pair.

A frame is a JSON header and a binary blob (a file's bytes one way, a vector the other):
two big-endian 32-bit lengths, then the header (ASCII JSON: file names that are not
UTF-8 travel as ``\\udcxx`` escapes and come back as the same ``str``), then the blob.
Both ends are findsimilar itself; the limits only turn a corrupted stream into an error
instead of a huge allocation.
"""

from __future__ import annotations

import json
import select
import socket
import struct
from typing import Any

__all__ = ["FrameReader", "WireError", "recv_frame", "send_frame"]

_LENGTHS = struct.Struct("!II")
MAX_HEADER = 16 << 20
MAX_BLOB = 1 << 30


class WireError(Exception):
    """The stream does not hold frames (the other end is not what it should be)."""


def send_frame(sock: socket.socket, header: dict[str, Any], blob: bytes = b"") -> None:
    """Send one frame (raises OSError when the other end is gone)."""
    head = json.dumps(header, separators=(",", ":")).encode("ascii")
    if len(blob) < 65536:
        sock.sendall(_LENGTHS.pack(len(head), len(blob)) + head + blob)
    else:  # not copied into one buffer
        sock.sendall(_LENGTHS.pack(len(head), len(blob)) + head)
        sock.sendall(blob)


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, waiting for all of it; None at the end of the stream. The blob
    is received in one piece (a file's bytes are not copied again on their way to the
    decoder). Raises OSError or WireError."""
    lengths = _recv_exactly(sock, _LENGTHS.size)
    if lengths is None:
        return None
    head_len, blob_len = _LENGTHS.unpack(lengths)
    if head_len > MAX_HEADER or blob_len > MAX_BLOB:
        raise WireError(f"a frame of {head_len} + {blob_len} bytes")
    head = _recv_exactly(sock, head_len)
    blob = _recv_exactly(sock, blob_len) if blob_len else b""
    if head is None or blob is None:
        raise WireError("the stream ends inside a frame")
    return _header(head), blob


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = sock.recv(size, socket.MSG_WAITALL)
    while 0 < len(data) < size:  # a signal cut it short
        more = sock.recv(size - len(data), socket.MSG_WAITALL)
        if not more:
            break
        data += more
    return data if len(data) == size else None


def _header(raw: bytes | bytearray) -> dict[str, Any]:
    try:
        header = json.loads(raw)
    except ValueError as exc:
        raise WireError(f"a header that is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireError("a header that is not an object")
    return header


class FrameReader:
    """Frames from a socket, as they arrive (for a reader that must never block)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    def read(self, timeout: float) -> list[tuple[dict[str, Any], bytes]] | None:
        """The frames completed by what arrives within ``timeout`` seconds (maybe none);
        None at the end of the stream. Raises OSError or WireError.

        The socket stays blocking (no socket timeout): other threads send on it, and a
        send must wait for the other end rather than give up half-way through a frame."""
        if not select.select([self.sock], [], [], timeout)[0]:
            return []
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            return None
        self._buffer += chunk
        return self._frames()

    def _frames(self) -> list[tuple[dict[str, Any], bytes]]:
        frames = []
        while len(self._buffer) >= _LENGTHS.size:
            head_len, blob_len = _LENGTHS.unpack_from(self._buffer)
            if head_len > MAX_HEADER or blob_len > MAX_BLOB:
                raise WireError(f"a frame of {head_len} + {blob_len} bytes")
            end = _LENGTHS.size + head_len + blob_len
            if len(self._buffer) < end:
                break
            header = _header(self._buffer[_LENGTHS.size:_LENGTHS.size + head_len])
            frames.append((header, bytes(self._buffer[_LENGTHS.size + head_len:end])))
            del self._buffer[:end]
        return frames
