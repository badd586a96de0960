"""``findsimilar search`` (and ``findsimilar PHOTO``): the photos most similar to each
query. The command most run, so it imports the least: the socket client, no engine."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from findsimilar.cli.commands.options import NO_DAEMON, backend, result_options
from findsimilar.cli.failure import report_error
from findsimilar.errors import EXIT_MISSING_FILE
from findsimilar.jsonout import dumps
from findsimilar.text import printable

__all__ = ["search_cmd"]


@click.command("search")
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@result_options(default_top=10)
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per query per line: {"query", "results": [{"path", "score"}]}.')
@click.option("-0", "--null", "null", is_flag=True,
              help="Only the paths, each ended by a NUL byte (for xargs -0).")
@click.option("--paths", "paths_out", is_flag=True,
              help="Only the paths, one a line (the exact bytes of each name).")
@NO_DAEMON
def search_cmd(photos: tuple[str, ...], top: int, min_score: float | None, as_json: bool,
               null: bool, paths_out: bool, no_daemon: bool) -> None:
    """Show the indexed photos most similar to each PHOTO.

    PHOTO need not be indexed. Scores are cosine similarities (1.0 = same
    picture). `findsimilar PHOTO` is short for `findsimilar search PHOTO`.
    The daemon answers (it is started if it is not running, with a note on
    stderr); --no-daemon searches in this process instead.

    \b
    Examples:
      findsimilar beach.jpg
      findsimilar -k 3 --min-score 0.8 --json a.jpg b.heic
      findsimilar -0 cat.jpg | xargs -0 ls -l
    """
    # A missing file is an error before any daemon is asked (or started).
    found = [p for p in photos if os.path.exists(p)]
    results: dict[str, dict[str, Any]] = {
        p: {"query": os.path.abspath(p), "error": {
            "message": f"no such file: {os.path.abspath(p)}", "exit_code": EXIT_MISSING_FILE}}
        for p in photos if p not in found}
    if found:
        chosen = backend(no_daemon)
        try:
            results.update(zip(found, chosen.search(found, top, min_score), strict=True))
        finally:
            chosen.close()
    exit_code = 0
    for result in (results[p] for p in photos):
        error = result.get("error")
        if error:
            report_error(error["message"])
            exit_code = exit_code or int(error.get("exit_code", 1))
            continue
        _print_result(result, as_json, b"\0" if null else b"\n" if paths_out else None,
                      len(photos) > 1)
    sys.exit(exit_code)


def _print_result(result: dict[str, Any], as_json: bool, end: bytes | None,
                  many: bool) -> None:
    """One query's answer: JSON, only the paths as bytes each followed by ``end``, or a
    table (names as the shell shows them: ``text.printable``)."""
    if as_json:
        click.echo(dumps(result))
    elif end is not None:
        out = sys.stdout.buffer
        for m in result["results"]:  # (both files of a RAW+JPEG pair)
            for path in [m["path"], *([m["pair"]] if m.get("pair") else [])]:
                out.write(os.fsencode(path) + end)
        out.flush()
    else:
        if many:
            click.echo(f"# {printable(result['query'])}")
        if not result["results"]:
            click.echo("(no similar photos)", err=True)
        for m in result["results"]:
            pair = f"  (+ {printable(os.path.basename(m['pair']))})" if m.get("pair") else ""
            click.echo(f"{m['score']:.4f}  {printable(m['path'])}{pair}")
