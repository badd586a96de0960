"""Safe actions on duplicate photos: apply a plan (:mod:`.plan`) with a JSON log, undo.

The promises: a group's keeper and protected files are never acted on; a trashed or moved
file takes its sidecars along, all or nothing (:mod:`.relocate`); each step checks
again, when it acts, the facts its decision rests on (:mod:`.facts`: both files hashed
again, the inode checked right before the rename or link) and skips a file that changed;
nothing is ever overwritten; every step is journaled before and after it (:mod:`.actionlog`),
so a run stopped anywhere can be undone; undo restores only the bytes its log recorded,
and says so when it cannot. Runs in the thin CLI: standard library only.

The freedesktop trash is implemented here, not through send2trash: send2trash does not say
where a file went (and may hand off to gio, which says even less), reads XDG_DATA_HOME once
at import, writes .trashinfo files without O_EXCL, and stamps deletions to the second, so
finding "our" entry again by Path= and DeletionDate is ambiguous.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from findsimilar.cli.actions.actionlog import (
    LOG_VERSION,
    ActionError,
    Record,
    describe,
    latest_undoable,
    list_logs,
    new_log_path,
    open_log,
    read_log,
)
from findsimilar.cli.actions.facts import Changed, FactChecker, Facts, identity
from findsimilar.cli.actions.plan import (
    ACTIONS,
    NEEDS_SAME_BYTES,
    Action,
    PlannedStep,
    format_plan,
    plan_actions,
    plan_groups,
)
from findsimilar.cli.actions.relocate import (
    Act,
    Intent,
    Journaled,
    carry_sidecars,
    move_step,
    sidecar_record,
    trash_step,
    undo_relocation,
)
from findsimilar.cli.actions.safefs import (
    NO_CLONE,
    clone_into,
    copy_bytes,
    reflink_into,
    tmp_name,
    unlink_quietly,
)
from findsimilar.safeio import open_regular
from findsimilar.text import printable

# The planning names too: callers plan and apply through this one module.
__all__ = ["ACTIONS", "LOG_VERSION", "NEEDS_SAME_BYTES", "Action", "ActionError", "ActionLog",
           "PlannedStep", "UndoResult", "apply_plan", "format_plan", "list_logs",
           "plan_actions", "plan_groups", "undo"]

ONE_FILE = ("hard-linked files are one file now: editing either changes both (undo cannot "
            "bring back bytes edited since)")


@dataclass
class ActionLog:
    """What apply_plan did; ``path`` is its JSON log (the handle for undo)."""

    path: Path
    action: str
    done: int = 0
    skipped: int = 0
    failed: int = 0
    sidecars: int = 0  # sidecars that went with their photos (not counted in done)
    messages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the user must know about the result

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


# -- applying --------------------------------------------------------------------------

def apply_plan(steps: list[PlannedStep], log_dir: Path) -> ActionLog:
    """Carry out ``steps``, re-verifying each at the moment it acts; return counts and
    per-file messages.

    Writes one JSON log in ``log_dir`` before the first step, and journals each step's
    intent before it changes anything and its outcome after. A file problem is recorded
    and the run goes on; raises ActionError only when the log cannot be written (then the
    run stops: an unlogged change could not be undone).
    """
    path = new_log_path(Path(log_dir))
    action = steps[0].action if steps else "none"
    records, owners = _records(steps)
    log: Record = {"version": LOG_VERSION, "created": datetime.now(UTC).isoformat(),
                   "action": action, "steps": records, "undone": False}
    result = ActionLog(path, action)
    checker = FactChecker()
    with open_log(path, log) as writer:
        def journal(i: int) -> Journaled:
            def intent(**pending: Any) -> None:
                writer.intent(i, records[i], op="apply", **pending)

            def undo_intent(**pending: Any) -> None:
                writer.intent(i, records[i], op="undo", **pending)

            return Journaled(records[i], intent, undo_intent)

        for step, index, sides in owners:
            photo = journal(index)
            _apply_step(step, records[index], checker, photo.intent)
            if records[index]["done"] and sides:
                carry_sidecars(step, photo, [journal(i) for i in sides], checker)
            for i in (*sides, index):
                writer.step(i, records[i])
            for i in (index, *sides):  # told of after their photo
                _tally(result, records[i])
    if any(r.get("method") == "hardlink" and r["done"] for r in log["steps"]):
        result.notes.append(ONE_FILE)
    return result


def _records(steps: list[PlannedStep]) -> tuple[list[Record], list[tuple[PlannedStep, int,
                                                                          list[int]]]]:
    """The log's steps, and for each planned step the index of its record and of its
    sidecars' records, which come before it (undo, last first, brings the photo back
    first)."""
    records: list[Record] = []
    owners = []
    for step in steps:
        photo = _new_record(step)
        sides = list(range(len(records), len(records) + len(step.sidecars)))
        records += [sidecar_record(photo, s) for s in step.sidecars]
        owners.append((step, len(records), sides))
        records.append(photo)
    return records, owners


def _new_record(step: PlannedStep) -> Record:
    return {"action": step.action, "path": step.path, "keep": step.keep, "target": step.target,
            "tier": step.tier, "size": step.size, "mtime_ns": round(step.mtime * 1e9),
            "hash": step.hash, "keep_hash": step.keep_hash, "done": False, "skip": step.skip,
            "error": None, "trash_info": None, "method": None, "pending": None,
            "undone": False, "undo_error": None}


def _tally(result: ActionLog, record: Record) -> None:
    path = printable(record["path"])
    if record.get("sidecar_of"):
        _tally_sidecar(result, record, path)
    elif record["error"]:
        result.failed += 1
        result.messages.append(f"failed: {path}: {record['error']}")
    elif record["done"]:
        result.done += 1
        result.messages.append(f"{_DONE[record.get('method') or record['action']]}: {path}")
    else:
        result.skipped += 1
        result.messages.append(f"skipped: {path}: {record['skip']}")


def _tally_sidecar(result: ActionLog, record: Record, path: str) -> None:
    """A sidecar is told of beside its photo, and not counted as a file acted on."""
    if record["done"]:
        result.sidecars += 1
        result.messages.append(f"{_DONE[record['action']]} with it: {path}")
    elif record["error"]:
        result.messages.append(f"failed: {path}: {record['error']}")
    elif record["skip"]:
        result.messages.append(f"left: {path}: {record['skip']}")


def _apply_step(step: PlannedStep, record: Record, checker: FactChecker,
                intent: Intent) -> None:
    if step.skip:
        return
    try:
        here, keeper = checker.verify(step)
        if step.action in ("hardlink", "reflink"):
            record["skip"] = _link_problem(here, keeper, step.action)
            if record["skip"]:
                return
        st = here.stat
        # The exact mtime recognises the file on undo; mode and owner are given back to it.
        record.update(hash=here.hash, keep_hash=keeper.hash, mtime_ns=st.st_mtime_ns,
                      mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid)
        _APPLY[step.action](step, record, Act(here, keeper, intent))
        record["done"] = True
    except Changed as change:
        record["skip"] = str(change)
    except ActionError:
        raise  # the journal cannot be written: stop before anything else changes
    except Exception as error:  # one bad file must not stop the others (rule: log, go on)
        record["error"] = describe(error)
    # A step that raised has undone its own partial work (each is all or nothing).


def _link_problem(here: Facts, keeper: Facts, action: str) -> str | None:
    if here.inode == keeper.inode:
        return "already a hard link to the keeper"
    if action == "hardlink" and here.stat.st_dev != keeper.stat.st_dev:
        return "keeper is on another filesystem (links cannot cross filesystems)"
    return None  # reflink: FICLONE itself says so (EXDEV), as a per-file error


def _hardlink_step(step: PlannedStep, record: Record, act: Act) -> None:
    _replace_with_keeper(step, record, act, link=True)


def _reflink_step(step: PlannedStep, record: Record, act: Act) -> None:
    _replace_with_keeper(step, record, act, link=False)


def _replace_with_keeper(step: PlannedStep, record: Record, act: Act, *, link: bool) -> None:
    tmp = tmp_name(step.path)
    act.intent(tmp=tmp, inode=list(act.here.inode))
    try:
        record["method"] = _clone_or_link(act, tmp, link=link)
        act.here.check()  # not the keeper: a new link changes its ctime
        os.replace(tmp, step.path)  # atomic: the path always holds either file
    except BaseException:
        unlink_quietly(tmp)
        raise


def _clone_or_link(act: Act, tmp: str, *, link: bool) -> str:
    """Fill ``tmp`` with the keeper: a reflink copy carrying the file's own mode, owner
    and times where the filesystem can ("reflink"), else, with ``link``, a hard link
    ("hardlink"); without ``link``, an OSError saying why the filesystem cannot."""
    keeper = act.keeper
    src = open_regular(keeper.path, follow_symlinks=False)
    try:
        if identity(os.fstat(src)) != identity(keeper.stat):
            raise Changed("keeper changed while being acted on; whole group skipped")
        if clone_into(src, tmp) if link else _reflink(src, tmp):
            if identity(os.fstat(src)) != identity(keeper.stat):  # written while cloned
                raise Changed("keeper changed while being acted on; whole group skipped")
            st = act.here.stat
            _give_attributes(tmp, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                             (st.st_atime_ns, st.st_mtime_ns))
            return "reflink"
    finally:
        os.close(src)
    keeper.check()
    os.link(keeper.path, tmp, follow_symlinks=False)
    st = os.lstat(tmp)
    if (st.st_dev, st.st_ino) != keeper.inode:
        raise Changed("keeper was replaced while being acted on; whole group skipped")
    return "hardlink"


def _reflink(src: int, tmp: str) -> bool:
    """Clone ``src`` into ``tmp``, or raise an OSError saying why the filesystem cannot
    (the step's message names the file, which is left as it is)."""
    try:
        reflink_into(src, tmp)
    except OSError as error:
        if error.errno not in NO_CLONE:
            raise
        why = ("the keeper is on another filesystem" if error.errno == errno.EXDEV else
               "this filesystem cannot make reflinks (e.g. ext4, tmpfs; XFS with reflink=1, "
               "Btrfs and bcachefs can)")
        raise OSError(error.errno, f"cannot reflink: {why} ({error.strerror}); left as it "
                                   "is") from None
    return True


def _give_attributes(path: str, mode: int, uid: int, gid: int, times_ns: tuple[int, int],
                     ) -> None:
    with contextlib.suppress(PermissionError):  # only root may give files away
        os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode)  # after chown, which may clear set-id bits
    os.utime(path, ns=times_ns)


