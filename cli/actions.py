"""Safe actions on duplicate photos: plan (the dry run), apply with a JSON log, undo.

The promises: a group's keeper and protected files are never acted on; a file changed since
the listing is skipped; nothing is ever overwritten; every step is logged as it finishes, so
it can be undone. Runs in the thin CLI: standard library only.

The freedesktop trash is implemented here, not through send2trash: send2trash does not say
where a file went (and may hand off to gio, which says even less), reads XDG_DATA_HOME once
at import, writes .trashinfo files without O_EXCL, and stamps deletions to the second, so
finding "our" entry again by Path= and DeletionDate is ambiguous.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from findsimilar.text import human_size, is_under, printable

from .safefs import copy_bytes, move_file, numbered, tmp_name, unlink_quietly
from .trash import send_to_trash

__all__ = ["ACTIONS", "Action", "ActionError", "ActionLog", "PlannedStep", "UndoResult",
           "apply_plan", "format_plan", "list_logs", "plan_actions", "undo"]

Action = Literal["trash", "hardlink", "move"]
ACTIONS: tuple[str, ...] = ("trash", "hardlink", "move")
LOG_VERSION = 1
NEEDS_SAME_BYTES = "hardlink needs identical bytes (use trash or move)"
# Listings carry mtime as float seconds, which cannot hold every nanosecond exactly.
_MTIME_TOLERANCE_NS = 1_000_000

Record = dict[str, Any]


class ActionError(Exception):
    """A run cannot go ahead: bad options, or an action log that cannot be read or written."""


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
    hash: str = ""
    keep_size: int | None = None  # the keeper as listed, when the group lists it
    keep_mtime: float | None = None


@dataclass
class ActionLog:
    """What apply_plan did; ``path`` is its JSON log (the handle for undo)."""

    path: Path
    action: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


@dataclass
class UndoResult:
    """What undo did; ``complete`` is True once every done step of the log is undone."""

    path: Path | None
    undone: int = 0
    failed: int = 0
    complete: bool = False
    message: str = ""
    messages: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": self.path and str(self.path)}


# -- planning (touches nothing) ----------------------------------------------------------

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
                member["mtime"], member.get("hash", ""), keeper.get("size"), keeper.get("mtime")))
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
            "hardlink": f"would replace {files} with hard links to their keepers",
            "move": f"would move {files} to {printable(where)}"}[steps[0].action]
    return f"{what}; {len(steps) - len(acting)} skipped"


# -- applying --------------------------------------------------------------------------

def apply_plan(steps: list[PlannedStep], log_dir: Path) -> ActionLog:
    """Carry out ``steps``, re-checking each file first; return counts and per-file messages.

    Writes one JSON log in ``log_dir`` before the first step, and journals every step as it
    finishes. A file problem is recorded and the run goes on; raises ActionError only when the
    log cannot be written, since an unlogged change could not be undone.
    """
    path = _new_log_path(Path(log_dir))
    action = steps[0].action if steps else "none"
    log: Record = {"version": LOG_VERSION, "created": datetime.now(UTC).isoformat(),
                   "action": action, "steps": [_new_record(s) for s in steps], "undone": False}
    result = ActionLog(path, action)
    with _LogWriter(path, log) as writer:
        for index, (step, record) in enumerate(zip(steps, log["steps"], strict=True)):
            _apply_step(step, record)
            writer.step(index, record)
            _tally(result, record)
    return result


def _new_record(step: PlannedStep) -> Record:
    return {"action": step.action, "path": step.path, "keep": step.keep, "target": step.target,
            "tier": step.tier, "size": step.size, "mtime_ns": round(step.mtime * 1e9),
            "hash": step.hash, "done": False, "skip": step.skip, "error": None,
            "trash_info": None, "undone": False, "undo_error": None}


def _tally(result: ActionLog, record: Record) -> None:
    path = printable(record["path"])
    if record["done"]:
        result.done += 1
        result.messages.append(f"{_DONE[record['action']]}: {path}")
    elif record["error"]:
        result.failed += 1
        result.messages.append(f"failed: {path}: {record['error']}")
    else:
        result.skipped += 1
        result.messages.append(f"skipped: {path}: {record['skip']}")


def _apply_step(step: PlannedStep, record: Record) -> None:
    try:
        record["skip"] = step.skip or _keeper_problem(step) or _file_problem(
            step.path, step.size, round(step.mtime * 1e9))
        if not record["skip"] and step.action == "hardlink":
            record["skip"] = _link_problem(step)
        if record["skip"]:
            return
        record["mtime_ns"] = os.lstat(step.path).st_mtime_ns  # exact, to recognise it on undo
        _APPLY[step.action](step, record)
        record["done"] = True
    except Exception as error:  # one bad file must not stop the others (rule: log, go on)
        record["error"] = _describe(error)


def _keeper_problem(step: PlannedStep) -> str | None:
    mtime_ns = None if step.keep_mtime is None else round(step.keep_mtime * 1e9)
    problem = _file_problem(step.keep, step.keep_size, mtime_ns)
    return None if problem is None else f"keeper {problem}; whole group skipped"


def _file_problem(path: str, size: int | None, mtime_ns: int | None) -> str | None:
    """Why ``path`` is not the regular file that was listed, or None if it still is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "no longer exists"
    if stat.S_ISLNK(st.st_mode):
        return "is now a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "is no longer a regular file"
    if size is not None and st.st_size != size:
        return f"changed since listing (size {size} -> {st.st_size})"
    if mtime_ns is not None and abs(st.st_mtime_ns - mtime_ns) >= _MTIME_TOLERANCE_NS:
        return "changed since listing (modified time differs)"
    return None


