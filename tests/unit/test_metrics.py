"""The daemon's monitoring numbers (daemon/service/metrics.py): the latency ring and its
percentiles, and rates that need a window long enough to mean them."""

from __future__ import annotations

import threading

import pytest

from findsimilar.daemon.service.metrics import (
    MIN_SPAN_S,
    Latencies,
    SearchTimes,
    Throughput,
    percentile,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_percentiles_are_measured_values_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0  # not 1.5: never a value nobody measured


def test_no_search_yet_gives_no_numbers() -> None:
    summary = SearchTimes().summary()
    assert summary["indexed"] == {"count": 0, "total": 0, "p50_ms": None, "p99_ms": None}
    assert summary["new"]["p99_ms"] is None


def test_the_ring_keeps_only_the_last_window_of_searches() -> None:
    times = Latencies(size=10)
    for _ in range(10):
        times.record(5.0)  # slow ones, pushed out below
    for ms in range(1, 11):
        times.record(ms / 1000)
    summary = times.summary()
    assert summary["count"] == 10 and summary["total"] == 20
    assert summary["p50_ms"] == 5.0 and summary["p99_ms"] == 10.0


def test_searches_are_counted_by_kind() -> None:
    times = SearchTimes()
    times.record("indexed", 0.002)
    times.record("new", 0.150)
    times.record("new", 0.250)
    summary = times.summary()
    assert summary["window"] == 1000
    assert summary["indexed"]["count"] == 1 and summary["indexed"]["p50_ms"] == 2.0
    assert summary["new"]["count"] == 2
    assert summary["new"]["p50_ms"] == 150.0 and summary["new"]["p99_ms"] == 250.0


def test_searches_whose_near_tie_was_pixel_checked_are_counted() -> None:
    times = SearchTimes()
    times.record("new", 0.1)  # no near tie: not checked
    times.record("new", 0.2, reranked=True)
    times.record("indexed", 0.1, reranked=False)
    assert times.summary()["reranked"] == {"checked": 2, "reordered": 1}


def test_the_ring_is_safe_across_threads() -> None:
    times = Latencies(size=1000)

    def record() -> None:
        for _ in range(2000):
            times.record(0.001)

    threads = [threading.Thread(target=record) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert times.summary()["count"] == 1000 and times.summary()["total"] == 8000


def test_two_files_finished_at_once_give_no_rate() -> None:
    """The 127942.68 files/s that `status` once showed after two files."""
    clock = Clock()
    meter = Throughput(clock)
    meter.begin()
    clock.now += 0.00001
    meter.advance(1)
    meter.advance(2)
    assert meter.rate() is None
    assert meter.summary()["run"]["files_per_s"] is None
    assert meter.summary()["run"]["files"] == 2


def test_a_rate_is_given_once_the_work_lasts_long_enough() -> None:
    clock = Clock()
    meter = Throughput(clock)
    meter.begin()
    for done in range(1, 41):
        clock.now += 0.25  # 4 files a second
        meter.advance(done)
    assert clock.now - 1000.0 >= MIN_SPAN_S
    assert meter.rate() == pytest.approx(4.0)
    summary = meter.summary()
    assert summary["run"] == {"files": 40, "seconds": 10.0, "files_per_s": 4.0}


def test_idle_time_between_runs_does_not_dilute_the_rate() -> None:
    clock = Clock()
    meter = Throughput(clock)
    for _ in range(3):
        meter.begin()
        for done in range(1, 11):
            clock.now += 0.5  # 2 files a second while working
            meter.advance(done)
        clock.now += 3600  # an idle hour
        meter.begin()  # a rescan that finds nothing to do
    assert meter.rate() == pytest.approx(2.0)
    summary = meter.summary()
    assert summary["since_start"] == {"files": 30, "seconds": 15.0, "files_per_s": 2.0}
    assert summary["run"]["files"] == 10  # the last run that indexed files


def test_the_rate_follows_the_last_minute_of_work() -> None:
    clock = Clock()
    meter = Throughput(clock)
    meter.begin()
    done = 0
    for _ in range(120):  # two minutes at 10 files a second
        clock.now += 1
        done += 10
        meter.advance(done)
    for _ in range(120):  # then two minutes at 1 file a second
        clock.now += 1
        done += 1
        meter.advance(done)
    assert meter.rate() == pytest.approx(1.0)
    assert meter.summary()["seconds"] == pytest.approx(60.0, abs=1.0)
