"""Daemon logging: journald-friendly under systemd, timestamped otherwise, and bounded.

A storm (10,000 files dropped at once, a folder of broken files, a client flooding the
socket) must not become a line per file: each call site may log ``burst`` lines per
``window`` seconds; the rest are counted and summed up in one line when the window ends.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from findsimilar.config import under_journald

__all__ = ["RepeatFilter", "flush_repeats", "setup_logging"]

_repeats: RepeatFilter | None = None


def setup_logging(verbose: bool = False) -> None:
    """Log to stderr. Under systemd (JOURNAL_STREAM set) the journal adds the time
    and the unit, so lines carry only a syslog priority prefix and the message."""
    global _repeats
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _repeats = RepeatFilter()
    handler.addFilter(_repeats)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("watchdog").setLevel(logging.WARNING)


def flush_repeats() -> None:
    """Write the summaries of windows that have ended (the daemon calls this often, so
    a storm's summary does not wait for the next line from the same place)."""
    if _repeats is not None:
        _repeats.flush()


@dataclass
class _Site:
    started: float
    name: str
    level: int
    passed: int = 0
    dropped: int = 0
    last: str = ""


class RepeatFilter(logging.Filter):
    """At most ``burst`` records per call site (source file and line) per ``window``
    seconds pass; the others are counted, and one line per site says how many were left
    out (and the last of them) once its window is over."""

    def __init__(self, burst: int = 20, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self._sites: dict[tuple[str, int], _Site] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "repeats_summary", False):
            return True
        now = self.clock()
        with self._lock:
            ended = self._take_ended(now)
            key = (record.pathname, record.lineno)
            site = self._sites.setdefault(key, _Site(now, record.name, record.levelno))
            site.passed += 1
            if site.passed > self.burst:
                site.dropped += 1
                site.last = record.getMessage()
        self._summarise(ended)  # outside the lock: it logs, which comes back here
        return site.passed <= self.burst

    def flush(self) -> None:
        with self._lock:
            ended = self._take_ended(self.clock())
        self._summarise(ended)

    def _take_ended(self, now: float) -> list[_Site]:
        ended = [k for k, s in self._sites.items() if now - s.started >= self.window]
        return [s for s in (self._sites.pop(k) for k in ended) if s.dropped]

    def _summarise(self, sites: list[_Site]) -> None:
        for site in sites:
            logging.getLogger(site.name).log(
                site.level, "... and %d more like that in %.0f s (the last: %s)",
                site.dropped, self.window, site.last, extra={"repeats_summary": True})


class _JournalFormatter(logging.Formatter):
    _PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                 logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self._PRIORITY.get(record.levelno, 6)}>{super().format(record)}"
