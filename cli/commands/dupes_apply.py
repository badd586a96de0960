"""``findsimilar dupes apply PLAN``, and acting on a listing's groups for ``dupes --action``.

Both plan the steps from the groups alone (:mod:`findsimilar.cli.actions.plan`), show them
as a dry run unless ``--apply``, and apply them through the one path that re-checks every
fact at the moment it acts (:mod:`findsimilar.cli.actions.actions`). ``apply`` needs no
daemon: the plan file holds everything its checks rest on.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from findsimilar.cli.actions.plan import ACTIONS
from findsimilar.config import load_config
from findsimilar.jsonout import dumps

__all__ = ["INCLUDE_RAW_PAIRS", "act_on", "apply_cmd", "log_dir", "print_paths",
           "would_act_on"]


INCLUDE_RAW_PAIRS = click.option(
    "--include-raw-pairs", is_flag=True,
    help="Also act on RAW+JPEG pairs (IMG_1.CR2 and IMG_1.JPG in one folder: one photo "
         "in two files, left alone by default).")

def log_dir() -> Path:
    """Where applied runs keep their logs (what `dupes undo` reads)."""
    return load_config().data_dir / "actions"


def act_on(groups: list[dict], action: str, move_to: str | None, keep_in: list[str],
           apply_: bool, as_json: bool,
           include_raw_pairs: bool = False) -> tuple[dict[str, Any], int]:
    """Plan ``action`` on ``groups`` (exact and near only), print the dry run, or apply it
    (unless ``as_json``, which leaves the printing to the caller); return the JSON of
    what was planned or done, and how many steps failed."""
    from findsimilar.cli.actions.actions import apply_plan, format_plan, plan_groups

    steps = plan_groups(groups, action, move_to=move_to, keep_in=keep_in,  # type: ignore[arg-type]
                        include_raw_pairs=include_raw_pairs)
    if not apply_:
        if not as_json:
            click.echo(format_plan(steps))
            print("dry run: nothing was changed; add --apply to do it", file=sys.stderr)
        return {"applied": False, "action": action,
                "move_to": move_to and os.path.abspath(move_to), "keep_in": keep_in,
                "plan": [asdict(s) for s in steps]}, 0
    log = apply_plan(steps, log_dir())
    if not as_json:
        click.echo("\n".join(log.messages))
        print(f"{action}: {log.done} done, {log.skipped} skipped, {log.failed} failed; "
              f"log {log.path}; `findsimilar dupes undo` reverses it", file=sys.stderr)
        for note in log.notes:
            print(f"note: {note}", file=sys.stderr)
    return {"applied": True, **log.to_json()}, log.failed


def would_act_on(groups: list[dict], action: str | None, move_to: str | None,
                 keep_in: list[str], include_raw_pairs: bool = False) -> list[str]:
    """The files ``action`` (default: any that removes copies, such as trash) would act
    on: the non-keepers of exact and near groups, less protected and skipped ones."""
    from findsimilar.cli.actions.plan import plan_groups

    steps = plan_groups(groups, action or "trash", move_to=move_to,  # type: ignore[arg-type]
                        keep_in=keep_in, include_raw_pairs=include_raw_pairs)
    return [s.path for s in steps if not s.skip]


def print_paths(paths: list[str], nul: bool) -> None:
    """Each path as its bytes (any file name survives), one a line or NUL-terminated."""
    out = sys.stdout.buffer
    end = b"\0" if nul else b"\n"
    out.write(b"".join(os.fsencode(p) + end for p in paths))
    out.flush()


def check_path_output(paths_out: bool, as_json: bool, apply_: bool) -> None:
    if paths_out and as_json:
        raise click.UsageError("--paths/-0 and --json are two outputs: choose one")
    if paths_out and apply_:
        raise click.UsageError("--paths/-0 list what would be acted on: use them without "
                               "--apply")


@click.command("apply")
@click.argument("plan", type=click.Path(dir_okay=False))
@click.option("--action", type=click.Choice(ACTIONS),
              help="What to do with each non-keeper of the plan's exact and near groups "
                   "(default: the --action the plan was printed with).")
@click.option("--move-to", type=click.Path(file_okay=False), metavar="DIR",
              help="Folder for --action move (implies it).")
@click.option("--keep-in", "keep_in", multiple=True, type=click.Path(file_okay=False),
              metavar="DIR", help="Also never touch files in this folder (repeatable).")
@click.option("--apply", "apply_", is_flag=True, help="Really do it (logged; `findsimilar "
                                                     "dupes undo` reverses it).")
@click.option("--json", "as_json", is_flag=True, help="Print the groups and the plan or the "
                                                     "run as JSON.")
@click.option("--paths", "paths_out", is_flag=True,
              help="Only print the files that would be acted on, one a line.")
@click.option("-0", "--print0", "nul", is_flag=True,
              help="As --paths, each path ended by a NUL byte (for xargs -0).")
@INCLUDE_RAW_PAIRS
def apply_cmd(plan: str, action: str | None, move_to: str | None, keep_in: tuple[str, ...],
              apply_: bool, as_json: bool, paths_out: bool, nul: bool,
              include_raw_pairs: bool) -> None:
    """Act on exactly what a reviewed plan lists: a dry run unless --apply.

    PLAN is what `findsimilar dupes --json` printed (edit it freely: remove
    groups or files, make another member the keeper by changing "keep" and
    the order of "files"). Only its exact and near groups are acted on. Each
    file and its keeper are checked again when acted on (bytes, inode, size,
    modified time, against the plan): anything changed since is skipped,
    with the reason. Exits with 1 if a step failed, 2 if PLAN is not a plan.

    \b
    Examples:
      findsimilar dupes ~/Pictures --json --html review.html > plan.json
      findsimilar dupes apply plan.json --action trash            # dry run
      findsimilar dupes apply plan.json --action trash --apply
      findsimilar dupes apply plan.json --paths                   # for xargs
      findsimilar dupes undo                                      # put it back
    """
    from findsimilar.cli.actions.planfile import read_plan

    check_path_output(paths_out or nul, as_json, apply_)
    if move_to and action not in (None, "move"):
        raise click.UsageError("--move-to goes with --action move")
    the_plan = read_plan(Path(plan))
    action = "move" if move_to else action or the_plan.action
    move_to = move_to or (the_plan.move_to if action == "move" else None)
    if action not in ACTIONS:
        raise click.UsageError(f"{plan} was not printed with an --action: name one "
                               f"({', '.join(ACTIONS)})")
    if action == "move" and not move_to:
        raise click.UsageError("--action move needs --move-to DIR")
    keep = [*the_plan.keep_in, *(os.path.abspath(k) for k in keep_in)]
    if paths_out or nul:
        print_paths(would_act_on(the_plan.groups, action, move_to, keep, include_raw_pairs),
                    nul)
        return
    actions, failed = act_on(the_plan.groups, action, move_to, keep, apply_, as_json,
                             include_raw_pairs)
    if as_json:
        click.echo(dumps({"plan": str(the_plan.path), "groups": the_plan.groups,
                               "actions": actions}, indent=2))
    if failed:
        sys.exit(1)
