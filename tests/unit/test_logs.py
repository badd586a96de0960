"""The daemon's log stays bounded in a storm: repeated lines from one place are counted,
not written."""

from __future__ import annotations

import io
import logging

import pytest

from findsimilar.daemon.service.logs import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logged() -> tuple[logging.Logger, io.StringIO, RepeatFilter, Clock]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    clock = Clock()
    repeats = RepeatFilter(burst=5, window=60.0, clock=clock)
    handler.addFilter(repeats)
    logger = logging.getLogger("test_logs.storm")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, out, repeats, clock
    logger.handlers[:] = []


def warn_per_file(logger: logging.Logger, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        logger.warning("cannot read /photos/%05d.jpg", i)  # one call site


def test_a_storm_of_warnings_from_one_place_writes_a_few_lines_and_a_count(logged):
    logger, out, repeats, clock = logged

    warn_per_file(logger, 10_000)
    assert len(out.getvalue().splitlines()) == 5
    clock.now += 60
    repeats.flush()

    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    assert lines[-1] == ("WARNING ... and 9995 more like that in 60 s "
                         "(the last: cannot read /photos/09999.jpg)")


def test_other_places_are_not_silenced_by_a_storm(logged):
    logger, out, _, _ = logged

    warn_per_file(logger, 100)
    logger.info("reconciled /photos")

    assert out.getvalue().splitlines()[-1] == "INFO reconciled /photos"


def test_after_the_window_a_place_may_log_again_and_the_summary_comes_first(logged):
    logger, out, _, clock = logged
    warn_per_file(logger, 7)
    clock.now += 61

    warn_per_file(logger, 1, start=7)

    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("WARNING ... and 2 more like that")
    assert lines[-1] == "WARNING cannot read /photos/00007.jpg"


def test_a_quiet_place_needs_no_summary(logged):
    logger, out, repeats, clock = logged
    warn_per_file(logger, 3)
    clock.now += 61
    repeats.flush()

    assert len(out.getvalue().splitlines()) == 3
