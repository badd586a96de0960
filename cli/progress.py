"""A one-line progress bar with rate and ETA, for terminals only; the rate and the ETA
only once the work has lasted long enough to mean them (as the daemon's ``rate``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]

# No rate (nor ETA) before this much time and this many files: two files done in a
# moment would say thousands a second (the daemon's metrics.MIN_SPAN_S, MIN_FILES).
MIN_SPAN_S = 5.0
MIN_FILES = 2


class ProgressBar:
    """Call with (done, total); draws at most ~10 times a second on a TTY."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 28) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        filled = int(self.width * done / total) if total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}  "
                          f"{self._speed(done, total, now - self.started)} ")
        self.stream.flush()
        self._drawn = True

    @staticmethod
    def _speed(done: int, total: int, elapsed: float) -> str:
        """"12.3/s  ETA 0:42", or blanks while the work is too short for a rate."""
        if elapsed < MIN_SPAN_S or done < MIN_FILES:
            return "    -/s  ETA  -:--"
        rate = done / elapsed
        return f"{rate:5.1f}/s  ETA {_clock((total - done) / rate)}"

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
