"""``findsimilar dupes``: list duplicate groups, act on them safely, undo, mark pairs.

Imported only when a ``dupes`` command runs (see ``main.COMMANDS``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from findsimilar.cli.actions.planfile import record_disk_facts
from findsimilar.cli.backends import Backend, ProgressFn, choose_backend
from findsimilar.cli.commands.dupes_apply import (
    INCLUDE_RAW_PAIRS,
    act_on,
    apply_cmd,
    check_path_output,
    log_dir,
    print_paths,
    would_act_on,
)
from findsimilar.cli.commands.options import NO_DAEMON
from findsimilar.cli.progress import ProgressBar
from findsimilar.config import load_config
from findsimilar.errors import FindSimilarError, MissingFileError
from findsimilar.jsonout import dumps
from findsimilar.rawpairs import raw_pairs
from findsimilar.text import human_size, printable

__all__ = ["DEFAULT_KEEP_BY", "TIERS", "dupes_group", "list_duplicates", "listing_request"]

TIERS = ("exact", "near", "similar")
KEEP_RULES = ("raw", "resolution", "colour", "original", "camera", "size", "format", "oldest",
              "newest", "shortest-path")
DEFAULT_KEEP_BY = "raw,resolution,colour,original,camera,size,format,oldest"


class _DefaultToList(click.Group):
    """``dupes [PATH...]`` means ``dupes list [PATH...]``; ``apply``, ``undo``, ``ignore``,
    ``logs`` and ``unignore`` are subcommands (write ``./undo`` for a folder of that name)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-")), None)
        if first not in self.commands:
            args = ["list", *args]
        return super().parse_args(ctx, args)


@click.group("dupes", cls=_DefaultToList)
def dupes_group() -> None:
    """Duplicate photos: list groups, act on them, undo.

    \b
    Examples:
      findsimilar dupes ~/Pictures            # = findsimilar dupes list ~/Pictures
      findsimilar dupes --action trash --apply
      findsimilar dupes --json > plan.json && findsimilar dupes apply plan.json --apply
      findsimilar dupes undo
    """


dupes_group.add_command(apply_cmd)


def _keep_rules(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    rules = tuple(r.strip() for r in value.split(",") if r.strip())
    bad = [r for r in rules if r not in KEEP_RULES]
    if bad or not rules:
        raise click.BadParameter(f"{', '.join(bad) or value!r}: use a comma-separated list "
                                 f"of {', '.join(KEEP_RULES)}")
    return rules


@dupes_group.command("list")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--tier", "tiers", multiple=True, type=click.Choice(TIERS),
              help="Tiers to show (repeatable). Default: exact and near. 'similar' = same "
                   "scene, burst shots: shown apart, never acted on.")
@click.option("--all", "all_tiers", is_flag=True, help="All three tiers.")
@click.option("--threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Near-duplicate threshold on the pixel check (default 0.88; higher = "
                   "stricter).")
@click.option("--similar-threshold", type=click.FloatRange(-1.0, 1.0), default=None,
              help="Cosine similarity for the 'similar' tier (default: the model's, "
                   "0.80 with efficientnet-lite0-gem; see README).")
@click.option("--keep-in", "keep_in", multiple=True, type=click.Path(file_okay=False),
              metavar="DIR", help="Reference folder (repeatable): its files are kept first "
                                  "and never touched.")
@click.option("--keep-by", default=DEFAULT_KEEP_BY,
              show_default=True,
              callback=_keep_rules, help=f"Keeper rules in order: {', '.join(KEEP_RULES)}.")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB",
              help="Leave out files whose name, folder name or whole path matches GLOB "
                   "(repeatable).")
@click.option("--json", "as_json", is_flag=True, help='Print {"groups": [...]} as JSON: a '
                                                     "plan for `dupes apply`.")
