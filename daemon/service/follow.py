"""Duplicates as they appear: the groups found around photos that just arrived, for
``findsimilar dupes --follow`` and the desktop notification.

After the indexing thread applies file events from the watcher, it queues an
``Announce`` task (``scheduler``) with the changed paths, but only while someone
listens: a follower polled in the last ``FOLLOWER_FRESH`` seconds, or notifications
are on. The task lists the groups around those files (``dupes.around``) and
:class:`DupesFeed` keeps each group that is new or changed (another member, another
keeper), numbered, for the followers to collect.

Followers poll (the socket protocol is one request, one reply): ``dupes_follow`` with
the number of the last group they have (none at first: they start from now) waits up to
``wait`` seconds for newer ones. A follower that reconnects with its number misses
nothing still kept (the last ``KEEP`` groups).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from findsimilar.daemon.dupes.grouping import TIERS, DupesOptions

__all__ = ["FOLLOWER_FRESH", "KEEP", "MOST_WAIT", "Announcer", "DupesFeed"]

log = logging.getLogger(__name__)

FOLLOWER_FRESH = 90.0  # seconds a follower's last poll keeps the feed on
KEEP = 1000  # groups kept for followers that reconnect
MOST_WAIT = 25.0  # seconds a poll may wait: well inside the client's 60 s timeout
_SEEN = 20_000  # group signatures remembered, so an unchanged group is not said again


class DupesFeed:
    """The groups found as photos arrived, numbered from 1 (thread-safe)."""

    def __init__(self, always: bool = False) -> None:
        self.always = always  # notifications are on: look even with no follower
        self._cond = threading.Condition()
        self._groups: deque[tuple[int, dict[str, Any]]] = deque(maxlen=KEEP)
        self._seq = 0
        self._seen: OrderedDict[tuple, None] = OrderedDict()
        self._polled = -FOLLOWER_FRESH  # monotonic time of the last poll

    def followed(self) -> bool:
        """A follower asked in the last ``FOLLOWER_FRESH`` seconds."""
        return time.monotonic() - self._polled < FOLLOWER_FRESH

    def wanted(self) -> bool:
        """Whether new photos should be looked at for duplicates now."""
        return self.always or self.followed()

    def publish(self, groups: list[dict[str, Any]], changed: list[str]) -> list[dict]:
        """Keep the groups that are new or changed since they were last published, each
        with ``new``: its files among ``changed``; returns them."""
        fresh = []
        changed_set = set(changed)
        with self._cond:
            for group in groups:
                signature = (group["tier"], group["keep"], tuple(sorted(group["files"])))
                if signature in self._seen:
                    self._seen.move_to_end(signature)
                    continue
                self._seen[signature] = None
                while len(self._seen) > _SEEN:
                    self._seen.popitem(last=False)
                self._seq += 1
                event = {**group, "seq": self._seq,
                         "new": [f for f in group["files"] if f in changed_set]}
                self._groups.append((self._seq, event))
                fresh.append(event)
            if fresh:
                self._cond.notify_all()
        return fresh

    def poll(self, after: int | None, wait: float,
             should_stop: Callable[[], bool]) -> dict[str, Any]:
        """The groups numbered above ``after`` (None: from now on, so none), waiting up to
        ``wait`` seconds (at most ``MOST_WAIT``) for the first; ``seq`` is the number to
        ask after next time. ``missed`` counts groups no longer kept."""
        deadline = time.monotonic() + max(0.0, min(float(wait), MOST_WAIT))
        with self._cond:
            self._polled = time.monotonic()
            if after is None:
                return {"seq": self._seq, "groups": [], "missed": 0}
            after = int(after)
            if after > self._seq:  # the daemon restarted: numbers start again
                after = 0
            while self._seq <= after and not should_stop():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.25))  # should_stop is asked between waits
                self._polled = time.monotonic()
            groups = [g for seq, g in self._groups if seq > after]
            oldest = self._groups[0][0] if self._groups else self._seq + 1
            return {"seq": self._seq, "groups": groups,
                    "missed": max(0, oldest - after - 1) if groups else 0}


class Announcer:
    """Photos arrived (file events applied): queue a look for duplicates around them if
    anyone listens (``changed``), and when that task runs (``run``) keep the new or
    changed groups for followers and notify the desktop of each."""

    def __init__(self, feed: DupesFeed, groups_around: Callable[..., list[dict[str, Any]]],
                 queue: Callable[[list[str]], None], notifier: Any = None) -> None:
        self.feed = feed
        self.groups_around = groups_around  # Engine.groups_around
        self.queue = queue
        self.notifier = notifier

    def changed(self, paths: list[str]) -> None:
        if paths and self.feed.wanted():
            self.queue(paths)

    def run(self, paths: list[str], should_stop: Callable[[], bool]) -> dict[str, Any]:
        # Every tier: a follower picks its own (`--tier`); notifications are for copies.
        started = time.monotonic()
        groups = self.groups_around(paths, DupesOptions(tiers=TIERS), should_stop=should_stop)
        if should_stop():
            # Stopped for other work (or the daemon stopping): look again after it, with
            # the paths that work brings (the tasks merge); verdicts made are cached.
            self.queue(paths)
            return {"groups": 0, "interrupted": True}
        fresh = self.feed.publish(groups, paths)
        if fresh:
            log.info("%d new or changed duplicate group(s) around %d arriving path(s), found "
                     "in %.2f s", len(fresh), len(paths), time.monotonic() - started)
        if self.notifier is not None:
            for group in fresh:
                if group["new"] and group["tier"] in ("exact", "near"):
                    self.notifier.notify(group)
        return {"groups": len(fresh)}