_APPLY: dict[str, Callable[[PlannedStep, Record, Act], None]] = {
    "trash": trash_step, "hardlink": _hardlink_step, "reflink": _reflink_step,
    "move": move_step}
_DONE = {"trash": "trashed", "move": "moved",
         "hardlink": "hard-linked to its keeper (one file now: edit one, both change)",
         "reflink": "reflinked to its keeper (a separate file sharing its storage)"}


# -- undoing ---------------------------------------------------------------------------

def undo(log_dir: Path, log_file: Path | None = None) -> UndoResult:
    """Reverse the done steps of ``log_file`` (default: the newest log with something left to
    undo), last step first. Restores only the bytes the log recorded (checked by hash) and
    never overwrites a file: a step that cannot be undone is reported with its reason and
    stays pending, so undo can be run again once it is fixed. Undoing an undone log does
    nothing. Raises ActionError if the log cannot be read or written, or is in use.
    """
    log_file = log_file or latest_undoable(Path(log_dir))
    if log_file is None:
        return UndoResult(None, complete=True, message=f"nothing to undo in {log_dir}")
    result = UndoResult(Path(log_file))
    if not _to_undo(read_log(Path(log_file))):
        result.complete, result.message = True, f"already undone; nothing to do ({log_file})"
        return result
    with open_log(Path(log_file)) as writer:
        log, pending = writer.log, _to_undo(writer.log)
        for index, record in pending:
            def intent(_i: int = index, _r: Record = record, **what: Any) -> None:
                writer.intent(_i, _r, op="undo", **what)

            _undo_step(record, result, log["version"], intent)
            writer.step(index, record)
        log["undone"] = result.complete = all(r["undone"] for r in log["steps"] if r["done"])
    result.message = f"undid {result.undone} of {len(pending)} steps" + (
        "" if result.complete else f"; {result.failed} could not be undone (see messages)")
    return result


