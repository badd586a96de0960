"""`findsimilar dupes --follow` (issue 14, item 5): a real daemon watching a real folder,
the real command reading its JSON lines; copies dropped into the folder are reported as
groups with the new file named, a photo with no duplicate is not, and a restarted
daemon is followed again without restarting the command."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..conftest import copy_photos, shared
from .daemon_harness import DaemonProcess, make_photos, module_daemon, wait_until

PHOTOS = ["skimage/coffee.png", "skimage/astronaut.png", "skimage/chelsea.png"]
WITHIN = 60  # seconds a group may take to arrive (a busy CI machine; typically < 2 s)


class Follower:
    """`findsimilar dupes --follow` as a user runs it; its lines and stderr collected."""

    def __init__(self, daemon: DaemonProcess, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "findsimilar", "dupes", "--follow", *args],
            env=daemon.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_errors, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def _read_errors(self) -> None:
        assert self.proc.stderr is not None
        self.errors.extend(self.proc.stderr)

    def next_group(self, timeout: float = WITHIN) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no group within {timeout} s; stderr: {self.errors}") from None

    def group_with(self, path: Path) -> dict[str, Any]:
        """The next group that names ``path`` as new (earlier ones are skipped)."""
        deadline = time.monotonic() + WITHIN
        while True:
            group = self.next_group(max(0.1, deadline - time.monotonic()))
            if str(path) in group["new"]:
                return group

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def indexed(d: DaemonProcess, count: int) -> None:
    """Wait until the watched folder's first scan is done (``count`` photos indexed and
    nothing queued): a copy made before would be found by that scan, not announced."""
    wait_until(lambda: (s := d.status())["indexed"] >= count and s["state"] == "idle"
               and not s["queued"], WITHIN, message=lambda: str(d.status()))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    base = tmp_path_factory.mktemp("follow")
    lib = base / "lib"
    copy_photos(lib, PHOTOS)
    # No background duplicate pre-check: what arrives is found because someone follows.
    with module_daemon(base, FINDSIMILAR_PRECHECK_AFTER="0") as d:
        d.call("watch_add", path=str(lib), excludes=[])
        indexed(d, len(PHOTOS))
        d.lib = lib  # type: ignore[attr-defined]
        d.base = base  # type: ignore[attr-defined]
        yield d


@pytest.fixture(scope="module")
def follower(daemon: DaemonProcess) -> Iterator[Follower]:
    f = Follower(daemon)
    deadline = time.monotonic() + 30  # it has polled once: the daemon knows it listens
    while time.monotonic() < deadline and not daemon.status().get("followed"):
        time.sleep(0.05)
    yield f
    f.stop()


def test_copies_dropped_into_a_watched_folder_are_reported_as_they_arrive(
        daemon: DaemonProcess, follower: Follower) -> None:
    lib: Path = daemon.lib  # type: ignore[attr-defined]
    copy = lib / "astronaut-copy.png"
    shutil.copy(lib / "astronaut.png", copy)
    exact = follower.group_with(copy)
    assert exact["tier"] == "exact" and exact["keep"] == str(lib / "astronaut.png")
    assert exact["files"] == [str(lib / "astronaut.png"), str(copy)] and exact["new"] == [str(copy)]

    from PIL import Image

    small = daemon.base / "coffee-small.jpg"  # type: ignore[attr-defined]
    with Image.open(lib / "coffee.png") as im:
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(small, quality=80)
    alone = make_photos(daemon.base / "new", 1, seed=7)[0]  # type: ignore[attr-defined]
    shutil.copy(alone, lib / alone.name)  # a photo with no duplicate: no line for it
    shutil.move(small, lib / small.name)  # (renamed in: a move event)
    near = follower.group_with(lib / small.name)
    assert near["tier"] == "near" and near["keep"] == str(lib / "coffee.png")
    assert set(near["files"]) == {str(lib / "coffee.png"), str(lib / small.name)}
    assert isinstance(near["seq"], int) and near["seq"] > exact["seq"]
    daemon.wait_idle()
    time.sleep(1)  # its own look has been had
    while not follower.lines.empty():
        assert str(lib / alone.name) not in follower.lines.get()["files"]


def test_the_same_group_is_not_said_twice_and_a_changed_one_is(
        daemon: DaemonProcess, follower: Follower) -> None:
    lib: Path = daemon.lib  # type: ignore[attr-defined]
    (lib / "astronaut-copy.png").touch()  # an event, the group unchanged
    second = lib / "astronaut-copy-2.png"
    shutil.copy(lib / "astronaut.png", second)  # the group changes: a third member
    group = follower.group_with(second)
    assert len(group["files"]) == 3 and group["tier"] == "exact"


def test_a_restarted_daemon_is_followed_again(daemon: DaemonProcess,
                                              follower: Follower) -> None:
    lib: Path = daemon.lib  # type: ignore[attr-defined]
    scans = daemon.log().count(f"reconciled {lib}:")
    daemon.terminate()
    daemon.start()
    # Its start-up scan is done: a copy made before would be found by it, not announced.
    wait_until(lambda: daemon.log().count(f"reconciled {lib}:") > scans, WITHIN)
    copy = lib / "chelsea-copy.png"
    deadline = time.monotonic() + 30  # the follower has reconnected and polled
    while time.monotonic() < deadline and not daemon.status().get("followed"):
        time.sleep(0.05)
    shutil.copy(lib / "chelsea.png", copy)
    group = follower.group_with(copy)
    assert group["keep"] == str(lib / "chelsea.png")
    assert any("went away" in e for e in follower.errors), follower.errors
    assert follower.proc.poll() is None


def test_follow_needs_the_daemon_and_takes_no_action(daemon: DaemonProcess) -> None:
    for args, code, words in ((["--no-daemon"], 8, "cannot run with --no-daemon"),
                              (["--action", "trash"], 2, "--follow takes only")):
        out = subprocess.run([sys.executable, "-m", "findsimilar", "dupes", "--follow", *args],
                             env=daemon.env, capture_output=True, text=True, timeout=60)
        assert out.returncode == code and words in out.stderr, out
        assert "Traceback" not in out.stderr


# -- the desktop notification -------------------------------------------------------------

class NotificationServer:
    """A freedesktop notification server on a private session bus (the part of a desktop
    that cannot run here): it records each Notify call and can "click" a notification."""

    def __init__(self, address: str) -> None:
        from jeepney import MessageType, new_method_return
        from jeepney.bus_messages import message_bus
        from jeepney.io.blocking import open_dbus_connection

        self.conn = open_dbus_connection(bus=address)
        reply = self.conn.send_and_get_reply(
            message_bus.RequestName("org.freedesktop.Notifications"), timeout=10)
        assert reply.body == (1,), reply.body  # the primary owner
        self.calls: queue.Queue[tuple[int, tuple]] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()

        def serve() -> None:
            ids = iter(range(1, 10_000))
            while not self._stop.is_set():
                try:
                    with self._lock:
                        msg = self.conn.receive(timeout=0.1)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if msg.header.message_type == MessageType.method_call:
                    nid = next(ids)
                    with self._lock:
                        self.conn.send(new_method_return(msg, "u", (nid,)))
                    if msg.header.fields.get(3) == "Notify":
                        self.calls.put((nid, msg.body))

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()

    def click(self, nid: int) -> None:
        from jeepney import DBusAddress, new_signal

        where = DBusAddress("/org/freedesktop/Notifications",
                            interface="org.freedesktop.Notifications")
        with self._lock:
            self.conn.send(new_signal(where, "ActionInvoked", "us", (nid, "default")))

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.conn.close()


@pytest.fixture()
def session_bus() -> Iterator[str]:
    if not shutil.which("dbus-daemon"):
        pytest.skip("dbus-daemon is not installed (Debian: dbus-daemon)")
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"],
                           stdout=subprocess.PIPE, text=True)
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    try:
        yield address
    finally:
        bus.terminate()
        bus.wait(10)


def test_a_new_duplicate_is_a_desktop_notification_and_a_click_opens_its_page(
        tmp_path: Path, session_bus: str) -> None:
    lib, opened = tmp_path / "lib", tmp_path / "opened.txt"
    lib.mkdir()
    shutil.copy(shared("skimage/coffee.png"), lib / "coffee.png")
    bin_dir = tmp_path / "bin"  # the browser, which cannot run here: records the page
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"
    opener.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    opener.chmod(0o755)
    server = NotificationServer(session_bus)
    import os

    env = {"FINDSIMILAR_NOTIFY": "1", "FINDSIMILAR_PRECHECK_AFTER": "0",
           "DBUS_SESSION_BUS_ADDRESS": session_bus, "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    try:
        with module_daemon(tmp_path, **env) as d:
            d.call("watch_add", path=str(lib), excludes=[])
            indexed(d, 1)  # watched and scanned: what arrives now is an event
            copy = lib / "coffee (copy).png"
            shutil.copy(lib / "coffee.png", copy)
            try:
                nid, (app, _, _, summary, body, actions, _, _) = server.calls.get(timeout=WITHIN)
            except queue.Empty:
                raise AssertionError(f"no notification; daemon log:\n{d.log()}") from None
            assert app == "findsimilar" and summary == "New duplicate: coffee (copy).png"
            assert "exact copy of coffee.png" in body and "default" in actions
            wait_until(lambda: d.status()["notifications"] == {"sent": 1, "problem": None}, 10,
                       message=lambda: str(d.status()["notifications"]))
            server.click(nid)
            deadline = time.monotonic() + WITHIN
            # (the opener's `echo >>` makes the file before it writes the line)
            while time.monotonic() < deadline and not (opened.exists() and opened.read_text()):
                time.sleep(0.1)
            assert opened.exists() and opened.read_text(), d.log()
            page = Path(opened.read_text().split()[0])
            assert "coffee (copy).png" in page.read_text() or "coffee%20%28copy%29.png" in \
                page.read_text()
    finally:
        server.close()


def test_no_session_bus_costs_a_line_in_status_not_the_daemon(tmp_path: Path) -> None:
    env = {"FINDSIMILAR_NOTIFY": "1", "DBUS_SESSION_BUS_ADDRESS": f"unix:path={tmp_path}/none"}
    with module_daemon(tmp_path, **env) as d:
        problem = wait_until(lambda: (d.status()["notifications"] or {}).get("problem"), 20)
        assert "FileNotFoundError" in problem or "No such file" in problem, problem
        assert d.alive() and d.call("ping")
    assert d.log().count("desktop notifications are not shown") == 1
