"""The feed behind `dupes --follow` (daemon/service/follow.py): numbering, waiting,
groups said once, a follower that comes back after a restart or after missing some."""

from __future__ import annotations

import threading
import time

from findsimilar.daemon.service import follow
from findsimilar.daemon.service.follow import DupesFeed


def group(*files: str, tier: str = "exact") -> dict:
    return {"tier": tier, "keep": files[0], "files": list(files)}


def test_a_follower_starts_from_now_and_gets_what_comes_after() -> None:
    feed = DupesFeed()
    assert not feed.wanted()
    feed.publish([group("/a", "/b")], ["/b"])  # before anyone listened
    first = feed.poll(None, 5, lambda: False)
    assert first == {"seq": 1, "groups": [], "missed": 0} and feed.wanted()
    threading.Timer(0.2, feed.publish, ([group("/c", "/d")], ["/d"])).start()
    started = time.monotonic()
    reply = feed.poll(first["seq"], 10, lambda: False)
    assert time.monotonic() - started < 5  # woken by the group, not the timeout
    assert [g["files"] for g in reply["groups"]] == [["/c", "/d"]]
    assert reply["groups"][0]["new"] == ["/d"] and reply["seq"] == 2


def test_a_group_is_said_once_until_it_changes() -> None:
    feed = DupesFeed()
    assert len(feed.publish([group("/a", "/b")], ["/b"])) == 1
    assert feed.publish([group("/a", "/b")], ["/b"]) == []  # the same files and keeper
    assert len(feed.publish([group("/a", "/b", "/c")], ["/c"])) == 1  # a new member
    assert len(feed.publish([group("/b", "/a")], [])) == 1  # another keeper


def test_waiting_ends_at_the_timeout_or_when_the_caller_stops() -> None:
    feed = DupesFeed()
    started = time.monotonic()
    assert feed.poll(0, 0.3, lambda: False)["groups"] == []
    assert 0.25 < time.monotonic() - started < 5
    started = time.monotonic()
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert feed.poll(0, 20, stop.is_set)["groups"] == []
    assert time.monotonic() - started < 5
    assert follow.MOST_WAIT < 60  # a poll always ends inside the client's timeout


def test_after_a_restart_and_after_too_long_away(monkeypatch) -> None:
    feed = DupesFeed()
    feed.publish([group("/a", "/b")], ["/b"])
    # A follower of the previous daemon asks after its number 7: it gets all there is.
    assert [g["seq"] for g in feed.poll(7, 0, lambda: False)["groups"]] == [1]
    monkeypatch.setattr(follow, "KEEP", 2)
    small = DupesFeed()
    for n in range(5):
        small.publish([group(f"/x{n}", f"/y{n}")], [f"/y{n}"])
    reply = small.poll(1, 0, lambda: False)
    assert [g["seq"] for g in reply["groups"]] == [4, 5] and reply["missed"] == 2


def test_a_notification_about_a_name_that_is_not_utf8_is_valid_utf8() -> None:
    import os

    from findsimilar.daemon.service.notify import notification_text

    new = os.fsdecode(b"/p/caf\xe9 & co.jpg")
    summary, body = notification_text({"tier": "exact", "keep": "/p/a.jpg", "new": [new],
                                       "files": ["/p/a.jpg", new]})
    assert summary == "New duplicate: caf\\xe9 & co.jpg"
    assert body == "caf\\xe9 &amp; co.jpg is an exact copy of a.jpg (/p)"
    (summary + body).encode("utf-8")  # D-Bus strings are UTF-8