def _to_undo(log: Record) -> list[tuple[int, Record]]:
    return [(i, r) for i, r in reversed(list(enumerate(log["steps"])))
            if r["done"] and not r["undone"]]


def _undo_step(record: Record, result: UndoResult, version: int, intent: Intent) -> None:
    try:
        problem = _UNDO[record["action"]](record, version, intent)
    except Changed as change:
        problem = str(change)
    except ActionError:
        raise
    except Exception as error:  # reported per file; the other steps still get undone
        problem = describe(error)
    record["undo_error"] = problem
    if problem:
        result.failed += 1
        result.messages.append(f"not undone: {printable(record['path'])}: {problem}")
    else:
        record["undone"] = True
        result.undone += 1
        result.messages.append(f"restored: {printable(record['path'])}")


def _undo_replacement(record: Record, version: int, intent: Intent) -> str | None:
    """Replace the hard link (or reflink) by an independent copy with the original mode,
    owner and mtime, if it still holds the bytes the log recorded."""
    here = os.lstat(record["path"])
    linked = (here.st_dev, here.st_ino) == _inode(record["keep"])
    reflinked = record.get("method") == "reflink"
    if not linked and not reflinked:
        return "no longer a hard link to the keeper; left as it is"
    tmp = tmp_name(record["path"])
    intent(tmp=tmp, inode=[here.st_dev, here.st_ino])
    try:
        digest = copy_bytes(record["path"], tmp)
        if record["hash"] and digest != record["hash"]:
            unlink_quietly(tmp)
            return _EDITED_LINK if linked else _EDITED_CLONE
        _give_attributes(tmp, record["mode"], record["uid"], record["gid"],
                         (here.st_atime_ns, record["mtime_ns"]))
        if identity(os.lstat(record["path"])) != identity(here):
            raise Changed("changed while being restored; left as it is")
        os.replace(tmp, record["path"])
    except BaseException:
        unlink_quietly(tmp)
        raise
    return None


def _inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


_EDITED_LINK = ("its bytes are no longer those the log recorded: it is one file with the "
                "keeper (a hard link), so an edit of either changed both, and the original "
                "bytes exist nowhere else; left as it is")
_EDITED_CLONE = ("edited since it was reflinked (its bytes are no longer those the log "
                 "recorded); left as it is")
_UNDO: dict[str, Callable[[Record, int, Intent], str | None]] = {
    "trash": undo_relocation, "move": undo_relocation, "hardlink": _undo_replacement,
    "reflink": _undo_replacement}
