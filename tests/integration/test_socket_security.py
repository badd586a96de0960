"""Socket security (issue 7, item 3): who may talk to the daemon, and what a client may
do to it. A real `findsimilar daemon run` process, the real model, real sockets.

Already covered in test_daemon.py and not repeated here: the 0600 socket in a 0700
folder, a few malformed frames, one 4 GB length prefix, an unknown command, 32 clients
x 10 searches, an idle client beside a search, file descriptors after 200 clients.
This file adds another user at each layer, timeouts, the connection cap, memory under
frames that lie about their size, protocol fuzzing, and 64 clients x 200 queries.
Figures are printed (``pytest -s``) and recorded in RELIABILITY.md.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from findsimilar.protocol import encode_message, recv_message, request

from ..conftest import PHOTO_SET, shared
from .daemon_harness import DaemonProcess, TwinLibrary, twin_library_daemon, wait_until

TIMEOUT = 3.0  # FINDSIMILAR_CLIENT_TIMEOUT of the daemon under test (default 60)
SLACK = 2.5  # how late a drop may come on a busy 2-core machine
NOBODY = 65534
SETPRIV = shutil.which("setpriv")
NAMES = [Path(rel).name for rel in PHOTO_SET]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinLibrary]:
    """One daemon for the module: PHOTO_SET indexed, each photo with an identical twin
    (so every query has one right answer), copies outside the index for queries that
    need the model, and a 3 s client timeout."""
    with twin_library_daemon(tmp_path_factory.mktemp("guarded"),
                             [shared(rel) for rel in PHOTO_SET],
                             FINDSIMILAR_CLIENT_TIMEOUT=str(TIMEOUT)) as daemon:
        yield daemon


def connect(daemon: DaemonProcess, timeout: float = 20) -> socket.socket:
    """A raw connection (waiting, as the thin client does, while the daemon's accept
    backlog is full)."""
    deadline = time.monotonic() + 10
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(str(daemon.socket_path))
            return s
        except BlockingIOError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def ask(s: socket.socket, command: str, **args: Any) -> Any:
    s.sendall(encode_message(request(command, **args)))
    return recv_message(s)


def hung_up(s: socket.socket) -> bool:
    """True once the daemon has closed its end (after any reply it sent was read)."""
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True


def right_answer(daemon: TwinLibrary, name: str, reply: dict[str, Any], *,
                 by_content: bool) -> bool:
    """A search reply for ``name`` holds exactly its twin (and, for a query from outside
    the index, the original) at score ~1: the answer to this query and no other."""
    if not reply.get("ok"):
        return False
    [result] = reply["result"]
    query = (daemon.outside if by_content else daemon.photos) / name
    want = {str(daemon.photos / f"twin-{name}")}
    if by_content:
        want.add(str(daemon.photos / name))
    got = {m["path"] for m in result["results"] if m["score"] > 0.99}
    return result["query"] == str(query) and got == want


def search_is_right(daemon: TwinLibrary, name: str = "Aqua.jpg") -> bool:
    with contextlib.closing(connect(daemon)) as s:
        reply = ask(s, "search", paths=[str(daemon.photos / name)], k=3)
    return right_answer(daemon, name, reply, by_content=False)


# --- another user --------------------------------------------------------------------------

# Run as `nobody`: stdlib only, isolated (-I -S), so it needs no access to the repo.
NOBODY_CLIENT = r"""
import errno, json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({"connect": errno.errorcode.get(exc.errno, str(exc))}))
    sys.exit()
body = json.dumps({"v": 1, "command": "stop", "args": {}}).encode()
try:
    s.sendall(struct.pack(">I", len(body)) + body)
except OSError:
    pass  # refused before the request went out: the reply is still there to read
data = b""
while True:
    try:
        chunk = s.recv(65536)
    except ConnectionResetError:  # closed with our request unread: a hang-up too
        break
    if not chunk:
        break
    data += chunk
(n,) = struct.unpack(">I", data[:4])
print(json.dumps({"connect": "ok", "reply": json.loads(data[4:4 + n]),
                  "closed_after": len(data) == 4 + n}))
