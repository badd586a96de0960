"""``findsimilar``: the command line.

Results go to stdout, diagnostics to stderr, ``--json`` is for scripts. This module is
the click group only: each command lives in ``findsimilar.cli.commands`` and is imported
when it runs, so ``findsimilar photo.jpg`` imports the search command and the socket
client, nothing else (the engine, torch and faiss are never imported by the client).
A :class:`FindSimilarError` from any command is turned into a message and an exit code
here, once (:func:`findsimilar.cli.failure.fail`).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from findsimilar import __version__
from findsimilar.cli.failure import fail, report_error, unexpected
from findsimilar.errors import EXIT_USAGE, FindSimilarError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

__all__ = ["COMMANDS", "COMPLETE_VAR", "cli", "main"]

# What click's completion scripts set to ask for completions (`findsimilar completion`);
# named here, not derived from argv[0], so `python -m findsimilar` answers it too.
COMPLETE_VAR = "_FINDSIMILAR_COMPLETE"

# Every command: its module and the click object in it.
COMMANDS = {
    "index": ("findsimilar.cli.commands.index", "index_cmd"),
    "search": ("findsimilar.cli.commands.search", "search_cmd"),
    "status": ("findsimilar.cli.commands.status", "status_cmd"),
    "daemon": ("findsimilar.cli.commands.daemon", "daemon_group"),
    "watch": ("findsimilar.cli.commands.daemon", "watch_group"),
    "reindex": ("findsimilar.cli.commands.daemon", "reindex_cmd"),
    "dupes": ("findsimilar.cli.commands.dupes", "dupes_group"),
    "show": ("findsimilar.cli.commands.show", "show_cmd"),
    "service": ("findsimilar.cli.commands.service", "service_group"),
    "integrate": ("findsimilar.cli.commands.integrate", "integrate_group"),
    "completion": ("findsimilar.cli.commands.completion", "completion_cmd"),
}


class _DefaultToSearch(click.Group):
    """``findsimilar PHOTO...`` means ``findsimilar search PHOTO...`` (unless the first
    word names no file and is a command's name mistyped); commands are imported when
    asked for; a FindSimilarError ends the run with its message and code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS and name not in self.commands:
            import importlib

            module, attr = COMMANDS[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-") or a == "-"), None)
        wants_group_help = any(a in ("--help", "-h", "--version") for a in args) and (
            first is None)
        if args and not wants_group_help and first not in COMMANDS:
            if first is not None and not ctx.resilient_parsing:
                _refuse_a_mistyped_command(first)
            args = ["search", *args]
        return super().parse_args(ctx, args)

    def shell_complete(self, ctx: click.Context,
                       incomplete: str) -> list[CompletionItem]:
        """The commands starting with INCOMPLETE and, as the first argument may be a
        photo (``findsimilar PHOTO``), the file names (bash offers them when no command
        matches; zsh and fish offer both)."""
        from click.shell_completion import CompletionItem

        items = super().shell_complete(ctx, incomplete)
        if incomplete.startswith("-"):
            return items
        # First: bash's script empties its list at a "file" item, then adds the rest.
        return [CompletionItem(incomplete, type="file"), *items]

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except FindSimilarError as exc:
            fail(exc)


@click.group(cls=_DefaultToSearch, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="findsimilar")
def cli() -> None:
    """Find similar and duplicate photos, locally.

    \b
    Examples:
      findsimilar index ~/Pictures       # index a folder (recursively)
      findsimilar photo.jpg              # the 10 most similar indexed photos
      findsimilar -k 5 --json photo.jpg  # as JSON, top 5
      findsimilar show photo.jpg         # the same, as a page of thumbnails
      findsimilar dupes ~/Pictures       # duplicate groups (see dupes --help)
      findsimilar status

    State lives in $FINDSIMILAR_DATA_DIR (default: $XDG_DATA_HOME/findsimilar).
    """


def _refuse_a_mistyped_command(word: str) -> None:
    """``findsimilar serch x.jpg``: a first argument that names no file but is close to
    a command's name is a typo, not a query: say which command was meant, exit 2.
    Anything path-like (a ``/`` or a ``.`` in it) stays a query, reported as a missing
    file by search (exit 3)."""
    if "/" in word or "." in word or os.path.lexists(word):
        return
    import difflib

    from findsimilar.text import printable

    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    if close:
        report_error(f"no such command or file: {printable(word)} (did you mean "
                     f"`{close[0]}`?)")
        sys.exit(EXIT_USAGE)


def main() -> None:
    try:
        cli(complete_var=COMPLETE_VAR)
    except FindSimilarError as exc:  # raised before any command ran (a bad config file)
        fail(exc)
    except Exception as exc:  # a bug: said in one line, never as a traceback
        unexpected(exc)
