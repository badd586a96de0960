"""Planning actions on duplicate photos: what ``dupes --action`` would do to each file
(the dry run), decided from the listing alone. Nothing is read or touched here but the
type of ``--move-to``; :mod:`.actions` carries a plan out. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from findsimilar.cli.actions.actionlog import ActionError
from findsimilar.text import human_size, is_under, printable

__all__ = ["ACTIONS", "NEEDS_SAME_BYTES", "Action", "PlannedStep", "format_plan",
           "plan_actions"]

Action = Literal["trash", "hardlink", "move"]
ACTIONS: tuple[str, ...] = ("trash", "hardlink", "move")
NEEDS_SAME_BYTES = "hardlink needs identical bytes (use trash or move)"


@dataclass(frozen=True)
class PlannedStep:
    action: str  # "trash" | "hardlink" | "move"
    path: str  # the file acted on
    keep: str  # the group's keeper
    target: str | None  # move: wanted destination; hardlink: the keeper; trash: None
    tier: str
    skip: str | None = None  # why this file will not be acted on
    size: int = 0  # as listed; apply skips the file if it differs
    mtime: float = 0.0
    hash: str = ""  # as listed; apply re-hashes the file and skips it if it differs
    keep_size: int | None = None  # the keeper as listed
    keep_mtime: float | None = None
    keep_hash: str | None = None


def plan_actions(groups: list[dict], action: Action, *, move_to: str | None = None,
                 keep_in: Sequence[str] = ()) -> list[PlannedStep]:
    """Return one step per non-keeper member, in group order, skipped ones with a reason.

    Reads nothing but ``move_to``'s type. Raises ActionError for an unknown action or a
    missing or unusable ``move_to``.
    """
    if action not in ACTIONS:
        raise ActionError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    dest = _check_move_to(groups, move_to) if action == "move" else None
    folders = [os.path.abspath(f) for f in keep_in]
    keepers = {g["keep"] for g in groups}
    seen: set[str] = set()
    steps = []
    for group in groups:
        keep = group["keep"]
        keeper: dict[str, Any] = next((m for m in group["members"] if m["path"] == keep), {})
        for member in group["members"]:
            path = member["path"]
            if path == keep:
                continue
            reason = _plan_skip(member, action, keepers, folders, seen)
            seen.add(path)
            target = keep if action == "hardlink" else dest and _move_target(dest, path)
            steps.append(PlannedStep(
                action, path, keep, target, group.get("tier", ""), reason, member["size"],
                member["mtime"], member.get("hash", ""), keeper.get("size"), keeper.get("mtime"),
                keeper.get("hash")))
    return steps


def _plan_skip(member: dict, action: str, keepers: set[str], folders: list[str],
               seen: set[str]) -> str | None:
    path = member["path"]
    if member.get("protected") or any(is_under(path, f) for f in folders):
        return "protected (in a --keep-in folder)"
    if path in keepers:
        return "it is the keeper of another group"
    if path in seen:
        return "already listed in an earlier group"
    if action == "hardlink" and member.get("match") != "exact":
        return NEEDS_SAME_BYTES
    return None


def _check_move_to(groups: list[dict], move_to: str | None) -> str:
    if not move_to:
        raise ActionError("moving needs a destination folder (--move-to DIR)")
    dest = os.path.abspath(move_to)
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise ActionError(f"the move destination {dest} exists and is not a folder")
    for member in (m for g in groups for m in g["members"]):
        if is_under(dest, member["path"]):
            raise ActionError(f"the move destination {dest} is inside {member['path']}")
    return dest


def _move_target(move_to: str, path: str) -> str:
    """Where ``path`` goes: its path relative to $HOME (or to / outside it) under move_to."""
    home = os.path.expanduser("~")
    rel = os.path.relpath(path, home) if is_under(path, home) else path.lstrip("/")
    return os.path.join(move_to, rel)


def format_plan(steps: list[PlannedStep]) -> str:
    """A readable dry run: each group's keeper, what would happen per file, then a total."""
    lines, keep = [], None
    for step in steps:
        if step.keep != keep:
            keep = step.keep
            lines.append(f"{step.tier or 'group'}: keep {printable(keep)}")
        if step.skip:
            lines.append(f"  skip      {printable(step.path)}: {step.skip}")
        elif step.action == "move":
            lines.append(f"  move      {printable(step.path)} -> {printable(step.target or '')}")
        else:
            lines.append(f"  {step.action:<9} {printable(step.path)} ({human_size(step.size)})")
    lines.append(_total(steps))
    return "\n".join(lines)


def _total(steps: list[PlannedStep]) -> str:
    acting = [s for s in steps if not s.skip]
    if not steps:
        return "nothing to do"
    files = f"{len(acting)} file{'' if len(acting) == 1 else 's'}"
    files += f" ({human_size(sum(s.size for s in acting))})"
    where = os.path.commonpath([os.path.dirname(s.target or "/") for s in acting] or ["/"])
    what = {"trash": f"would move {files} to the trash",
            "hardlink": f"would replace {files} with reflinks (separate files sharing storage) "
                        "where the filesystem can, else hard links to their keepers",
            "move": f"would move {files} to {printable(where)}"}[steps[0].action]
    return f"{what}; {len(steps) - len(acting)} skipped"
