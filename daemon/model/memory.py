"""Give memory back to the system once big pictures are done with.

Why the daemon kept ~1.5 GB after a few big pictures (measured on 2 cores, glibc 2.36,
30 Nov 2026; ~600 MB before them: the loaded model and libraries):

* The pixels of a big picture (Pillow's 16 MB blocks, the bands of ``decode._shrink``,
  NumPy copies) are freed at once, but glibc's malloc keeps them. Its mmap threshold is
  dynamic: the first big block is ``mmap``-ed and unmapped on free, and that free raises
  the threshold to the block's size (at most 32 MB) and the trim threshold to twice
  that. From then on such blocks come from the heap arenas, which give memory back only
  from their top, and only once more than the trim threshold is free there.
* Each thread that allocates gets an arena (up to 8 per core): the decode workers, each
  client connection's thread (a search decodes its query there), the duplicate checks.
  Each kept up to a 64 MB arena heap of free memory (eight of them, 49-63 MB each).

Four pixel floods (225 MP 16-bit grey, 100 MP RGBA, two 144 MP RGB PNGs) indexed from a
watched folder, then three rounds of searches by copies of them: RSS 591 MB before,
1,932 MB at the peak, 1,144 MB once idle, for good. In the test
(``tests/integration/test_memory_return.py``): 636 MB before, 1,470-1,880 MB after the
searches; 80 camera JPEGs indexed: ~590 MB before, 705-729 MB after.

``malloc_trim(0)`` walks every arena and returns each free page, not only the top of a
heap: in-process it took RSS from 1,033 MB back to 560 MB (558 before) in 48 ms, and
0.1 ms when there is nothing to return. With it the test's daemon is back at 601-632 MB
(610-639 before), and at 622-657 MB after the 80 JPEGs; its peak is no higher
(1,480-2,033 MB; it was 1,687-2,247).

When: after each picture above :data:`BIG_PICTURE_PIXELS`, whichever thread decoded it
(a search's big query is followed by no indexing), and when the indexing thread runs
out of work; carried out once :data:`QUIET_SECONDS` pass without another such moment,
from the periodic tick of the process that asked. Pictures are decoded in the model
worker now (``worker``), whose loop ticks; the daemon's main loop still gives back what
its indexing thread held (the files' bytes it read, hashed and sent). Trimming after
every big picture of a series made each next one fault its memory in again (12 floods
in 2 threads: 12 trims instead of 1-5).

Not chosen: a fixed mmap threshold (``M_MMAP_THRESHOLD``), which returns big blocks as
they are freed but makes every allocation above it a fresh ``mmap``: the model's
activations then fault in anew at each batch. Indexing 12 MP JPEGs cost 50 ms of CPU a
photo instead of 39 with a 1 MB threshold, 45 with 4 MB (2.9 and 2.1 times the page
faults). Pillow's block cache is off unless ``PILLOW_BLOCKS_MAX`` is set; it is emptied
here too, in case it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["BIG_PICTURE_PIXELS", "QUIET_SECONDS", "give_back", "give_back_if_quiet",
           "give_back_soon", "one_arena", "resident_bytes"]

log = logging.getLogger(__name__)

# A decoded frame above this many pixels (64 MB as RGBX) is worth returning at once;
# camera JPEGs decode at 1/8 scale and stay far below it.
BIG_PICTURE_PIXELS = 16_000_000

# How long after the last request memory is given back: pictures decoded one after
# another reuse what the previous one freed instead of faulting it in again.
QUIET_SECONDS = 1.0

_PAGE = os.sysconf("SC_PAGE_SIZE")
_M_ARENA_MAX = -8  # mallopt's parameter (glibc malloc.h)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None with another C library (musl has none)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


_trim = _malloc_trim()


def one_arena() -> None:
    """Have every thread of this process allocate from glibc's main arena (M_ARENA_MAX=1)
    instead of up to 8 arenas per core, for a process whose threads allocate little at
    a time: the daemon, whose pictures are decoded by the model worker. What its threads
    leave behind (a photo's bytes read by one thread and freed by another, SQLite's
    pages) then packs into one heap: after indexing 10,000 photos, 110 MB instead of
    125 MB once trimmed, at the same indexing speed (measured in-process, 2 cores).
    Call it before the threads start: arenas made already stay. No-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 1)


def resident_bytes() -> int:
    """This process's resident memory (RSS) in bytes, from /proc (0 without it)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def give_back(why: str = "") -> int:
    """Return the memory the C allocator holds free to the system; returns the bytes
    RSS went down by (0 where there is no ``malloc_trim``). Safe from any thread: a
    thread allocating meanwhile waits for at most one arena's walk."""
    if _trim is None:
        return 0
    before = resident_bytes()
    _clear_pillow_cache()
    _trim(0)
    released = max(0, before - resident_bytes())
    if released >= 16 << 20:
        log.debug("gave back %d MB%s", released >> 20, f" ({why})" if why else "")
    return released


def _clear_pillow_cache() -> None:
    """Empty Pillow's block cache, if Pillow is loaded at all (the daemon, whose pictures
    are decoded by the model worker, never loads it just for this)."""
    image = sys.modules.get("PIL.Image")
    if image is not None:
        image.core.clear_cache()


class _Pending:
    """A request to give memory back, carried out once none has come for a while."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: float | None = None
        self._why = ""

    def soon(self, why: str) -> None:
        with self._lock:
            self._due, self._why = time.monotonic() + QUIET_SECONDS, why

    def take_if_due(self) -> str | None:
        with self._lock:
            if self._due is None or time.monotonic() < self._due:
                return None
            self._due = None
            return self._why


_pending = _Pending()


def give_back_soon(why: str) -> None:
    """Ask for :func:`give_back` once :data:`QUIET_SECONDS` pass without another ask;
    carried out by :func:`give_back_if_quiet` (the daemon's or the worker's periodic
    tick)."""
    _pending.soon(why)


def give_back_if_quiet() -> int | None:
    """:func:`give_back` if it was asked for and the asks have stopped; returns the
    bytes given back, or None when nothing was due."""
    why = _pending.take_if_due()
    return give_back(why) if why is not None else None
