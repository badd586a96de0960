"""``findsimilar index``: index photos now, in the daemon or (``--no-daemon``) here."""

from __future__ import annotations

import os
from typing import Any

import click

from findsimilar.cli.commands.options import NO_DAEMON, backend
from findsimilar.cli.progress import ProgressBar
from findsimilar.errors import MissingFileError
from findsimilar.jsonout import dumps
from findsimilar.text import printable

__all__ = ["index_cmd"]


@click.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--rehash", is_flag=True,
              help="Read and hash every file again, however unchanged it looks (only "
                   "pictures not seen before go through the model).")
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Leave out files and folders matching GLOB (repeatable): a file's or a "
                   "folder's name, or a whole path ('*' also matching '/'), as `dupes "
                   "--exclude`. Files indexed before under them are removed.")
@NO_DAEMON
def index_cmd(paths: tuple[str, ...], as_json: bool, quiet: bool, rehash: bool,
              excludes: tuple[str, ...], no_daemon: bool) -> None:
    """Index photos in PATHS (folders are searched recursively).

    Unchanged files (same inode, size, mtime and ctime) are skipped; moved or
    renamed files are re-linked by content hash without running the model.
    Files that cannot be read are recorded with a reason and retried when they
    change. Exits 0 even when some files fail. When this command starts the
    daemon, what the daemon indexed first in its watched folders under PATHS
    (~/Pictures by default) is counted in the summary, and said.

    \b
    Examples:
      findsimilar index ~/Pictures /mnt/photos
      findsimilar index --json ~/Pictures | jq .failed
      findsimilar index --rehash ~/Pictures/2024   # verify every file's bytes
      findsimilar index ~/Pictures --exclude 'exports*' --exclude '*.png'
    """
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise MissingFileError(f"no such file or folder: {missing[0]}")
    bar = ProgressBar("indexing") if not quiet else None
    chosen = backend(no_daemon)
    try:
        summary = chosen.index(list(paths), bar if bar and bar.enabled else None,
                               rehash=rehash, exclude=list(excludes))
    finally:
        chosen.close()
        if bar:
            bar.finish()
    if as_json:
        click.echo(dumps(summary))
        return
    click.echo(_summary_text(summary))


def _summary_text(s: dict[str, Any]) -> str:
    failed = s["failed"]
    processed = s["new"] + s["changed"] + s["moved"] + len(failed)
    # A rate over a moment or a file or two would say nothing (as `status` judges it).
    rate = (f" at {s['extracted'] / s['seconds']:.1f}/s"
            if s["extracted"] >= 2 and s["seconds"] >= 1 else "")
    lines = [
        f"{s['new']} new, {s['changed']} changed, {s['moved']} moved, "
        f"{s['unchanged']} unchanged, {s['removed']} removed, {len(failed)} failed "
        f"({processed} processed, {s['extracted']} through the model{rate}, "
        f"{s['seconds']:.1f} s)"]
    lines.extend(_at_daemon_start(s.get("at_daemon_start") or []))
    if s["still_failing"]:
        lines.append(f"{s['still_failing']} {'file' if s['still_failing'] == 1 else 'files'} "
                     "that failed before "
                     f"{'is' if s['still_failing'] == 1 else 'are'} unchanged and "
                     f"{'was' if s['still_failing'] == 1 else 'were'} not retried "
                     "(see `findsimilar status`)")
    if failed:
        lines.append("failed:")
        lines.extend(f"  {printable(f['path'])}: {f['reason']}" for f in failed[:50])
        if len(failed) > 50:
            lines.append(f"  ... and {len(failed) - 50} more (use --json for all)")
    return "\n".join(lines)


def _at_daemon_start(folders: list[dict[str, Any]]) -> list[str]:
    """What the daemon this command started did first, in its watched folders."""
    lines = []
    for f in folders:
        did = (f"{f['new']} new, {f['changed']} changed, {f['moved']} moved, "
               f"{f['removed']} removed, {f['failed']} failed")
        lines.append(f"of which the daemon, as it started, indexed in {f['path']}: {did}"
                     if f["counted"] else
                     f"before that, the daemon, as it started, indexed its watched folder "
                     f"{f['path']} ({did}, not counted above)")
    return lines
