"""The terminal progress bar (cli/progress.py) gives a rate and an ETA only once the work
has lasted long enough to mean them."""

from __future__ import annotations

import io

from findsimilar.cli.progress import MIN_SPAN_S, ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_two_files_done_at_once_show_no_rate_and_no_eta() -> None:
    screen = Terminal()
    bar = ProgressBar("indexing", stream=screen)
    bar(2, 100)
    line = screen.getvalue()
    assert "2/100" in line and "-/s" in line and "ETA  -:--" in line, line


def test_a_rate_and_an_eta_once_the_work_has_lasted() -> None:
    screen = Terminal()
    bar = ProgressBar("indexing", stream=screen)
    bar.started -= 2 * MIN_SPAN_S  # begun 10 s ago
    bar(20, 100)
    line = screen.getvalue()
    assert "  2.0/s  ETA 0:40" in line, line