@click.option("--html", "html", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write a review page with thumbnails.")
@click.option("--action", type=click.Choice(["trash", "hardlink", "reflink", "move"]),
              help="What to do with each non-keeper in exact/near groups (dry run unless "
                   "--apply).")
@click.option("--move-to", type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for --action move (implies it).")
@click.option("--apply", "apply_", is_flag=True, help="Really do the --action; it is logged "
                                                     "and `findsimilar dupes undo` reverses it.")
@click.option("--paths", "paths_out", is_flag=True,
              help="Only print the files that would be acted on (the non-keepers), one a "
                   "line.")
@click.option("-0", "--print0", "nul", is_flag=True,
              help="As --paths, each path ended by a NUL byte (for xargs -0).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--follow", is_flag=True,
              help="Keep running: print each new or changed group (exact and near, or "
                   "--tier) as a JSON line as photos arrive in watched folders.")
@INCLUDE_RAW_PAIRS
@NO_DAEMON
def list_cmd(paths: tuple[str, ...], tiers: tuple[str, ...], all_tiers: bool,
             threshold: float | None, similar_threshold: float | None,
             keep_in: tuple[str, ...], keep_by: tuple[str, ...], exclude: tuple[str, ...],
             as_json: bool, html: str | None, action: str | None, move_to: str | None,
             apply_: bool, paths_out: bool, nul: bool, quiet: bool, follow: bool,
             include_raw_pairs: bool, no_daemon: bool) -> None:
    """List duplicate groups of the indexed photos (under PATHs, or all).

    \b
    Tiers:
      exact    identical bytes
      near     the same picture: resized, recompressed, converted, cropped,
               rotated, mirrored, recoloured, captioned, bordered
      similar  same scene or burst shots (only with --tier similar or --all)

    \b
    Examples:
      findsimilar dupes                      # exact and near groups, everywhere
      findsimilar dupes ~/Pictures/2024 --all --html review.html
      findsimilar dupes --json | jq '.groups[].files'
      findsimilar dupes --keep-in ~/Pictures/Best --action trash           # dry run
      findsimilar dupes --keep-in ~/Pictures/Best --action trash --apply
      findsimilar dupes --exclude '*.png' --exclude 'exports*' ~/Pictures
      findsimilar dupes -0 ~/Pictures | xargs -0 ls -l   # the non-keepers
      findsimilar dupes --json > plan.json   # review, edit, then:
      findsimilar dupes apply plan.json --action trash --apply
      findsimilar dupes undo                 # put the last applied action back
      findsimilar dupes --follow             # a JSON line per new duplicate group
      findsimilar dupes ignore a.jpg b.jpg   # these are not duplicates

    \b
    Also: findsimilar dupes apply|undo|logs|ignore|unignore (see their --help).
    """
    if follow:
        if (paths or action or move_to or apply_ or html or keep_in or exclude or paths_out
                or nul or as_json or threshold is not None):
            raise click.UsageError("--follow takes only --tier/--all (it reports what the "
                                   "daemon finds in the watched folders)")
        from findsimilar.cli.commands.follow import follow_groups

        follow_groups(TIERS if all_tiers else tiers or ("exact", "near"), no_daemon)
        return
    if move_to and action not in (None, "move"):
        raise click.UsageError("--move-to goes with --action move")
    action = "move" if move_to else action
    if apply_ and not action:
        raise click.UsageError("--apply needs an --action (trash, hardlink, reflink or move)")
    check_path_output(paths_out or nul, as_json, apply_)
    if action == "move" and not move_to:
        raise click.UsageError("--action move needs --move-to DIR")
    request = listing_request(paths, TIERS if all_tiers else tiers or ("exact", "near"),
                              threshold, similar_threshold, keep_in, keep_by, exclude)
    # New pairs get a pixel check (~50 ms each, once ever): a bar on big first runs.
    bar = ProgressBar("checking pairs") if not quiet else None
    backend = choose_backend(load_config(), no_daemon=no_daemon)
    try:
        result = list_duplicates(backend, request, bar if bar and bar.enabled else None)
    finally:
        backend.close()
        if bar:
            bar.finish()
    _warn_not_indexed(result)
    if html:
        from findsimilar.cli.pages.report import write_report

        try:
            page = write_report(result, Path(html))
        except OSError as exc:  # e.g. its thumbnail folder holds files not its own
            raise FindSimilarError(f"cannot write the review page {html}: {exc}") from None
        print(f"review page: {page}", file=sys.stderr)
    if paths_out or nul:
        print_paths(would_act_on(result["groups"], action, move_to, request["keep_in"],
                                 include_raw_pairs), nul)
        return
    failed = 0
    if action:
        result["actions"], failed = act_on(result["groups"], action, move_to,
                                           request["keep_in"], apply_, as_json,
                                           include_raw_pairs)
    if as_json:
        click.echo(dumps(result, indent=2))
    elif not action:
        click.echo(_table(result["groups"]))
        print(_summary(result["groups"]), file=sys.stderr)
    if failed:  # as `dupes apply` and `dupes undo`: a script must see a step that failed
        sys.exit(1)


def listing_request(paths: Sequence[str], tiers: Sequence[str], threshold: float | None,
                    similar_threshold: float | None, keep_in: Sequence[str],
                    keep_by: Sequence[str], exclude: Sequence[str]) -> dict[str, Any]:
    """The arguments of the daemon's ``dupes`` verb for a listing (as `dupes --json` and
    the Python API send them). Raises MissingFileError naming the first PATH or keep-in
    folder that does not exist."""
    for p in [*paths, *keep_in]:
        if not os.path.exists(p):
            raise MissingFileError(f"no such file or folder: {p}")
    request: dict[str, Any] = {
        "paths": [os.path.abspath(p) for p in paths], "tiers": list(tiers),
        "threshold": threshold, "similar_threshold": similar_threshold,
        "keep_in": [os.path.abspath(p) for p in keep_in], "keep_by": list(keep_by)}
    if exclude:  # only when given: a daemon from before --exclude still answers the rest
        request["exclude"] = list(exclude)
    return request


def list_duplicates(backend: Backend, request: dict[str, Any],
                    progress: ProgressFn | None = None) -> dict[str, Any]:
    """The listing `dupes --json` prints (before any --action): the ``dupes`` verb's
    groups, each member with its ``stat`` on disk now (what `dupes apply` checks the
    files against), and ``raw_pair`` (the other file) on each half of a RAW+JPEG pair
    (``findsimilar.rawpairs``: one photo in two files, never acted on unless asked)."""
    result = backend.call("dupes", request, progress)
    record_disk_facts(result["groups"])
    for group in result["groups"]:
        pairs = raw_pairs(m["path"] for m in group["members"])
        for member in group["members"]:
            if member["path"] in pairs:
                member["raw_pair"] = pairs[member["path"]]
    return result


def _warn_not_indexed(result: dict) -> None:
    """A PATH with nothing indexed under it would otherwise just read "no duplicates"."""
    for path in result.get("stats", {}).get("not_indexed", []):
        what = (f"nothing is indexed under {printable(path)}" if os.path.isdir(path) else
                f"{printable(path)} is not an indexed photo")
        print(f"findsimilar: warning: {what}: its duplicates cannot be listed (index it: "
              "`findsimilar index PATH`, or watch its folder: `findsimilar watch add "
              "FOLDER`)", file=sys.stderr)


def _call(no_daemon: bool, command: str, args: dict[str, Any],
          progress: ProgressFn | None = None) -> Any:
    backend = choose_backend(load_config(), no_daemon=no_daemon)
    try:
        return backend.call(command, args, progress)
    finally:
        backend.close()


def _table(groups: list[dict]) -> str:
    lines = []
    for n, g in enumerate(groups, 1):
        label = {"exact": "exact duplicates", "near": "near duplicates",
                 "similar": "similar (not duplicates)"}[g["tier"]]
        score = f", lowest score {g['score']:.3f}" if g.get("score") is not None else ""
        lines.append(f"#{n} {label}: {len(g['files'])} files{score}")
        if g.get("reason") and g["tier"] != "similar":
            lines.append(f"       kept: {g['reason']}")
        for m in g.get("members") or [{"path": p} for p in g["files"]]:
            mark = ("KEEP" if m["path"] == g["keep"] and g["tier"] != "similar" else
                    "ref" if m.get("protected") else "")
            size = f"{m['width']}x{m['height']}" if m.get("width") else "?"
            extra = "" if m.get("match") in (None, "keep", g["tier"]) else f" ({m['match']})"
            if m.get("raw_pair"):
                extra += " (RAW+JPEG pair)"
            lines.append(f"  {mark:<4} {printable(m['path'])}  {size}  "
                         f"{human_size(m.get('size'))}  {m.get('format') or ''}{extra}")
        lines.append("")
    return "\n".join(lines).rstrip() or "no duplicates found"


def _summary(groups: list[dict]) -> str:
    counts = {t: sum(g["tier"] == t for g in groups) for t in TIERS}
    spare = [m for g in groups if g["tier"] != "similar" for m in g.get("members", [])
             if m["path"] != g["keep"] and not m.get("protected")]
    parts = ", ".join(f"{n} {t}" for t, n in counts.items() if n)
    return (f"{len(groups)} groups ({parts or 'none'}); {len(spare)} duplicate files, "
            f"{human_size(sum(m.get('size') or 0 for m in spare))} reclaimable")


@dupes_group.command("undo")
@click.argument("log", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def undo_cmd(log: str | None, as_json: bool) -> None:
    """Reverse an applied action: the latest one, or the given LOG file.

    Files come back from the trash or the move folder; hard links and
    reflinks become independent copies again. Only the bytes the log
    recorded are restored (checked by hash): a step that cannot be undone
    truly is reported, left as it is, and the exit status is 1. Nothing
    existing is ever overwritten.

    \b
    Examples:
      findsimilar dupes undo
      findsimilar dupes undo ~/.local/share/findsimilar/actions/2026-11-27T21-30-05-a1b2c3.json
    """
    from findsimilar.cli.actions.actions import undo

    result = undo(log_dir(), Path(log) if log else None)
    if as_json:
        click.echo(dumps(result.to_json(), indent=2))
    else:
        click.echo("\n".join([*result.messages, result.message]).strip())
    if not result.complete and result.failed:
        sys.exit(1)


@dupes_group.command("logs")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def logs_cmd(as_json: bool) -> None:
    """The applied actions, newest first (what `dupes undo` can reverse).

    \b
    Example:
      findsimilar dupes logs --json | jq '.[0].path'
    """
    from findsimilar.cli.actions.actions import list_logs

    logs = list_logs(log_dir())
    if as_json:
        click.echo(dumps(logs, indent=2))
        return
    for entry in logs:
        state = ("in progress" if entry.get("in_progress") else "undone" if entry.get("undone")
                 else f"{entry.get('to_undo', 0)} to undo")
        click.echo(f"{entry.get('created', '?')}  {entry.get('action', '?'):<8} "
                   f"{entry.get('done', 0)} done  {state}  {entry['path']}")
    if not logs:
        click.echo("no actions applied yet")


@dupes_group.command("ignore")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@NO_DAEMON
def ignore_cmd(paths: tuple[str, ...], no_daemon: bool) -> None:
    """Mark photos as "not duplicates" of each other: they are never grouped together
    again (remembered by content, so renames keep the mark). One photo: its identical
    copies are deliberate.

    \b
    Example:
      findsimilar dupes ignore ~/Pictures/a.jpg ~/Pictures/a-print.jpg
    """
    result = _call(no_daemon, "not_duplicates", {"paths": [os.path.abspath(p) for p in paths]})
    click.echo(f"marked {result['pairs']} pair(s) as not duplicates ({result['added']} new)")


@dupes_group.command("unignore")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@NO_DAEMON
def unignore_cmd(paths: tuple[str, ...], no_daemon: bool) -> None:
    """Forget every "not duplicates" mark involving these photos.

    \b
    Example:
      findsimilar dupes unignore ~/Pictures/a.jpg
    """
    result = _call(no_daemon, "not_duplicates",
                   {"paths": [os.path.abspath(p) for p in paths], "forget": True})
    click.echo(f"forgot {result['removed']} mark(s)")
