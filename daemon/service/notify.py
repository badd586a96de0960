"""Desktop notifications of new duplicates: "New duplicate: X", the review page one click
away (freedesktop Notifications over the D-Bus session bus, with ``jeepney``).

Off by default: ``notify = true`` in the config file (or ``FINDSIMILAR_NOTIFY=1``).
One thread (``fs-notify``) owns the bus connection: it sends the notifications queued by
the indexing thread and listens for the user's click (``ActionInvoked``), which opens
the results page of the new photo, with its duplicate tiers (``findsimilar show``).
No session bus, or no notification server on it, costs one log line; the daemon goes
on, and tries the bus again a minute later.
"""

from __future__ import annotations

import html
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from findsimilar.jsonout import displayable

__all__ = ["Notifier", "notification_text"]

log = logging.getLogger(__name__)

APP_NAME = "findsimilar"
_REVIEW = "default"  # the action a click on the notification itself invokes
_RETRY_AFTER = 60.0
_SHOWN = 200  # notifications whose click is still listened for

Opener = Callable[[str], None]


def notification_text(group: dict[str, Any]) -> tuple[str, str]:
    """The summary and body (markup escaped) of the notification for ``group``."""
    new = group.get("new") or group["files"][-1:]
    name = os.path.basename(new[0])
    keep = group["keep"]
    kind = {"exact": "an exact copy", "near": "a copy"}.get(group["tier"], "like")
    if keep in new:  # the new file is the better one: the others are its copies
        others = [f for f in group["files"] if f != keep]
        body = f"{name} has {len(others)} duplicate(s), e.g. {os.path.basename(others[0])}"
    else:
        body = f"{name} is {kind} of {os.path.basename(keep)} ({os.path.dirname(keep)})"
    more = f" (and {len(new) - 1} more)" if len(new) > 1 else ""
    # D-Bus strings are UTF-8: a name that is not shows its stray bytes as \xHH.
    return (displayable(f"New duplicate: {name}{more}"),
            html.escape(displayable(body), quote=False))


def open_review(photo: str) -> None:
    """The results page of ``photo`` (its duplicate tiers first), in the browser."""
    subprocess.Popen([sys.executable, "-m", "findsimilar", "show", "--notify", photo],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


class Notifier:
    """Sends notifications from its own thread; ``notify`` never blocks."""

    def __init__(self, opener: Opener = open_review) -> None:
        self.opener = opener
        self._outbox: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self.sent = 0
        self.problem: str | None = None  # why notifications cannot be shown now
        self._thread = threading.Thread(target=self._run, name="fs-notify", daemon=True)
        self._thread.start()

    def notify(self, group: dict[str, Any]) -> None:
        self._outbox.put(group)

    def close(self) -> None:
        self._stop.set()
        self._outbox.put(None)
        self._thread.join(2)

    # -- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._serve()
            except Exception as exc:  # no bus, or it went away: say so once, try later
                why = f"{type(exc).__name__}: {exc}"
                if why != self.problem:
                    log.warning("desktop notifications are not shown: %s (D-Bus session "
                                "bus: DBUS_SESSION_BUS_ADDRESS)", why)
                self.problem = why
            self._stop.wait(_RETRY_AFTER)

    def _serve(self) -> None:
        from jeepney import DBusAddress, MatchRule, MessageType, message_bus, new_method_call
        from jeepney.io.blocking import open_dbus_connection

        server = DBusAddress("/org/freedesktop/Notifications",
                             bus_name="org.freedesktop.Notifications",
                             interface="org.freedesktop.Notifications")
        conn = open_dbus_connection(bus="SESSION")
        try:
            rule = MatchRule(type="signal", interface=server.interface, path=server.object_path)
            conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=5)
            if self.problem:
                log.info("desktop notifications are shown again")
            self.problem = None
            asked: dict[int, str] = {}  # serial of a Notify call -> its photo
            shown: dict[int, str] = {}  # notification id -> its photo
            while not self._stop.is_set():
                self._send_queued(conn, server, new_method_call, asked)
                try:
                    msg = conn.receive(timeout=0.25)
                except TimeoutError:
                    continue
                kind = msg.header.message_type
                serial = msg.header.fields.get(5)  # REPLY_SERIAL
                if kind == MessageType.method_return and serial in asked:
                    shown[int(msg.body[0])] = asked.pop(serial)
                    while len(shown) > _SHOWN:
                        shown.pop(next(iter(shown)))
                elif kind == MessageType.error and serial in asked:
                    asked.pop(serial)
                    raise RuntimeError(f"the notification server said {msg.body}")
                elif kind == MessageType.signal and msg.header.fields.get(3) == "ActionInvoked":
                    nid, action = msg.body
                    if nid in shown and action == _REVIEW:
                        self.opener(shown.pop(nid))
                elif kind == MessageType.signal and msg.header.fields.get(3) == \
                        "NotificationClosed":
                    shown.pop(msg.body[0], None)
        finally:
            conn.close()

    def _send_queued(self, conn: Any, server: Any, new_method_call: Any,
                     asked: dict[int, str]) -> None:
        while True:
            try:
                group = self._outbox.get_nowait()
            except queue.Empty:
                return
            if group is None:
                return
            summary, body = notification_text(group)
            photo = (group.get("new") or group["files"][-1:])[0]
            msg = new_method_call(server, "Notify", "susssasa{sv}i", (
                APP_NAME, 0, "edit-copy", summary, body, [_REVIEW, "Review duplicates"],
                {"category": ("s", "transfer.complete")}, -1))
            serial = next(conn.outgoing_serial)
            conn.send(msg, serial=serial)
            asked[serial] = photo
            self.sent += 1
