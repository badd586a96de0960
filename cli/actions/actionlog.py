"""The JSON log of an applied action, journaled ahead of every change (stdlib only).

``NAME.json`` lists every step. While a run (or an undo) works, ``NAME.journal`` beside it
gets two fsynced lines per step: the *intent* before anything on disk changes (where the
file is about to go, the .trashinfo about to be reserved, the temp name about to be
written), then the step's outcome. A run stopped anywhere (SIGKILL, a full disk, a power
cut) therefore leaves either an outcome, or an intent that :mod:`.recovery` settles by
looking at the disk. The journal is locked (flock) while its
run works, so a reader never "recovers" a step that is still going on.

Version 1 logs (no intents; a relocated file's hash may be the listing's, unverified) are
still read and undone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from findsimilar.atomic import write_atomic
from findsimilar.cli.actions.recovery import settle
from findsimilar.errors import FindSimilarError
from findsimilar.safeio import read_regular

__all__ = ["LOG_VERSION", "ActionError", "LogWriter", "Record", "describe", "latest_undoable",
           "list_logs", "new_log_path", "open_log", "read_log"]

LOG_VERSION = 2
_READABLE = (1, 2)
_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC
# A log holds about 1 KB a step: this is a million steps and more.
_LOG_LIMIT = 1 << 30

Record = dict[str, Any]


class ActionError(FindSimilarError):
    """A run cannot go ahead: bad options, or an action log that cannot be read or written
    (the command line reports it and exits with 1)."""


class _InUse(Exception):
    """Another process holds the log's journal: its run or undo is still going on."""


