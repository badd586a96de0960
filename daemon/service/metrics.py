"""The daemon's monitoring numbers (``status --json``: ``metrics``): search latency,
indexing throughput, and the rule that a rate needs a window long enough to mean it.

* :class:`Latencies`: the last 1,000 search times of one kind in a fixed ring (one float
  slot written per query, under a lock; the percentiles sort a copy only when asked);
* :class:`SearchTimes`: two of them, for a query that is an indexed photo (its vector
  read from the store) and for a new photo (decoded and run through the model); and how
  many searches had their near-tied first results pixel-checked (``daemon.rerank``), and
  how many of those the check reordered;
* :class:`Throughput`: files a second over the last minute of indexing work. Its clock
  runs only while a run produces files (from the run's start to its last file), so idle
  hours do not dilute it; a span under :data:`MIN_SPAN_S` gives no rate (None), never
  a number such as 127942.68 files/s from two files finished a few microseconds apart.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Literal

__all__ = ["MIN_SPAN_S", "WINDOW", "Latencies", "SearchTimes", "Throughput", "percentile"]

WINDOW = 1000  # searches kept per kind
RATE_WINDOW_S = 60.0  # seconds of indexing work a rate is measured over
MIN_SPAN_S = 5.0  # below this much work (or with fewer than MIN_FILES) there is no rate
MIN_FILES = 2

Kind = Literal["indexed", "new"]


def percentile(sorted_values: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of a sorted, non-empty list:
    a value that was measured, never one interpolated between two."""
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


class Latencies:
    """The last ``size`` durations (seconds) in a ring; thread-safe."""

    def __init__(self, size: int = WINDOW) -> None:
        self._ring = [0.0] * size
        self._next = 0
        self._count = 0  # how many of the slots hold a measurement
        self._total = 0  # measurements ever recorded
        self._lock = threading.Lock()

    def record(self, seconds: float) -> None:
        with self._lock:
            self._ring[self._next] = seconds
            self._next = (self._next + 1) % len(self._ring)
            self._count = min(self._count + 1, len(self._ring))
            self._total += 1

    def summary(self) -> dict[str, Any]:
        """``count`` (in the window), ``total`` (since start), ``p50_ms``, ``p99_ms``
        (None with no measurement yet)."""
        with self._lock:
            values = self._ring[:self._count]
            total = self._total
        values.sort()  # outside the lock: a search never waits for a status
        if not values:
            return {"count": 0, "total": total, "p50_ms": None, "p99_ms": None}
        return {"count": len(values), "total": total,
                "p50_ms": _ms(percentile(values, 50)), "p99_ms": _ms(percentile(values, 99))}


class SearchTimes:
    """Search latency by kind of query: ``indexed`` photo or ``new`` photo."""

    def __init__(self, size: int = WINDOW) -> None:
        self.kinds: dict[str, Latencies] = {"indexed": Latencies(size), "new": Latencies(size)}
        self.size = size
        self._reranked = {"checked": 0, "reordered": 0}  # since the start
        self._lock = threading.Lock()

    def record(self, kind: Kind, seconds: float, reranked: bool | None = None) -> None:
        """One search's time; ``reranked``: its near tie was checked (True: reordered)."""
        self.kinds[kind].record(seconds)
        if reranked is not None:
            with self._lock:
                self._reranked["checked"] += 1
                self._reranked["reordered"] += reranked

    def summary(self) -> dict[str, Any]:
        with self._lock:
            reranked = dict(self._reranked)
        return {"window": self.size, **{k: v.summary() for k, v in self.kinds.items()},
                "reranked": reranked}


class Throughput:
    """Files a second of indexing, over the last minute of indexing work and over the
    current (or last) run; fed by the indexing thread, read by ``status`` threads.

    ``begin`` starts a run, ``advance(done)`` says ``done`` of its files are finished;
    ``now`` is injectable for tests (a monotonic clock)."""

    def __init__(self, now: Any = time.monotonic) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._busy = 0.0  # work seconds of the runs before this one
        self._files = 0  # files of the runs before this one
        self._run_start: float | None = None
        self._run_done = 0
        self._run_last: float | None = None  # when this run's last file was finished
        self._last_run: dict[str, Any] | None = None  # the last run that indexed files
        # (work seconds, files) since the daemon started, at least 0.5 work s apart.
        self._samples: deque[tuple[float, int]] = deque([(0.0, 0)], maxlen=256)

    def begin(self) -> None:
        with self._lock:
            self._close_run()
            self._run_start, self._run_done, self._run_last = self._now(), 0, None

    def advance(self, done: int) -> None:
        with self._lock:
            if self._run_start is None:
                self._run_start = self._now()
            t = self._now()
            self._run_done, self._run_last = done, t
            point = (self._busy + t - self._run_start, self._files + done)
            if len(self._samples) >= 2 and point[0] - self._samples[-2][0] < 0.5:
                self._samples[-1] = point
            else:
                self._samples.append(point)

    def rate(self) -> float | None:
        """Files a second over the last minute of indexing work, or None while that
        work is shorter than MIN_SPAN_S or finished fewer than MIN_FILES files."""
        return self.recent()["files_per_s"]

    def recent(self) -> dict[str, Any]:
        with self._lock:
            work, files = self._samples[-1]
            base = self._samples[0]
            for sample in self._samples:  # the newest at least a minute of work back
                if work - sample[0] < RATE_WINDOW_S:
                    break
                base = sample
        return _rate(files - base[1], work - base[0])

    def summary(self) -> dict[str, Any]:
        """The recent rate; ``run``: the current run's, or the last one's that indexed
        files (None before any); ``since_start``: every run's since the daemon started."""
        recent = self.recent()
        with self._lock:
            run = self._last_run
            if self._run_start is not None and self._run_last is not None:
                run = _rate(self._run_done, self._run_last - self._run_start)
            busy, files = self._samples[-1]
        return {**recent, "run": run, "since_start": _rate(files, busy)}

    def _close_run(self) -> None:
        if self._run_start is not None and self._run_last is not None:
            self._last_run = _rate(self._run_done, self._run_last - self._run_start)
            self._busy += self._run_last - self._run_start
            self._files += self._run_done
        self._run_start = self._run_last = None
        self._run_done = 0


def _rate(files: int, seconds: float) -> dict[str, Any]:
    meaningful = seconds >= MIN_SPAN_S and files >= MIN_FILES
    return {"files": files, "seconds": round(seconds, 1),
            "files_per_s": round(files / seconds, 2) if meaningful else None}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)  # to the microsecond: an indexed query takes ~0.4 ms
