"""What several commands share: the ``--no-daemon``, ``-k/--top`` and ``--min-score``
options, and how a command gets the daemon (or this process) to run its work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from findsimilar.cli.backends import Backend, choose_backend, daemon_backend
from findsimilar.config import load_config

__all__ = ["NO_DAEMON", "MinScore", "backend", "daemon_call", "result_options"]

NO_DAEMON = click.option(
    "--no-daemon", is_flag=True,
    help="Run in this process instead of the daemon (loads the model; also "
         "FINDSIMILAR_NO_DAEMON=1).")


class MinScore(click.ParamType):
    """A cosine from -1 to 1, or ``auto``: the floor of the model whose index answers
    (``ModelSpec.min_score`` on the daemon side: this process does not know the model)."""

    name = "SCORE|auto"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float | str:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            score = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number from -1 to 1 nor 'auto'", param, ctx)
        if not -1.0 <= score <= 1.0:
            self.fail(f"{value} is not in the range -1<=x<=1 (or 'auto')", param, ctx)
        return score


def result_options(default_top: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-k/--top`` and ``--min-score``, as `search` and `show` take them (a page shows
    more results by default than a terminal)."""
    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option(
            "--min-score", type=MinScore(),
            help="Only results with at least this cosine similarity; 'auto': the model's "
                 "floor for related photos (where `dupes` starts looking: 0.60 with "
                 "efficientnet-lite0-gem, see README).")(command)
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