def _link_problem(step: PlannedStep) -> str | None:
    here, keep = os.lstat(step.path), os.lstat(step.keep)
    if here.st_dev != keep.st_dev:
        return "keeper is on another filesystem (hard links cannot cross filesystems)"
    if here.st_ino == keep.st_ino:
        return "already a hard link to the keeper"
    if _content_hash(step.path) != step.hash:
        return "bytes changed since listing"
    if _content_hash(step.keep) != step.hash:
        return "keeper's bytes differ from this file's"
    return None


def _content_hash(path: str) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _trash_step(step: PlannedStep, record: Record) -> None:
    record["target"], record["trash_info"] = send_to_trash(step.path)


def _hardlink_step(step: PlannedStep, record: Record) -> None:
    st = os.lstat(step.path)
    record.update(mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid)
    tmp = tmp_name(step.path)
    os.link(step.keep, tmp, follow_symlinks=False)
    try:
        os.replace(tmp, step.path)  # atomic: the path always holds either file
    except BaseException:
        unlink_quietly(tmp)
        raise


def _move_step(step: PlannedStep, record: Record) -> None:
    wanted = step.target or ""
    os.makedirs(os.path.dirname(wanted), exist_ok=True)
    for dest in numbered(wanted):
        with contextlib.suppress(FileExistsError):
            move_file(step.path, dest)
            record["target"] = dest
            return


_APPLY: dict[str, Callable[[PlannedStep, Record], None]] = {
    "trash": _trash_step, "hardlink": _hardlink_step, "move": _move_step}
_DONE = {"trash": "trashed", "hardlink": "hard-linked to its keeper", "move": "moved"}


# -- undoing ---------------------------------------------------------------------------

def undo(log_dir: Path, log_file: Path | None = None) -> UndoResult:
    """Reverse the done steps of ``log_file`` (default: the newest log with something left to
    undo), last step first. Never overwrites a file: a step that cannot be undone is reported
    with its reason and stays pending, so undo can be run again once it is fixed. Undoing an
    undone log does nothing. Raises ActionError if the log cannot be read or written.
    """
    log_file = log_file or _latest_undoable(Path(log_dir))
    if log_file is None:
        return UndoResult(None, complete=True, message=f"nothing to undo in {log_dir}")
    log = _read_log(Path(log_file))
    result = UndoResult(Path(log_file))
    pending = [(i, r) for i, r in reversed(list(enumerate(log["steps"])))
               if r["done"] and not r["undone"]]
    if not pending:
        result.complete, result.message = True, f"already undone; nothing to do ({log_file})"
        return result
    with _LogWriter(Path(log_file), log) as writer:
        for index, record in pending:
            _undo_step(record, result)
            writer.step(index, record)
        log["undone"] = result.complete = all(r["undone"] for r in log["steps"] if r["done"])
    result.message = f"undid {result.undone} of {len(pending)} steps" + (
        "" if result.complete else f"; {result.failed} could not be undone (see messages)")
    return result


def _undo_step(record: Record, result: UndoResult) -> None:
    try:
        problem = _UNDO[record["action"]](record)
    except Exception as error:  # reported per file; the other steps still get undone
        problem = _describe(error)
    record["undo_error"] = problem
    if problem:
        result.failed += 1
        result.messages.append(f"not undone: {printable(record['path'])}: {problem}")
    else:
        record["undone"] = True
        result.undone += 1
        result.messages.append(f"restored: {printable(record['path'])}")


def _undo_relocation(record: Record) -> str | None:
    """Bring a trashed or moved file back to where it was, if that place is still free."""
    where = record["target"]
    problem = _file_problem(where, record["size"], record["mtime_ns"])
    if problem:
        return f"the file at {printable(where)} {problem}"
    if os.path.lexists(record["path"]):
        return "a file now exists at the original path; not overwriting it"
    os.makedirs(os.path.dirname(record["path"]), exist_ok=True)
    move_file(where, record["path"])
    if record.get("trash_info"):
        unlink_quietly(record["trash_info"])
    return None