"""


def nobody_python() -> str | None:
    """An interpreter `nobody` can run (ours may live under root's 0700 home)."""
    for python in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run([SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}",
                                "--clear-groups", python, "-I", "-S", "-c", "import socket"],
                               capture_output=True, cwd="/", timeout=30)
        if probe.returncode == 0:
            return python
    return None


def as_nobody(python: str, socket_path: Path) -> dict[str, Any]:
    """What a ``stop`` request sent by user 65534 gets."""
    proc = subprocess.run([SETPRIV, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           python, "-I", "-S", "-c", NOBODY_CLIENT, str(socket_path)],
                          capture_output=True, text=True, cwd="/", timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="running a client as another user (setpriv) needs root")
@pytest.mark.skipif(SETPRIV is None, reason="setpriv not installed (Debian: util-linux)")
def test_another_user_is_stopped_by_the_folder_then_the_socket_then_the_peer_uid_check(
        guarded):
    python = nobody_python()
    if python is None:
        pytest.skip("no Python interpreter that user 65534 may run")
    sock, folder = guarded.socket_path, guarded.socket_path.parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    try:
        # As the daemon made them: the 0700 folder alone keeps nobody out.
        assert as_nobody(python, sock) == {"connect": "EACCES"}
        folder.chmod(0o711)  # others may pass through the folder: the 0600 socket holds
        assert as_nobody(python, sock) == {"connect": "EACCES"}
        sock.chmod(0o666)  # both opened up: SO_PEERCRED is the last line, and it holds
        seen = as_nobody(python, sock)
        assert seen["connect"] == "ok" and seen["closed_after"], seen
        assert seen["reply"]["ok"] is False, seen
        assert seen["reply"]["error"]["type"] == "Refused", seen
        assert "only its own user" in seen["reply"]["error"]["message"], seen
    finally:
        sock.chmod(0o600)
        folder.chmod(0o700)
    assert guarded.alive() and guarded.call("ping")["pid"] == guarded.pid  # `stop` not run
    assert f"refused a connection from uid {NOBODY}" in guarded.log()
    assert search_is_right(guarded)


# --- timeouts -------------------------------------------------------------------------------

def dropped_after(s: socket.socket, started: float) -> tuple[float, dict[str, Any]]:
    """Wait (reading nothing else) for the daemon's parting reply; seconds and reply."""
    s.settimeout(TIMEOUT + 3 * SLACK)
    reply = recv_message(s)
    elapsed = time.monotonic() - started
    assert hung_up(s)
    return elapsed, reply


def idle_client(daemon: TwinLibrary, first: bytes) -> tuple[float, dict[str, Any]]:
    with contextlib.closing(connect(daemon)) as s:
        started = time.monotonic()
        s.sendall(first)
        return dropped_after(s, started)


def trickling_client(daemon: TwinLibrary) -> tuple[float, dict[str, Any], int]:
    """Sends a valid ping a byte a second until the daemon gives up on it."""
    data = encode_message(request("ping"))
    with contextlib.closing(connect(daemon)) as s:
        started, sent = time.monotonic(), 0
        for byte in data:
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break  # it gave up between two bytes (a loaded machine): its reply waits
            sent += 1
            if select.select([s], [], [], 1.0)[0]:
                break
        elapsed, reply = dropped_after(s, started)
        return elapsed, reply, sent


def non_reading_client(daemon: TwinLibrary) -> int:
    """Pipelines 3,000 `status` requests and reads no reply until long after the timeout:
    the daemon, unable to hand over a reply, must give up; returns how many replies it
    had sent."""
    requests = encode_message(request("status")) * 3000
    with contextlib.closing(connect(daemon, timeout=0.5)) as s:
        with contextlib.suppress(TimeoutError):
            s.sendall(requests)  # stops once the daemon stops reading
        time.sleep(TIMEOUT + SLACK)
        s.settimeout(20)
        replies = 0
        while True:
            try:
                recv_message(s)
            except Exception:
                break
            replies += 1
        return replies


def patient_searches(daemon: TwinLibrary, seconds: float) -> list[float]:
    """Searches on one connection for ``seconds``; the latency of each (all right)."""
    latencies = []
    with contextlib.closing(connect(daemon)) as s:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            name = NAMES[i % len(NAMES)]
            t = time.perf_counter()
            reply = ask(s, "search", paths=[str(daemon.photos / name)], k=3)
            latencies.append(time.perf_counter() - t)
            assert right_answer(daemon, name, reply, by_content=False), reply
            i += 1
            time.sleep(0.05)
    return latencies


