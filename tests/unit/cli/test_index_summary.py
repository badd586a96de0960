"""cli/commands/index.py: the summary a person reads says no more than it knows."""

from __future__ import annotations

from findsimilar.cli.commands.index import _summary_text


def summary(**changes: object) -> dict:
    base = {"new": 0, "changed": 0, "moved": 0, "unchanged": 0, "removed": 0, "failed": [],
            "extracted": 0, "seconds": 0.0, "still_failing": 0}
    return {**base, **changes}


def test_a_rate_is_said_only_over_enough_work() -> None:
    assert "/s" not in _summary_text(summary(new=1, extracted=1, seconds=0.02))
    assert "/s" not in _summary_text(summary(new=5, extracted=5, seconds=0.4))
    assert "5 through the model at 2.5/s, 2.0 s" in _summary_text(
        summary(new=5, extracted=5, seconds=2.0))


def test_one_file_that_failed_before_is_said_in_the_singular() -> None:
    assert "1 file that failed before is unchanged and was not retried" in _summary_text(
        summary(unchanged=3, still_failing=1))
    assert "2 files that failed before are unchanged and were not retried" in _summary_text(
        summary(unchanged=3, still_failing=2))
