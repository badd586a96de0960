"""findsimilar/errors.py: the one table of exit codes, and the README's copy of it."""

from __future__ import annotations

import re
from pathlib import Path

from findsimilar.errors import EXIT_CODES, EXIT_NO_DAEMON, FindSimilarError

REPO = Path(__file__).resolve().parents[2]


def readme_exit_codes() -> dict[int, str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^### Exit codes\n(.*?)(?=^#)", text, re.S | re.M)
    assert section, "README has no 'Exit codes' section"
    rows = re.findall(r"^\| (\d+) \| (.*) \|$", section.group(1), re.M)
    return {int(code): meaning for code, meaning in rows}


def test_the_readme_table_is_the_table_in_errors_py_row_for_row() -> None:
    assert readme_exit_codes() == EXIT_CODES


def test_every_error_the_command_line_can_meet_exits_with_a_code_of_the_table() -> None:
    # Imported for their error classes (light modules: no model, no daemon).
    import findsimilar.cli.actions.actionlog
    import findsimilar.cli.client  # noqa: F401

    def family(cls: type) -> list[type]:
        return [cls, *(c for sub in cls.__subclasses__() for c in family(sub))]

    errors = family(FindSimilarError)
    assert len(errors) > 8  # the walk found the library's and the client's errors
    assert {e.__name__: e.exit_code for e in errors if e.exit_code not in EXIT_CODES} == {}
    assert findsimilar.cli.client.DaemonUnavailable.exit_code == EXIT_NO_DAEMON