@pytest.mark.slow
def test_idle_trickling_and_non_reading_clients_are_dropped_at_the_timeout_not_before(
        guarded):
    with ThreadPoolExecutor(5) as pool:
        silent = pool.submit(idle_client, guarded, b"")
        half_header = pool.submit(idle_client, guarded, b"\x00\x00")
        trickling = pool.submit(trickling_client, guarded)
        non_reading = pool.submit(non_reading_client, guarded)
        others = pool.submit(patient_searches, guarded, TIMEOUT + SLACK)
        latencies = others.result()
        drops = []
        for waited, reply in (silent.result(), half_header.result()):
            assert TIMEOUT - 0.1 < waited < TIMEOUT + SLACK, waited
            assert reply["error"]["type"] == "Timeout", reply
            drops.append(waited)
        waited, reply, sent = trickling.result()
        assert TIMEOUT - 0.1 < waited < TIMEOUT + SLACK, waited
        assert reply["error"]["type"] == "Timeout" and sent <= TIMEOUT + SLACK + 1, (reply, sent)
        drops.append(waited)
        replies = non_reading.result()
        assert 0 < replies < 3000, replies
    # Meanwhile another client was answered, each query promptly.
    assert len(latencies) > 10 and max(latencies) < TIMEOUT / 2, latencies
    print(f"\ntimeouts ({TIMEOUT:g} s): silent, half-header and byte-a-second clients dropped "
          f"after {', '.join(f'{d:.2f}' for d in drops)} s ({sent} bytes trickled); "
          f"a non-reader was cut off after {replies} of 3000 replies; meanwhile "
          f"{len(latencies)} searches by another client, slowest {max(latencies) * 1000:.0f} ms")


def test_a_client_pausing_under_the_timeout_between_requests_keeps_its_connection(guarded):
    with contextlib.closing(connect(guarded)) as s:
        for _ in range(3):
            assert ask(s, "ping")["ok"] is True
            time.sleep(TIMEOUT * 0.6)
        data = base64.b64encode(shared("opencv/butterfly.jpg").read_bytes()).decode()
        reply = ask(s, "search_bytes", data=data, name="sent.jpg", k=2)
        assert {m["path"] for m in reply["result"]["results"]} == {
            str(guarded.photos / "butterfly.jpg"), str(guarded.photos / "twin-butterfly.jpg")}


# --- the cap and memory -----------------------------------------------------------------------

def not_refused(daemon: TwinLibrary) -> bool:
    with contextlib.closing(connect(daemon)) as s:
        try:
            return ask(s, "ping")["ok"]
        except (BrokenPipeError, ConnectionResetError):  # refused before it was asked
            return False


@pytest.mark.slow
def test_past_256_connections_a_client_is_refused_as_data_and_served_once_idle_ones_expire(
        guarded):
    with contextlib.ExitStack() as stack:
        started = time.monotonic()
        for _ in range(256):  # the daemon's cap: each holds a slot, saying nothing
            stack.enter_context(contextlib.closing(connect(guarded)))
        assert time.monotonic() - started < TIMEOUT / 2, "too slow to reach the cap in time"
        for _ in range(20):
            with contextlib.closing(connect(guarded)) as extra:
                reply = recv_message(extra)
                assert reply["error"]["type"] == "Refused", reply
                assert "busy" in reply["error"]["message"], reply
                assert hung_up(extra)
        # No one closed the 256: the timeout frees their slots.
        wait_until(lambda: not_refused(guarded), TIMEOUT + 2 * SLACK)
        assert search_is_right(guarded)
    assert guarded.log().count("all slots are taken") == 1  # a line, not one per client


def test_a_burst_of_200_thin_clients_connecting_at_once_are_all_served(guarded):
    # More than the accept backlog (128): connect() fails with EAGAIN until the daemon
    # catches up, which the client must wait out rather than report "no daemon".
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(guarded.client(timeout=30)) for _ in range(200)]
        with ThreadPoolExecutor(16) as pool:
            pids = set(pool.map(lambda c: c.call("ping")["pid"], clients))
    assert pids == {guarded.pid}


