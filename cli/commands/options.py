"""What several commands share: the ``--no-daemon``, ``-k/--top`` and ``--min-score``
options, and how a command gets the daemon (or this process) to run its work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from findsimilar.cli.backends import Backend, choose_backend, daemon_backend
from findsimilar.config import load_config

__all__ = ["NO_DAEMON", "backend", "daemon_call", "result_options"]

NO_DAEMON = click.option(
    "--no-daemon", is_flag=True,
    help="Run in this process instead of the daemon (loads the model; also "
         "FINDSIMILAR_NO_DAEMON=1).")


def result_options(default_top: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-k/--top`` and ``--min-score``, as `search` and `show` take them (a page shows
    more results by default than a terminal)."""
    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--min-score", type=click.FloatRange(-1.0, 1.0),
                               help="Only results with at least this cosine similarity."
                               )(command)
        return click.option("-k", "--top", "top", default=default_top, show_default=True,
                            type=click.IntRange(min=1), help="How many results per photo."
                            )(command)
    return apply


def backend(no_daemon: bool) -> Backend:
    """The daemon (started if need be), or this process with ``--no-daemon``."""
    return choose_backend(load_config(), no_daemon=no_daemon)


def daemon_call(command: str, **args: Any) -> Any:
    """Ask the daemon, starting it if needed (for the verbs only the daemon has)."""
    chosen = daemon_backend(load_config())
    try:
        return chosen.call(command, args)
    finally:
        chosen.close()
