"""The framing code itself, over real socket pairs: what a hostile peer can and cannot make
it do (the daemon-level tests are in tests/integration/test_socket_security.py)."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from findsimilar import protocol
from findsimilar.protocol import (
    MAX_MESSAGE,
    ProtocolError,
    encode_message,
    recv_message,
    send_message,
)


class RecordingSocket:
    """A real socket whose reads are recorded: how much each recv() asked for is how
    much it could allocate."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.asked: list[int] = []

    def recv(self, n: int) -> bytes:
        self.asked.append(n)
        return self.sock.recv(n)

    def settimeout(self, value: float | None) -> None:
        self.sock.settimeout(value)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.settimeout(10)
    b.settimeout(10)
    yield a, b
    a.close()
    b.close()


def test_a_message_round_trips_with_undecodable_path_bytes_and_unicode(pair):
    a, b = pair
    message = {"v": 1, "paths": [b"caf\xe9.jpg".decode("utf-8", "surrogateescape"), "Ünïcode €"]}
    send_message(a, message)
    assert recv_message(b) == message


def test_a_lone_surrogate_from_a_client_can_still_be_echoed_back(pair):
    a, b = pair
    message = {"error": "unknown command '\ud800'"}  # not a surrogate-escaped byte
    send_message(a, message)
    assert recv_message(b) == message


def test_a_4_gb_length_prefix_is_refused_before_a_single_body_byte_is_read(pair):
    a, b = pair
    a.sendall(b"\xff\xff\xff\xff" + b"x" * 100)
    peer = RecordingSocket(b)
    with pytest.raises(ProtocolError, match="exceeds"):
        recv_message(peer)  # type: ignore[arg-type]
    assert peer.asked == [4]


def test_the_body_buffer_grows_only_as_bytes_arrive_never_to_the_claimed_size(pair):
    a, b = pair
    claimed = MAX_MESSAGE - 1
    a.sendall(struct.pack(">I", claimed) + b"{" * 1000)
    a.shutdown(socket.SHUT_WR)
    peer = RecordingSocket(b)
    with pytest.raises(ProtocolError, match="closed mid-message"):
        recv_message(peer)  # type: ignore[arg-type]
    assert max(peer.asked) <= protocol._CHUNK < claimed // 100


@pytest.mark.parametrize("body", [b"not json", b"[" * 100_000, b"1" * 5000, b"\xff\xfe",
                                  b'{"a": NaN'], ids=["text", "deep", "long-int", "bytes",
                                                      "cut"])
def test_anything_that_is_not_json_is_a_protocol_error(pair, body):
    a, b = pair
    a.sendall(struct.pack(">I", len(body)) + body)
    with pytest.raises(ProtocolError, match="not a JSON message"):
        recv_message(b)


def test_a_peer_trickling_a_byte_at_a_time_misses_the_deadline(pair):
    a, b = pair
    stop = threading.Event()

    def trickle() -> None:
        for byte in encode_message({"v": 1, "command": "ping"}):
            if stop.wait(0.1):
                return
            a.sendall(bytes([byte]))

    thread = threading.Thread(target=trickle)
    thread.start()
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            recv_message(b, deadline=start + 0.5)  # each byte alone comes well in time
        assert 0.45 < time.monotonic() - start < 2
    finally:
        stop.set()
        thread.join()


def test_a_message_over_the_limit_is_not_sent():
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_message({"data": "x" * MAX_MESSAGE})


def test_the_frame_is_a_big_endian_length_and_compact_utf8_json():
    data = encode_message({"a": "é"})
    assert data[:4] == struct.pack(">I", len(data) - 4)
    assert json.loads(data[4:]) == {"a": "é"} and b" " not in data
