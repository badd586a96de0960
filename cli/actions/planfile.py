"""A plan on file: the ``dupes --json`` listing that ``dupes apply`` acts on, as reviewed.

The listing is the plan: its ``groups`` (``keep``, ``files`` starting with the keeper,
each member's ``hash``, ``size``, ``mtime``) and, since ``dupes apply`` exists, each
member's ``stat``: the file as the listing found it on disk (device, inode, size, exact
modified time), so that apply can tell a file that changed since from one that did not.
A plan edited by hand is honoured: a group removed is not acted on, a file removed from a
group's ``files`` is left alone, and another member made the keeper (``keep`` and the
first of ``files``) is kept instead. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from findsimilar.errors import EXIT_USAGE, FindSimilarError
from findsimilar.jsonout import restore
from findsimilar.safeio import read_regular

__all__ = ["Plan", "PlanError", "read_plan", "record_disk_facts"]

TIERS = ("exact", "near", "similar")
_PLAN_LIMIT = 1 << 31  # ~0.3 KB a file: millions of files


class PlanError(FindSimilarError):
    """The plan file cannot be used (not JSON, not a findsimilar plan, or edited into an
    inconsistent one): nothing was done. Exit code 2, as for bad usage."""

    exit_code = EXIT_USAGE


@dataclass
class Plan:
    """What a plan file holds: its groups (checked), and the action of the dry run it
    was printed with (``dupes --action ... --json``), if any."""

    path: Path
    groups: list[dict[str, Any]]
    action: str | None = None
    move_to: str | None = None
    keep_in: list[str] = field(default_factory=list)


def record_disk_facts(groups: list[dict[str, Any]]) -> None:
    """Add to each member its ``stat`` as it is on disk now: ``{"dev", "ino", "size",
    "mtime_ns"}``, or None if the path holds no regular file (gone, a symbolic link...).
    One lstat per member."""
    for group in groups:
        for member in group.get("members", []):
            try:
                st = os.lstat(member["path"])
            except OSError:
                member["stat"] = None
                continue
            member["stat"] = {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size,
                              "mtime_ns": st.st_mtime_ns} if stat.S_ISREG(st.st_mode) else None


def read_plan(path: Path) -> Plan:
    """The plan in the file at ``path``, its groups checked and made consistent (each
    member's ``match`` said again against the keeper the plan names). Raises PlanError,
    naming the file, if it cannot be read, is not JSON, or is not a usable plan."""
    data = _load(path)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise PlanError(f"{path} is not a findsimilar plan: expected the JSON that "
                        '`findsimilar dupes --json` prints ({"groups": [...]})')
    groups = [_group(path, n, g) for n, g in enumerate(data["groups"], 1)]
    actions = data.get("actions") if isinstance(data.get("actions"), dict) else {}
    action = actions.get("action") if not actions.get("applied") else None
    keep_in = actions.get("keep_in") if isinstance(actions.get("keep_in"), list) else []
    return Plan(path, groups, action if isinstance(action, str) else None,
                actions.get("move_to") if isinstance(actions.get("move_to"), str) else None,
                [k for k in keep_in if isinstance(k, str)])


_EMBEDDED = re.compile(rb'<script type="application/json" id="findsimilar-plan">(.*?)</script>',
                       re.S)


def _load(path: Path) -> Any:
    try:
        raw = read_regular(path, _PLAN_LIMIT)
    except OSError as error:  # also NotRegularFile (a folder, a FIFO) and FileTooBig
        raise PlanError(f"cannot read the plan {path}: {error.strerror or error}") from None
    if raw.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        # A review page (`dupes --html`) carries the listing it shows.
        found = _EMBEDDED.search(raw)
        if found is None:
            raise PlanError(f"{path} is a review page without a plan in it (made by an "
                            "older findsimilar): make it again with `findsimilar dupes "
                            "--html PAGE`, or apply the `--json` listing of the same run")
        raw = found.group(1)
    try:
        return restore(json.loads(raw.decode("utf-8", "surrogateescape")))
    except ValueError as error:
        raise PlanError(f"{path} is not valid JSON ({error}): a plan is what "
                        "`findsimilar dupes --json` prints") from None


def _group(path: Path, n: int, group: Any) -> dict[str, Any]:
    """Group ``n`` of the plan, checked: ``files`` says which files it has (the keeper
    first, as ``keep`` says), ``members`` gives their facts."""
    def bad(why: str) -> PlanError:
        return PlanError(f"{path}: group {n} {why}; nothing was done")

    if not isinstance(group, dict) or group.get("tier") not in TIERS:
        raise bad(f"is not a group of duplicates (it needs a tier: {', '.join(TIERS)})")
    keep, files = group.get("keep"), group.get("files")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise bad('has no "files" (a list of paths, the keeper first)')
    if not isinstance(keep, str) or keep not in files:
        raise bad(f'keeps {keep!r}, which is not one of its "files"')
    if files[0] != keep:
        raise bad(f'keeps {keep} but its "files" start with {files[0]}: the keeper comes '
                  'first; edit "keep" and "files" alike')
    if len(set(files)) != len(files):
        raise bad('lists a file twice in "files"')
    if not isinstance(group.get("members"), list):
        raise bad('has no "members" (the facts apply checks)')
    members = {m["path"]: m for m in group["members"]
               if isinstance(m, dict) and isinstance(m.get("path"), str)}
    for f in files:
        if f not in members:
            raise bad(f'has no "members" entry (the facts apply checks) for {f}')
        if not _facts_ok(members[f]):
            raise bad(f"has facts for {f} that are not those `dupes --json` prints (a "
                      '"hash" string, a whole "size", an "mtime" in seconds)')
    keeper = members[keep]
    listed = [{**members[f], "match": _match(members[f], keeper, group["tier"])} for f in files]
    return {**group, "members": listed}


def _facts_ok(member: dict[str, Any]) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    return (isinstance(member.get("hash"), str) and number(member.get("size"))
            and isinstance(member["size"], int) and number(member.get("mtime")))


def _match(member: dict[str, Any], keeper: dict[str, Any], tier: str) -> str:
    if member is keeper:
        return "keep"
    same = member.get("hash") and member.get("hash") == keeper.get("hash")
    return "exact" if same else tier
