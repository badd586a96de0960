"""How the command line reports a failure: one line on stderr, ``findsimilar: error:
MESSAGE``, and the exit code of findsimilar/errors.py's table.

The library and the daemon raise typed errors (:class:`FindSimilarError`); the click
group catches them once (``main._DefaultToSearch.invoke``) and calls :func:`fail`, so
no command converts them itself. Stdlib and click only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NoReturn

import click

from findsimilar.errors import ERROR_PREFIX, EXIT_FAILURE, FindSimilarError, StoreError
from findsimilar.jsonout import displayable

__all__ = ["ERROR_PREFIX", "fail", "report_error", "unexpected"]


def report_error(message: str) -> None:
    """Print ``findsimilar: error: MESSAGE`` on stderr (for a failure that does not end
    the command, such as one query of several)."""
    click.echo(f"{ERROR_PREFIX}{displayable(message)}", err=True)


def fail(exc: FindSimilarError) -> NoReturn:
    """Report ``exc`` and exit with its code. A daemon that cannot be reached may have
    stopped on a damaged store: then that is what is reported, with what to do."""
    from findsimilar.cli.client import DaemonUnavailable

    if isinstance(exc, DaemonUnavailable):
        exc = _damaged_store() or exc
    report_error(str(exc))
    sys.exit(exc.exit_code)


def _damaged_store() -> StoreError | None:
    """A daemon that went away may have stopped on a damaged store (it exits with code 6
    and says so in its journal, e.g. when systemd started it): then say what to do here
    too. Reads the store without writing to it."""
    from findsimilar.cli.backends import offline_status
    from findsimilar.config import load_config

    try:
        config = load_config()
        offline_status(config)
    except StoreError as exc:
        return exc
    except FindSimilarError:
        return None
    return _logged_damage(config.log_path, config.store_path)


def _logged_damage(log: Path, store: Path) -> StoreError | None:
    """What a daemon this command started said last in its log, if within the last
    minute it stopped on damage a plain count does not read (an index's page, read by a
    search or a folder scan)."""
    from findsimilar.cli.client import last_logged_error

    try:
        if time.time() - log.stat().st_mtime > 60:
            return None
    except OSError:
        return None
    said = last_logged_error(log)
    return StoreError(said) if said.startswith(f"the store {store} is damaged") else None


def unexpected(exc: BaseException) -> NoReturn:
    """An error findsimilar did not foresee (a bug): one line saying what, the traceback
    kept in a file for the bug report instead of on the terminal; exit code 1."""
    import tempfile
    import traceback

    where = ""
    try:
        fd, name = tempfile.mkstemp(prefix="findsimilar-error-", suffix=".txt")
        with open(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write("".join(traceback.format_exception(exc)))
        where = f" (details for a bug report: {name})"
    except OSError:
        pass
    report_error(f"unexpected error: {type(exc).__name__}: {exc}{where}")
    sys.exit(EXIT_FAILURE)
