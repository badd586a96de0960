"""Giving memory back: what glibc keeps after a thread frees big blocks, and when the
daemon asks for it back."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from findsimilar.daemon.model import memory


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(memory, "QUIET_SECONDS", 0.2)
    memory.give_back_if_quiet()  # nothing left over from another test
    return 0.2


def test_memory_a_thread_freed_in_big_blocks_is_given_back():
    kept: list[np.ndarray] = []

    def decode_like_a_big_picture() -> None:
        # The first 16 MB block is mmap-ed; freeing it raises glibc's mmap threshold,
        # so the next ones come from this thread's arena. The last one, still in use,
        # keeps glibc from trimming the others off the top of the heap.
        np.ones(16 << 20, np.uint8)
        blocks = [np.ones(16 << 20, np.uint8) for _ in range(16)]
        kept.append(blocks.pop())
        del blocks

    thread = threading.Thread(target=decode_like_a_big_picture)
    thread.start()
    thread.join()
    held = memory.resident_bytes()

    released = memory.give_back("test")

    assert released > 128 << 20, (held >> 20, released >> 20)
    assert memory.resident_bytes() < held - (128 << 20)


def test_memory_is_given_back_only_once_the_asks_stop(quick: float):
    memory.give_back_soon("a big picture decoded")
    time.sleep(quick / 2)
    memory.give_back_soon("another one")
    time.sleep(quick / 2)
    assert memory.give_back_if_quiet() is None  # asked again meanwhile: not yet

    time.sleep(quick)
    assert memory.give_back_if_quiet() is not None
    assert memory.give_back_if_quiet() is None  # once per series of asks


def test_nothing_is_given_back_unasked(quick: float):
    time.sleep(quick * 1.5)
    assert memory.give_back_if_quiet() is None