def describe(error: BaseException) -> str:
    """An error in words, naming the file it is about."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.strerror}: {error.filename}" if error.filename else error.strerror
    return f"{type(error).__name__}: {error}"


class LogWriter:
    """Journals the steps of one locked log, O(1) per step (rewriting the whole JSON after
    each step would cost O(n^2): minutes for 10 000 files).

    An intent is fsynced before its step acts; an outcome is only written (a killed
    process cannot lose it) and reaches the disk with the next intent's fsync or the
    final JSON: one fsync per step, not two (about 4 ms each on the test machine's ext4).
    After a power cut that loses an outcome, its intent is there and is settled.
    """

    def __init__(self, path: Path, log: Record, fd: int) -> None:
        self.path, self.log, self._fd = path, log, fd

    def intent(self, index: int, record: Record, **pending: Any) -> None:
        """Journal what step ``index`` is about to do (``op``, ``tmp``, ...), before it
        does it; raises ActionError if that cannot be written, and then nothing is done."""
        record["pending"] = pending
        self._append(index, record, sync=True)

    def step(self, index: int, record: Record) -> None:
        """Journal the outcome of step ``index``."""
        record["pending"] = None
        self._append(index, record, sync=False)

    def _append(self, index: int, record: Record, *, sync: bool) -> None:
        line = json.dumps({"index": index, "record": record}) + "\n"
        try:
            _write_all(self._fd, line.encode("ascii"))
            if sync:
                os.fsync(self._fd)
        except OSError as error:
            raise ActionError(f"cannot write the action log {self.path.with_suffix('.journal')}"
                              f": {describe(error)}; stopped so that every change made stays "
                              "undoable") from error


@contextlib.contextmanager
def open_log(path: Path, log: Record | None = None) -> Iterator[LogWriter]:
    """Lock the log at ``path`` and yield its writer. With ``log``, a new log is written
    first; without, the existing one is read (interrupted steps settled). The JSON is
    rewritten on exit, also after an error, keeping what was done. Raises ActionError if
    the log is in use by another process or cannot be read or written."""
    journal = path.with_suffix(".journal")
    fd = _lock_existing(path, journal) if log is None else _new(path, log, journal)
    try:
        if log is None:
            log = _read_json(path)
            _fold(log, _read_fd(fd))
            _settle_all(log)
            write_log(path, log)
            os.ftruncate(fd, 0)  # the JSON holds everything now
        yield from _run(path, log, fd, journal)
    finally:
        os.close(fd)


def _new(path: Path, log: Record, journal: Path) -> int:
    """Write a new log, then create and lock its journal; nothing is left if that fails."""
    write_log(path, log)
    try:
        fd = _lock(journal, create=True)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    assert fd is not None
    return fd


def _lock_existing(path: Path, journal: Path) -> int:
    try:
        fd = _lock(journal, create=True)
    except _InUse:
        raise ActionError(f"the action log {path} is in use by another findsimilar "
                          "process; try again when it has finished") from None
    assert fd is not None
    return fd


def _run(path: Path, log: Record, fd: int, journal: Path) -> Iterator[LogWriter]:
    try:
        yield LogWriter(path, log, fd)
    except BaseException:
        with contextlib.suppress(ActionError):  # keep what was done; if even that fails,
            write_log(path, log)                # the journal stays and is read next time
            journal.unlink(missing_ok=True)
        raise
    write_log(path, log)
    journal.unlink(missing_ok=True)


def read_log(path: Path) -> Record:
    """The log at ``path`` with its journal folded in and interrupted steps settled from
    the disk; what was settled is saved (the JSON rewritten, the journal removed), so it
    happens once. A log whose run is still going on is returned unsettled with
    ``in_progress`` True. Raises ActionError if it cannot be read or is not a findsimilar
    action log."""
    log = _read_json(path)
    journal = path.with_suffix(".journal")
    try:
        fd = _lock(journal, create=False)
        if fd is None and any(r.get("pending") for r in log["steps"]):
            with contextlib.suppress(ActionError):  # a read-only folder: settle unsaved
                fd = _lock(journal, create=True)
    except _InUse:
        with contextlib.suppress(OSError):
            _fold(log, journal.read_text(encoding="ascii", errors="replace"))
        log["in_progress"] = True
        return log
    if fd is None:
        _settle_all(log)
        return log
    try:
        _fold(log, _read_fd(fd))
        _settle_all(log)
        with contextlib.suppress(ActionError):  # unsaved, it is settled again next time
            write_log(path, log)
            journal.unlink(missing_ok=True)
        return log
    finally:
        os.close(fd)


def _settle_all(log: Record) -> None:
    for record in log["steps"]:
        if record.get("pending"):
            settle(record)


def _lock(journal: Path, *, create: bool) -> int | None:
    """An open, exclusively locked descriptor of ``journal`` (None if it does not exist and
    ``create`` is false). Raises _InUse if another process holds it, ActionError if it
    cannot be created."""
    try:
        fd = os.open(journal, _FLAGS | (os.O_CREAT if create else 0), 0o600)
    except FileNotFoundError:
        if create:
            raise ActionError(f"cannot create the action log {journal}: no such folder") \
                from None
        return None
    except OSError as error:
        if create:
            raise ActionError(f"cannot write the action log {journal}: {describe(error)}; "
                              "nothing was done") from error
        try:  # a read-only folder: read it as it is
            fd = os.open(journal, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as again:
            raise ActionError(f"cannot read the action log {journal}: {describe(again)}") \
                from again
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _InUse from None
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_fd(fd: int) -> str:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("ascii", "replace")


def _fold(log: Record, journal: str) -> None:
    """Apply the journal's lines to ``log``; the last line about a step wins. A torn line
    (the run stopped while writing it) is ignored."""
    steps = log["steps"]
    for line in journal.splitlines():
        with contextlib.suppress(ValueError, LookupError, TypeError):
            entry = json.loads(line)
            index, record = entry["index"], entry["record"]
            if isinstance(record, dict) and isinstance(index, int) and 0 <= index < len(steps):
                steps[index] = record


def new_log_path(log_dir: Path) -> Path:
    """A fresh log name in ``log_dir`` (created, private). Raises ActionError."""
    try:
        log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise ActionError(f"cannot create the action log folder {log_dir}: {error}; "
                          "nothing was done") from error
    stamp = time.strftime("%Y-%m-%dT%H-%M-%S")
    return log_dir / f"{stamp}-{secrets.token_hex(3)}.json"


def write_log(path: Path, log: Record) -> None:
    """Atomically replace the log (temp, fsync, rename), so a crash leaves the last version.
    Raises ActionError (and leaves no temp file) if it cannot be written."""
    # ASCII-escaped JSON: any file name survives, even bad UTF-8.
    data = json.dumps(log, indent=1).encode("ascii")
    try:
        write_atomic(path, data, mode=0o600)
    except OSError as error:
        raise ActionError(f"cannot write the action log {path}: {describe(error)}; stopped "
                          "so that every change made stays undoable") from error


def _read_json(path: Path) -> Record:
    try:
        # Read as any path a user names: a FIFO or /dev/zero given as LOG must not hang.
        log = json.loads(read_regular(path, _LOG_LIMIT).decode("utf-8"))
    except (OSError, ValueError) as error:
        raise ActionError(f"cannot read the action log {path}: {error}") from error
    if not isinstance(log, dict) or log.get("version") not in _READABLE:
        raise ActionError(f"{path} is not a findsimilar action log (version "
                          f"{' or '.join(map(str, _READABLE))})")
    return log


def list_logs(log_dir: Path) -> list[dict]:
    """Summaries of the action logs in ``log_dir``, newest first; an unreadable one is listed
    with an ``error``. ``to_undo`` counts done steps not yet undone; ``in_progress`` is
    True while a run or an undo of it is going on."""
    summaries: list[dict[str, Any]] = []
    for path in Path(log_dir).glob("*.json"):
        try:
            log = read_log(path)
        except ActionError as error:
            summaries.append({"path": str(path), "created": "", "error": str(error)})
            continue
        steps = log["steps"]
        summaries.append({
            "path": str(path), "created": log["created"], "action": log["action"],
            "steps": len(steps), "done": sum(s["done"] for s in steps),
            "skipped": sum(bool(s["skip"]) for s in steps),
            "failed": sum(bool(s["error"]) for s in steps), "undone": log["undone"],
            "to_undo": sum(s["done"] and not s["undone"] for s in steps),
            "in_progress": bool(log.get("in_progress"))})
    # ISO times in UTC sort as text; the random suffix breaks same-second ties stably.
    return sorted(summaries, key=lambda s: (s["created"], s["path"]), reverse=True)


def latest_undoable(log_dir: Path) -> Path | None:
    """The newest log with something left to undo, or None."""
    for summary in list_logs(log_dir):
        if summary.get("to_undo"):
            return Path(summary["path"])
    return None
