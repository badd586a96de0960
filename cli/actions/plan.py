"""Planning actions on duplicate photos: what ``dupes --action`` (or ``dupes apply``)
would do to each file (the dry run), decided from the listing alone, and, for trash and
move, which sidecars (:mod:`findsimilar.sidecars`) would go with each file. Nothing is
read or touched here but the type of ``--move-to`` and the names in the folders of the
files that would go; :mod:`.actions` carries a plan out. Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from findsimilar.cli.actions.actionlog import ActionError
from findsimilar.rawpairs import raw_pairs
from findsimilar.sidecars import FolderNames
from findsimilar.text import human_size, is_under, printable

__all__ = ["ACTIONS", "DUPLICATE_TIERS", "NEEDS_SAME_BYTES", "REFLINK_NEEDS_SAME_BYTES",
           "Action", "PlannedStep", "attach_sidecars", "file_names", "format_plan",
           "group_raw_pairs", "identical_subgroups", "plan_actions", "plan_groups"]

Action = Literal["trash", "hardlink", "reflink", "move"]
ACTIONS: tuple[str, ...] = ("trash", "hardlink", "reflink", "move")
# Only these tiers are ever acted on: "similar" photos are different pictures.
DUPLICATE_TIERS = ("exact", "near")
NEEDS_SAME_BYTES = "hardlink needs identical bytes (use trash or move)"
REFLINK_NEEDS_SAME_BYTES = ("reflink needs identical bytes: a near duplicate is another "
                            "picture file, not a copy of the keeper's bytes (use trash or move)")
_REPLACES = ("hardlink", "reflink")  # actions that put the keeper's bytes in the copy's place


@dataclass(frozen=True)
class PlannedStep:
    action: str  # "trash" | "hardlink" | "reflink" | "move"
    path: str  # the file acted on
    keep: str  # the group's keeper
    target: str | None  # move: wanted destination; hardlink/reflink: the keeper; trash: None
    tier: str
    skip: str | None = None  # why this file will not be acted on
    size: int = 0  # as listed; apply skips the file if it differs
    mtime: float = 0.0
    hash: str = ""  # as listed; apply re-hashes the file and skips it if it differs
    keep_size: int | None = None  # the keeper as listed
    keep_mtime: float | None = None
    keep_hash: str | None = None
    # The files as they were on disk when the listing was made (a member's "stat"): apply
    # then also checks the exact modified time and that the path holds the same inode.
    mtime_ns: int | None = None
    inode: tuple[int, int] | None = None
    keep_mtime_ns: int | None = None
    keep_inode: tuple[int, int] | None = None
    # Trash and move: the sidecars that go with the file (see :func:`attach_sidecars`).
    sidecars: tuple[str, ...] = ()


def plan_groups(groups: list[dict], action: Action, *, move_to: str | None = None,
                keep_in: Sequence[str] = (), include_raw_pairs: bool = False,
                ) -> list[PlannedStep]:
    """The steps of ``action`` on a listing's groups: exact and near groups only; for
    hardlink and reflink the byte-identical files of each group (see
    :func:`identical_subgroups`), and for reflink also a refused step for each near copy,
    saying why. Trash and move steps list the sidecars that go with their file (see
    :func:`attach_sidecars`). Raises ActionError like :func:`plan_actions`."""
    groups = [g for g in groups if g["tier"] in DUPLICATE_TIERS]
    pairs = {} if include_raw_pairs else group_raw_pairs(groups)
    if action not in _REPLACES:
        return attach_sidecars(plan_actions(groups, action, move_to=move_to, keep_in=keep_in,
                                            pairs=pairs))
    steps = plan_actions(identical_subgroups(groups), action, move_to=move_to, keep_in=keep_in,
                         pairs=pairs)
    if action == "reflink":
        steps += _refused_near_copies(groups, {s.path for s in steps})
    return steps


def attach_sidecars(steps: list[PlannedStep]) -> list[PlannedStep]:
    """``steps`` with the sidecars each acting file takes along: its own (``NAME.EXT.xmp``)
    and a ``NAME.xmp`` shared by the files ``NAME.*`` of its folder only when all of them
    go, with the last of them to go. Reads each such folder's names once; a folder that
    cannot be read gives no sidecars (its files' steps then fail or go on alone)."""
    names: dict[str, FolderNames] = {}
    acting = [s for s in steps if not s.skip]
    order = {s.path: n for n, s in enumerate(acting)}
    carried: dict[str, list[str]] = {s.path: [] for s in acting}
    for step in acting:
        folder, photo = os.path.split(step.path)
        if folder not in names:
            names[folder] = FolderNames(file_names(folder))
        here = names[folder]
        carried[step.path] += [os.path.join(folder, n) for n in here.own(photo)]
        for shared in here.shared(photo):
            holders = [os.path.join(folder, n) for n in here.holders(shared)]
            if step.path in holders and all(h in order for h in holders) and max(
                    holders, key=lambda h: order[h]) == step.path:
                carried[step.path].append(os.path.join(folder, shared))
    return [replace(s, sidecars=tuple(dict.fromkeys(carried[s.path])))
            if carried.get(s.path) and not s.skip else s for s in steps]


def file_names(folder: str) -> list[str]:
    """The names of the regular files in ``folder`` (none if it cannot be read)."""
    try:
        with os.scandir(folder) as entries:
            return [e.name for e in entries if e.is_file(follow_symlinks=False)]
    except OSError:
        return []


def identical_subgroups(groups: list[dict]) -> list[dict]:
    """Links and clones join identical bytes only: each set of byte-identical files in a
    group becomes a group of its own, kept by the group's keeper if it is one of them, else
    by a reference-folder file, else the first path."""
    out = []
    for g in groups:
        by_hash: dict[str, list[dict]] = {}
        for m in g["members"]:
            by_hash.setdefault(m["hash"], []).append(m)
        for twins in by_hash.values():
            if len(twins) < 2:
                continue
            keep = next((m for m in twins if m["path"] == g["keep"]), None) or min(
                twins, key=lambda m: (not m.get("protected"), m["path"]))
            members = [{**m, "match": "keep" if m is keep else "exact"} for m in twins]
            out.append({**g, "tier": "exact", "keep": keep["path"], "members": members,
                        "files": [m["path"] for m in members]})
    return out


def _refused_near_copies(groups: list[dict], planned: set[str]) -> list[PlannedStep]:
    """A skipped reflink step for each file that is a copy of no other file's bytes."""
    steps = []
    for g in groups:
        hashes = [m["hash"] for m in g["members"]]
        for m in g["members"]:
            if m["path"] != g["keep"] and hashes.count(m["hash"]) == 1 and (
                    m["path"] not in planned):
                steps.append(PlannedStep("reflink", m["path"], g["keep"], g["keep"],
                                         g["tier"], REFLINK_NEEDS_SAME_BYTES, m["size"],
                                         m["mtime"], m["hash"]))
    return steps


def group_raw_pairs(groups: list[dict]) -> dict[str, str]:
    """The files of ``groups`` that are half of a RAW+JPEG pair within their group
    (``findsimilar.rawpairs``) -> the other half: one photo in two files."""
    pairs: dict[str, str] = {}
    for group in groups:
        pairs.update(raw_pairs(m["path"] for m in group["members"]))
    return pairs


def plan_actions(groups: list[dict], action: Action, *, move_to: str | None = None,
                 keep_in: Sequence[str] = (), pairs: dict[str, str] | None = None,
                 ) -> list[PlannedStep]:
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
        for listed in group["members"]:
            if listed["path"] == keep:
                continue
            # A copy's other hard links are the same file: acting on one path alone would
            # free nothing, so each of its paths gets the step.
            for path in [listed["path"], *listed.get("links", [])]:
                member = {**listed, "path": path}
                reason = _plan_skip(member, action, keepers, folders, seen)
                partner = (pairs or {}).get(listed["path"])
                if reason is None and partner is not None:
                    reason = (f"one photo with {printable(os.path.basename(partner))} (a RAW+"
                              "JPEG pair; --include-raw-pairs acts on it)")
                seen.add(path)
                target = keep if action in _REPLACES else dest and _move_target(dest, path)
                steps.append(PlannedStep(
                    action, path, keep, target, group.get("tier", ""), reason, member["size"],
                    member["mtime"], member.get("hash", ""), keeper.get("size"),
                    keeper.get("mtime"), keeper.get("hash"), *_seen(member), *_seen(keeper)))
    return steps


def _seen(member: dict) -> tuple[int | None, tuple[int, int] | None]:
    """(mtime_ns, (dev, ino)) of a member as the listing found it on disk, if it says."""
    seen = member.get("stat")
    if not isinstance(seen, dict):
        return None, None
    mtime_ns, dev, ino = seen.get("mtime_ns"), seen.get("dev"), seen.get("ino")
    ints = all(isinstance(v, int) for v in (mtime_ns, dev, ino))
    return (mtime_ns, (dev, ino)) if ints else (None, None)  # type: ignore[return-value]


def _plan_skip(member: dict, action: str, keepers: set[str], folders: list[str],
               seen: set[str]) -> str | None:
    path = member["path"]
    if member.get("protected") or any(is_under(path, f) for f in folders):
        return "protected (in a --keep-in folder)"
    if path in keepers:
        return "it is the keeper of another group"
    if path in seen:
        return "already listed in an earlier group"
    if action in _REPLACES and member.get("match") != "exact":
        return NEEDS_SAME_BYTES if action == "hardlink" else REFLINK_NEEDS_SAME_BYTES
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
        if step.sidecars and not step.skip:
            names = ", ".join(printable(os.path.basename(s)) for s in step.sidecars)
            lines.append(f"            with its sidecar{'s' * (len(step.sidecars) > 1)} {names}")
    lines.append(_total(steps))
    return "\n".join(lines)


def _total(steps: list[PlannedStep]) -> str:
    acting = [s for s in steps if not s.skip]
    if not steps:
        return "nothing to do"
    files = f"{len(acting)} file{'' if len(acting) == 1 else 's'}"
    files += f" ({human_size(sum(s.size for s in acting))})"
    if sidecars := sum(len(s.sidecars) for s in acting):
        files += f" and {sidecars} sidecar{'' if sidecars == 1 else 's'}"
    where = os.path.commonpath([os.path.dirname(s.target or "/") for s in acting] or ["/"])
    what = {"trash": f"would move {files} to the trash",
            "hardlink": f"would replace {files} with reflinks (separate files sharing storage) "
                        "where the filesystem can, else hard links to their keepers",
            "reflink": f"would replace {files} with reflinks of their keepers (separate files "
                       "sharing storage; where the filesystem cannot, the file is left as "
                       "it is)",
            "move": f"would move {files} to {printable(where)}"}[steps[0].action]
    return f"{what}; {len(steps) - len(acting)} skipped"