def _undo_hardlink(record: Record) -> str | None:
    """Replace the link by an independent copy with the original mode and mtime."""
    here, keep = os.lstat(record["path"]), os.lstat(record["keep"])
    if (here.st_dev, here.st_ino) != (keep.st_dev, keep.st_ino):
        return "no longer a hard link to the keeper; left as it is"
    tmp = tmp_name(record["path"])
    try:
        copy_bytes(record["keep"], tmp)
        with contextlib.suppress(PermissionError):  # only root may give files away
            os.chown(tmp, record["uid"], record["gid"])
        os.chmod(tmp, record["mode"])  # after chown, which may clear set-id bits
        os.utime(tmp, ns=(here.st_atime_ns, record["mtime_ns"]))
        os.replace(tmp, record["path"])
    except BaseException:
        unlink_quietly(tmp)
        raise
    return None


_UNDO: dict[str, Callable[[Record], str | None]] = {
    "trash": _undo_relocation, "move": _undo_relocation, "hardlink": _undo_hardlink}


def _describe(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return f"{type(error).__name__}: {error}"


# -- the log ---------------------------------------------------------------------------

def _new_log_path(log_dir: Path) -> Path:
    try:
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise ActionError(f"cannot create the action log folder {log_dir}: {error}; "
                          "nothing was done") from error
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    return log_dir / f"{stamp}-{secrets.token_hex(3)}.json"


def _write_log(path: Path, log: Record) -> None:
    """Atomically replace the log (temp, fsync, rename), so a crash leaves the last version."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            json.dump(log, f, indent=1)  # ASCII-escaped: any file name survives, even bad UTF-8
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        raise ActionError(f"cannot write the action log {path}: {error}; stopped so that "
                          "every change made stays undoable") from error


class _LogWriter:
    """The log, kept current at O(1) per step: rewriting the whole JSON after each step would
    cost O(n^2) (minutes for 10 000 files), so each finished step is appended to NAME.journal
    (fsynced) and the JSON is rewritten on entry and exit. If the process dies in between,
    _read_log folds the journal back in, so nothing done is ever missing from the log."""

    def __init__(self, path: Path, log: Record) -> None:
        self.path, self.log, self.journal = path, log, path.with_suffix(".journal")

    def __enter__(self) -> _LogWriter:
        _write_log(self.path, self.log)
        return self

    def step(self, index: int, record: Record) -> None:
        try:
            with open(self.journal, "a", encoding="ascii") as f:
                f.write(json.dumps({"index": index, "record": record}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError as error:
            raise ActionError(f"cannot write the action log {self.journal}: {error}; stopped "
                              "so that every change made stays undoable") from error

    def __exit__(self, *exc_info: object) -> None:
        _write_log(self.path, self.log)  # also on Ctrl-C or a bug: keep what was done
        self.journal.unlink(missing_ok=True)


def _read_log(path: Path) -> Record:
    try:
        log = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ActionError(f"cannot read the action log {path}: {error}") from error
    if not isinstance(log, dict) or log.get("version") != LOG_VERSION:
        raise ActionError(f"{path} is not a version {LOG_VERSION} findsimilar action log")
    with contextlib.suppress(FileNotFoundError):  # left by a run that was killed
        for line in path.with_suffix(".journal").read_text(encoding="ascii").splitlines():
            with contextlib.suppress(ValueError, LookupError, TypeError):  # a torn last line
                entry = json.loads(line)
                log["steps"][entry["index"]] = entry["record"]
    return log


def list_logs(log_dir: Path) -> list[dict]:
    """Summaries of the action logs in ``log_dir``, newest first; an unreadable one is listed
    with an ``error``. ``to_undo`` counts done steps not yet undone."""
    summaries: list[dict[str, Any]] = []
    for path in Path(log_dir).glob("*.json"):
        try:
            log = _read_log(path)
        except ActionError as error:
            summaries.append({"path": str(path), "created": "", "error": str(error)})
            continue
        steps = log["steps"]
        summaries.append({
            "path": str(path), "created": log["created"], "action": log["action"],
            "steps": len(steps), "done": sum(s["done"] for s in steps),
            "skipped": sum(bool(s["skip"]) for s in steps),
            "failed": sum(bool(s["error"]) for s in steps), "undone": log["undone"],
            "to_undo": sum(s["done"] and not s["undone"] for s in steps)})
    # ISO times in UTC sort as text; the random suffix breaks same-second ties stably.
    return sorted(summaries, key=lambda s: (s["created"], s["path"]), reverse=True)


def _latest_undoable(log_dir: Path) -> Path | None:
    for summary in list_logs(log_dir):
        if summary.get("to_undo"):
            return Path(summary["path"])
    return None
