"""``findsimilar``: the command line.

Results go to stdout, diagnostics to stderr, ``--json`` is for scripts.
The engine (torch, faiss) is imported inside the commands that need it, so
``findsimilar --help`` and errors stay instant.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from findsimilar import __version__
from findsimilar.config import load_config
from findsimilar.errors import FindSimilarError

from .progress import ProgressBar

if TYPE_CHECKING:
    from findsimilar.daemon.engine import Engine

__all__ = ["cli", "main"]


class _DefaultToSearch(click.Group):
    """``findsimilar PHOTO...`` means ``findsimilar search PHOTO...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-") or a == "-"), None)
        wants_group_help = any(a in ("--help", "-h", "--version") for a in args) and (
            first is None)
        if args and not wants_group_help and first not in self.commands:
            args = ["search", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToSearch, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="findsimilar")
def cli() -> None:
    """Find similar and duplicate photos, locally.

    \b
    Examples:
      findsimilar index ~/Pictures       # index a folder (recursively)
      findsimilar photo.jpg              # the 10 most similar indexed photos
      findsimilar -k 5 --json photo.jpg  # as JSON, top 5
      findsimilar status

    State lives in $FINDSIMILAR_DATA_DIR (default: $XDG_DATA_HOME/findsimilar).
    """


def _engine() -> Engine:
    from findsimilar.daemon.engine import Engine

    return Engine(load_config())


def _fail(exc: FindSimilarError) -> None:
    click.echo(f"findsimilar: error: {exc}", err=True)
    sys.exit(exc.exit_code)


@cli.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def index_cmd(paths: tuple[str, ...], as_json: bool, quiet: bool) -> None:
    """Index photos in PATHS (folders are searched recursively).

    Unchanged files are skipped by size and mtime; moved or renamed files are
    re-linked by content hash without running the model. Files that cannot be
    read are recorded with a reason and retried only when they change. Exits 0
    even when some files fail.

    \b
    Examples:
      findsimilar index ~/Pictures /mnt/photos
      findsimilar index --json ~/Pictures | jq .failed
    """
    try:
        with _engine() as engine:
            bar = ProgressBar("indexing") if not quiet else None
            try:
                summary = engine.index_paths(list(paths), progress=bar)
            finally:
                if bar:
                    bar.finish()
    except FindSimilarError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(summary.as_dict()))
        return
    click.echo(_summary_text(summary.as_dict()))


def _summary_text(s: dict[str, Any]) -> str:
    failed = s["failed"]
    processed = s["new"] + s["changed"] + s["moved"] + len(failed)
    rate = s["extracted"] / s["seconds"] if s["seconds"] else 0.0
    lines = [
        f"{s['new']} new, {s['changed']} changed, {s['moved']} moved, "
        f"{s['unchanged']} unchanged, {s['removed']} removed, {len(failed)} failed "
        f"({processed} processed, {s['extracted']} through the model at {rate:.1f}/s, "
        f"{s['seconds']:.1f} s)"]
    if s["still_failing"]:
        lines.append(f"{s['still_failing']} files that failed before are unchanged "
                     "and were not retried (see `findsimilar status`)")
    if failed:
        lines.append("failed:")
        lines.extend(f"  {f['path']}: {f['reason']}" for f in failed[:50])
        if len(failed) > 50:
            lines.append(f"  ... and {len(failed) - 50} more (use --json for all)")
    return "\n".join(lines)


@cli.command("search")
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@click.option("-k", "--top", "top", default=10, show_default=True, type=click.IntRange(min=1),
              help="How many results per photo.")
@click.option("--min-score", type=click.FloatRange(-1.0, 1.0),
              help="Only results with at least this cosine similarity.")
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per query per line: {"query", "results": [{"path", "score"}]}.')
@click.option("-0", "--null", "null", is_flag=True, help="NUL-separated paths, for xargs -0.")
def search_cmd(photos: tuple[str, ...], top: int, min_score: float | None, as_json: bool,
               null: bool) -> None:
    """Show the indexed photos most similar to each PHOTO.

    PHOTO need not be indexed. Scores are cosine similarities (1.0 = same
    picture). `findsimilar PHOTO` is short for `findsimilar search PHOTO`.

    \b
    Examples:
      findsimilar beach.jpg
      findsimilar -k 3 --min-score 0.8 --json a.jpg b.heic
      findsimilar -0 cat.jpg | xargs -0 ls -l
    """
    try:
        engine = _engine()
    except FindSimilarError as exc:
        _fail(exc)
        return
    exit_code = 0
    with engine:
        for photo in photos:
            try:
                result = engine.search(photo, k=top, min_score=min_score)
            except FindSimilarError as exc:
                click.echo(f"findsimilar: error: {exc}", err=True)
                exit_code = exit_code or exc.exit_code
                continue
            _print_result(result.as_dict(), as_json, null, len(photos) > 1)
    sys.exit(exit_code)


def _print_result(result: dict[str, Any], as_json: bool, null: bool, many: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    elif null:
        out = sys.stdout.buffer
        for m in result["results"]:
            out.write(m["path"].encode("utf-8", "surrogateescape") + b"\0")
        out.flush()
    else:
        if many:
            click.echo(f"# {result['query']}")
        if not result["results"]:
            click.echo("(no similar photos)", err=True)
        for m in result["results"]:
            click.echo(f"{m['score']:.4f}  {m['path']}")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="As JSON (keys include indexed, failed).")
def status_cmd(as_json: bool) -> None:
    """Show counts (indexed, failed), the model and the store size.

    \b
    Example:
      findsimilar status --json
    """
    try:
        with _engine() as engine:
            info = engine.status()
    except FindSimilarError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"indexed:    {info['indexed']} files ({info['unique_images']} unique images)")
    click.echo(f"failed:     {info['failed']}")
    click.echo(f"model:      {info['model']} ({info['dim']}-d)")
    click.echo(f"data dir:   {info['data_dir']}")
    click.echo(f"store size: {_human(int(info['store_bytes']))}, "
               f"index {_human(int(info['index_bytes']))}")
    for f in info["recent_failures"]:  # type: ignore[attr-defined]
        click.echo(f"  failed: {f['path']}: {f['error']}")


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def main() -> None:
    cli()
