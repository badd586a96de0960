"""Trash and move: a file goes somewhere else, its sidecars with it, and comes back on undo.

A trashed or moved photo takes along the sidecars its step lists (:mod:`findsimilar.sidecars`,
planned by :func:`.plan.attach_sidecars`): the photo goes first, then each sidecar, each
its own journaled log step checked like any file (hashed, then the very inode renamed), so
undo brings each back by the same rules. It is all or nothing: if a sidecar cannot go, the
sidecars that went and the photo are put back and the photo's step fails with the reason,
so no photo is parted from its sidecars. A shared ``NAME.xmp`` stays when another
``NAME.*`` file is still in the folder at that moment. Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, replace

from findsimilar.cli.actions.actionlog import LOG_VERSION, ActionError, Record, describe
from findsimilar.cli.actions.facts import Changed, FactChecker, Facts, listed_problem
from findsimilar.cli.actions.plan import PlannedStep, file_names
from findsimilar.cli.actions.safefs import move_file, numbered, tmp_name, unlink_quietly
from findsimilar.cli.actions.trash import send_to_trash
from findsimilar.sidecars import extends, sidecar_target, stem_holders
from findsimilar.text import printable

__all__ = ["Act", "Intent", "Journaled", "carry_sidecars", "move_step", "sidecar_record",
           "trash_step", "undo_relocation"]

Intent = Callable[..., None]


@dataclass(frozen=True)
class Act:
    """What a step acts on, as verified: the file, its keeper, and the journal's intent."""

    here: Facts
    keeper: Facts
    intent: Intent

    def check(self) -> None:
        self.here.check()
        self.keeper.check()


@dataclass(frozen=True)
class Journaled:
    """A log step with its journal: the intent of doing it, and of putting it back."""

    record: Record
    intent: Intent
    undo_intent: Intent


def trash_step(step: PlannedStep, record: Record, act: Act) -> None:
    def announce(target: str, info: str) -> None:
        record["target"], record["trash_info"] = target, info
        act.intent()

    send_to_trash(step.path, announce=announce, check=act.check, same_inode=act.here.inode)


def move_step(step: PlannedStep, record: Record, act: Act) -> None:
    wanted = step.target or ""
    os.makedirs(os.path.dirname(wanted), exist_ok=True)
    for dest in numbered(wanted):
        if os.path.lexists(dest):
            continue
        record["target"], tmp = dest, tmp_name(dest)  # tmp: only across filesystems
        act.intent(tmp=tmp)
        with contextlib.suppress(FileExistsError):
            move_file(step.path, dest, tmp=tmp, check=act.check, expected_hash=act.here.hash,
                      same_inode=act.here.inode)
            return


_RELOCATE = {"trash": trash_step, "move": move_step}


def undo_relocation(record: Record, version: int, intent: Intent) -> str | None:
    """Bring a trashed or moved file back to where it was, if it holds the bytes the log
    recorded and that place is still free."""
    where = record["target"]
    problem = listed_problem(where, record["size"], record["mtime_ns"])
    if problem:
        return f"the file at {printable(where)} {problem}"
    facts = FactChecker().now(where)
    # Version 1 logs recorded the listing's hash, which a stale store may have got wrong.
    if version >= 2 and facts.hash != record["hash"]:
        return (f"the file at {printable(where)} is not the one put there (its bytes differ "
                "from those the log recorded); left as it is")
    if os.path.lexists(record["path"]):
        return "a file now exists at the original path; not overwriting it"
    os.makedirs(os.path.dirname(record["path"]), exist_ok=True)
    tmp = tmp_name(record["path"])
    intent(tmp=tmp)
    move_file(where, record["path"], tmp=tmp, check=facts.check, expected_hash=facts.hash,
              same_inode=facts.inode)
    if record.get("trash_info"):
        unlink_quietly(record["trash_info"])
    return None


# -- sidecars ----------------------------------------------------------------------------

def sidecar_record(photo: Record, path: str) -> Record:
    """The log step of the sidecar at ``path`` of the photo step ``photo``; its facts are
    filled in when it goes. ``shared``: a ``NAME.xmp`` of every file ``NAME.*``."""
    shared = not extends(os.path.basename(path), os.path.basename(photo["path"]))
    return {**photo, "path": path, "target": None, "size": 0, "mtime_ns": 0, "hash": "",
            "sidecar_of": photo["path"], "shared": shared}


def carry_sidecars(step: PlannedStep, photo: Journaled, sidecars: list[Journaled],
                   checker: FactChecker) -> None:
    """Take ``step``'s sidecars where its photo (done) went, each checked and journaled.
    If one cannot go, put the others and the photo back and fail the photo's step with
    the reason. Raises ActionError only if the journal cannot be written."""
    moved: list[Journaled] = []
    for side in sidecars:
        try:
            side.record["skip"] = _carry(step, photo.record, side, checker)
        except ActionError:
            raise
        except Exception as error:  # Changed, or an OSError naming the file
            side.record["error"] = str(error) if isinstance(error, Changed) else describe(error)
            _put_back(photo, moved, side.record)
            return
        if side.record["done"]:
            moved.append(side)


def _carry(step: PlannedStep, photo: Record, side: Journaled, checker: FactChecker,
           ) -> str | None:
    """Move one sidecar, or say why it stays (shared and still needed, or gone)."""
    record, path = side.record, side.record["path"]
    if record["shared"] and (holder := _still_holding(path, step.path)):
        return f"stays with {printable(holder)}, which shares its name and stays"
    if not os.path.lexists(path):
        return "no longer there"
    facts = checker.now(path)
    st = facts.stat
    record.update(hash=facts.hash, size=st.st_size, mtime_ns=st.st_mtime_ns,
                  mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid)
    target = sidecar_target(step.path, photo["target"], path) if step.action == "move" else None
    _RELOCATE[step.action](replace(step, path=path, target=target), record,
                           Act(facts, facts, side.intent))
    record["done"] = True
    return None


def _still_holding(sidecar: str, gone: str) -> str | None:
    """Another file ``NAME.*`` beside the shared sidecar ``NAME.xmp`` now, if any."""
    folder = os.path.dirname(sidecar)
    holders = stem_holders(os.path.basename(sidecar), file_names(folder))
    return next((os.path.join(folder, h) for h in holders
                 if os.path.join(folder, h) != gone), None)


def _put_back(photo: Journaled, moved: list[Journaled], failed: Record) -> None:
    """Undo the photo and the sidecars that went with it; say so in the photo's step."""
    stuck = [p for p in (*(_restore(s) for s in reversed(moved)), _restore(photo)) if p]
    for side in moved:
        if not side.record["done"]:
            side.record["skip"] = "put back with its photo"
    why = f"its sidecar {printable(failed['path'])} cannot go with it ({failed['error']})"
    photo.record["error"] = (f"{why}; put back with its sidecars, as it was" if not stuck else
                             f"{why}, and putting it back failed ({'; '.join(stuck)}): "
                             "`findsimilar dupes undo` brings back what went")


def _restore(item: Journaled) -> str | None:
    """Put a file that went back where it was; the reason it cannot be, or None."""
    try:
        problem = undo_relocation(item.record, LOG_VERSION, item.undo_intent)
    except ActionError:
        raise
    except Exception as error:
        problem = str(error) if isinstance(error, Changed) else describe(error)
    if problem is None:
        item.record.update(done=False, trash_info=None)
        return None
    item.record["undo_error"] = problem
    return f"{printable(item.record['path'])}: {problem}"