@pytest.mark.slow
def test_frames_that_claim_gigabytes_cost_the_daemon_only_the_bytes_really_sent(guarded):
    guarded.call("ping")
    rss_before = guarded.rss_kb()
    with contextlib.ExitStack() as stack:
        liars = []
        for _ in range(32):  # just under the limit, 1 KB really sent, then silence
            s = stack.enter_context(contextlib.closing(connect(guarded)))
            s.sendall(struct.pack(">I", 64 * 1024 * 1024 - 1) + b"[" * 1024)
            liars.append(s)
        for _ in range(32):  # 4 GB: refused at the header
            with contextlib.closing(connect(guarded)) as s:
                s.sendall(b"\xff\xff\xff\xff")
                reply = recv_message(s)
                assert "exceeds" in reply["error"]["message"], reply
        assert search_is_right(guarded)
        rss_during = guarded.rss_kb()
        for s in liars:  # and the liars get their timeout, as data
            assert recv_message(s)["error"]["type"] == "Timeout"
    print(f"\nRSS: {rss_before // 1024} MB before, {rss_during // 1024} MB with 32 frames "
          f"claiming 64 MB each held open and 32 claiming 4 GB refused")
    assert rss_during - rss_before < 32 * 1024, (rss_before, rss_during)


# --- fuzzing ------------------------------------------------------------------------------------

# Commands a fuzzer must not send with random arguments: they stop the daemon or make it
# read or forget whole folders (a real client may; a fuzzer would index "/").
UNSAFE = {"stop", "index", "reindex", "watch_add", "watch_remove", "not_duplicates"}
SAFE = ["ping", "status", "search", "search_bytes", "dupes", "same_picture", "watch_list"]
ARG_NAMES = ["paths", "k", "min_score", "data", "name", "query", "limit", "near", "keep"]


def _text() -> st.SearchStrategy[str]:
    return st.text(max_size=30).filter(lambda t: not t.lstrip("/").startswith(
        ("dev", "proc", "sys")))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text(),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(_text(), children, max_size=5),
    max_leaves=15)


@st.composite
def requests(draw: st.DrawFn) -> Any:
    """Mostly request-shaped objects (real commands, real photo paths, wrong types),
    sometimes any JSON at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    photo = st.sampled_from([str(Path("/PHOTOS") / n) for n in NAMES])
    value = JSON | photo | st.lists(photo | JSON, max_size=4)
    message = {"v": draw(st.just(1) | JSON),
               "command": draw(st.sampled_from(SAFE) | _text().filter(
                   lambda c: c not in UNSAFE)),
               "args": draw(st.dictionaries(st.sampled_from(ARG_NAMES) | _text(), value,
                                            max_size=4) | JSON)}
    for key in draw(st.sets(st.sampled_from(["data_dir", "extractor"]))):
        message[key] = draw(JSON)
    return message


def exchange(daemon: DaemonProcess, payload: bytes) -> list[dict[str, Any]]:
    """Send ``payload``, half-close, and return every reply frame up to the hang-up."""
    with contextlib.closing(connect(daemon)) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(1 << 16):
                data += chunk
    replies = []
    while data:
        (n,) = struct.unpack(">I", data[:4])
        assert len(data) >= 4 + n, f"a cut-off reply: {data[:200]!r}"
        replies.append(json.loads(data[4:4 + n]))
        data = data[4 + n:]
    return replies


def well_formed(reply: dict[str, Any]) -> bool:
    if reply.get("v") != 1 or not isinstance(reply.get("ok"), bool):
        return False
    if reply["ok"]:
        return "result" in reply
    err = reply.get("error")
    return (isinstance(err, dict) and isinstance(err.get("type"), str)
            and isinstance(err.get("message"), str) and isinstance(err.get("exit_code"), int))


FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@FUZZ
@given(payload=st.binary(max_size=300) | st.binary(max_size=300).map(
    lambda b: struct.pack(">I", len(b)) + b))
def test_random_bytes_get_well_formed_error_replies_and_the_daemon_stays_up(guarded, payload):
    replies = exchange(guarded, payload)
    assert all(well_formed(r) for r in replies), (payload, replies)
    assert replies or not payload, f"no reply to {payload!r}"
    assert guarded.alive()


@pytest.mark.slow
@FUZZ
@given(messages=st.lists(requests(), min_size=1, max_size=3))
@example(messages=[{"v": 1, "command": "search", "args": {"paths": ["/PHOTOS/\ud800.jpg"]}},
                   {"v": 1, "command": "ping", "data_dir": {"a": 1}}])
def test_random_json_requests_each_get_one_well_formed_reply(guarded, messages):
    fixed = json.loads(json.dumps(messages).replace("/PHOTOS", str(guarded.photos)))
    replies = exchange(guarded, b"".join(encode_message(m) for m in fixed))
    assert len(replies) == len(fixed), (fixed, replies)
    assert all(well_formed(r) for r in replies), (fixed, replies)
    assert guarded.alive()


def test_a_path_no_file_can_have_is_reported_as_missing_not_as_an_internal_error(guarded):
    with contextlib.closing(connect(guarded)) as s:
        reply = ask(s, "search", paths=[f"{guarded.photos}/\ud800.jpg", f"{guarded.photos}/a\0b"])
    assert reply["ok"], reply
    assert [r["error"]["type"] for r in reply["result"]] == ["MissingFileError"] * 2, reply


@pytest.mark.slow
def test_after_the_fuzzing_the_daemon_answers_a_real_query_and_no_thread_died(guarded):
    # Runs after the fuzz tests (file order): what they left behind.
    assert guarded.alive()
    with contextlib.closing(connect(guarded)) as s:
        reply = ask(s, "search", paths=[str(guarded.outside / "coffee.png")], k=3)
    assert right_answer(guarded, "coffee.png", reply, by_content=True), reply
    assert "Exception in thread" not in guarded.log(), guarded.log()


# --- load ---------------------------------------------------------------------------------------

CLIENTS, QUERIES = 64, 200


def one_client(daemon: TwinLibrary, n: int) -> tuple[dict[bool, list[float]], list[str]]:
    """``QUERIES`` searches on one connection, every 50th by content (through the model).
    Returns the latencies (by content or not) and the wrong answers."""
    latencies: dict[bool, list[float]] = {False: [], True: []}
    wrong = []
    with contextlib.closing(connect(daemon, timeout=120)) as s:
        for i in range(QUERIES):
            name = NAMES[(n * 7 + i) % len(NAMES)]
            by_content = i % 50 == n % 50
            query = (daemon.outside if by_content else daemon.photos) / name
            t = time.perf_counter()
            reply = ask(s, "search", paths=[str(query)], k=3)
            latencies[by_content].append(time.perf_counter() - t)
            if not right_answer(daemon, name, reply, by_content=by_content):
                wrong.append(f"{query}: {reply}")
    return latencies, wrong


def percentiles(latencies: list[float]) -> str:
    ms = sorted(t * 1000 for t in latencies)
    return (f"{len(ms)} queries: p50 {ms[len(ms) // 2]:.1f} ms, "
            f"p99 {ms[int(len(ms) * 0.99)]:.1f} ms, max {ms[-1]:.0f} ms")


@pytest.mark.slow
def test_64_clients_200_queries_each_all_get_the_right_answer(guarded):
    barrier = threading.Barrier(CLIENTS)

    def client(n: int) -> tuple[dict[bool, list[float]], list[str]]:
        barrier.wait(60)
        return one_client(guarded, n)

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(client, range(CLIENTS)))
    total = time.perf_counter() - started
    wrong = [w for _, ws in results for w in ws]
    indexed = [t for ts, _ in results for t in ts[False]]
    by_content = [t for ts, _ in results for t in ts[True]]
    assert len(indexed) + len(by_content) == CLIENTS * QUERIES
    assert not wrong, f"{len(wrong)} wrong answers, e.g. {wrong[:3]}"
    print(f"\n{CLIENTS} clients x {QUERIES} queries in {total:.1f} s "
          f"({CLIENTS * QUERIES / total:.0f}/s), 0 wrong; indexed photos, "
          f"{percentiles(indexed)}; by content (model), {percentiles(by_content)}; "
          f"all, {percentiles(indexed + by_content)}")
    assert guarded.alive()
