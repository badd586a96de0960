"""Typed exceptions shared by the engine and the command line.

The library raises these; only the CLI turns them into messages and exit codes (in one
place, findsimilar/cli/failure.py), from the one table of exit codes below.
"""

from __future__ import annotations

import os

__all__ = [
    "Cancelled",
    "ERROR_PREFIX",
    "EXIT_CODES",
    "EXIT_DATA_DIR",
    "EXIT_DAEMON_RUNNING",
    "EXIT_EMPTY_INDEX",
    "EXIT_FAILURE",
    "EXIT_MISSING_FILE",
    "EXIT_NO_DAEMON",
    "EXIT_OK",
    "EXIT_STORE",
    "EXIT_UNREADABLE_IMAGE",
    "EXIT_USAGE",
    "EmptyIndexError",
    "FileAccessError",
    "FindSimilarError",
    "DataDirError",
    "ImageDecodeError",
    "MissingFileError",
    "NotRegularFileError",
    "StoreError",
    "UsageError",
    "damaged_store",
    "error_data",
    "store_damage",
]

# Exit codes: scripts rely on them. EXIT_CODES is the README's "Exit codes" table, word
# for word (tests/unit/test_errors.py compares the two).
# How every error line starts (`start_daemon` also finds a daemon's last words in its
# log by it).
ERROR_PREFIX = "findsimilar: error: "

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_MISSING_FILE = 3
EXIT_UNREADABLE_IMAGE = 4
EXIT_EMPTY_INDEX = 5
EXIT_STORE = 6
EXIT_DAEMON_RUNNING = 7
EXIT_NO_DAEMON = 8
EXIT_DATA_DIR = 9
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (for `index`: even when some files could not be read — see the summary)",
    EXIT_FAILURE: "any other failure: the message on stderr says what",
    EXIT_USAGE: "bad usage (click)",
    EXIT_MISSING_FILE: "a file or folder does not exist, or a query (or a path given to "
                       "`index`) is not a regular file (a FIFO, a device, a socket; a query "
                       "that is a folder)",
    EXIT_UNREADABLE_IMAGE: "the query is not a readable image: not an image, damaged, or not "
                           "readable (the reason is printed)",
    EXIT_EMPTY_INDEX: "the index is empty: run `findsimilar index FOLDER` first",
    EXIT_STORE: "the store cannot be opened (damaged file: the message says what to do)",
    EXIT_DAEMON_RUNNING: "a daemon already serves this data dir (`daemon run`)",
    EXIT_NO_DAEMON: "no daemon answers (`daemon status`), or it could not be started",
    EXIT_DATA_DIR: "the data dir cannot be written (its permissions, or a disk mounted "
                   "read-only): the message names it",
}


class FindSimilarError(Exception):
    """Base class; ``exit_code`` (one of ``EXIT_CODES``) is what the CLI exits with."""

    exit_code = EXIT_FAILURE


class MissingFileError(FindSimilarError):
    exit_code = EXIT_MISSING_FILE


class ImageDecodeError(FindSimilarError):
    """A file could not be turned into pixels; the message is the reason."""

    exit_code = EXIT_UNREADABLE_IMAGE


class NotRegularFileError(MissingFileError):
    """The path names a FIFO, a device, a socket or a folder: nothing to read as a photo."""


class FileAccessError(ImageDecodeError):
    """The file is there but this process may not open or read it (permissions): a client
    that can read it may send its bytes instead."""


class Cancelled(FindSimilarError):
    """The client that asked hung up, so its work was stopped."""


class UsageError(FindSimilarError, ValueError):
    """An argument a caller of the Python API gave is not one findsimilar takes (the
    command line's click says so itself, with the same exit code)."""

    exit_code = EXIT_USAGE


class EmptyIndexError(FindSimilarError):
    exit_code = EXIT_EMPTY_INDEX


class StoreError(FindSimilarError):
    exit_code = EXIT_STORE


class DataDirError(StoreError):
    """The data dir (the store, the index, the daemon's files) cannot be written; the
    store itself is fine."""

    exit_code = EXIT_DATA_DIR


def damaged_store(path: object, detail: str) -> StoreError:
    """The error for a store SQLite reports as damaged: what happened, and the steps to
    recover. findsimilar never deletes or rewrites the file itself; the user decides."""
    import shlex  # only on this path: the thin client imports this module

    store = shlex.quote(str(path))
    aside = shlex.quote(os.path.join(os.path.dirname(str(path)), "damaged"))
    return StoreError(
        f"the store {path} is damaged ({detail}); it has been left as it is.\n"
        "To recover, with no findsimilar daemon running:\n"
        f"  1. move the damaged files aside: mkdir {aside} && mv {store}* {aside}/\n"
        "  2. salvage what SQLite can still read (watched folders, computed features) with "
        "the sqlite3 program; the sed keeps the rows read around a damaged spot:\n"
        f"     sqlite3 {aside}/{os.path.basename(str(path))} .dump | "
        "sed 's/^ROLLBACK; -- due to errors$/COMMIT;/' | "
        f"sqlite3 {store}\n"
        "  3. start findsimilar again (`findsimilar daemon start`, or the systemd service); "
        "it checks the index and the folders against the salvaged store.\n"
        "If step 2 fails, skip it: a new, empty store is made; watch your folders again "
        "(`findsimilar watch add FOLDER`) or run `findsimilar index FOLDER`, and every photo "
        "is read again.")


# SQLite's primary result codes for a file that is not, or no longer, a sound database.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def store_damage(path: object, exc: BaseException) -> StoreError | None:
    """:func:`damaged_store` for ``exc`` if it is SQLite saying the file at ``path`` is
    damaged; None for any other error (sqlite3 is not imported: the CLI stays light)."""
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc)
    if code is None and type(exc).__module__ != "sqlite3":
        return None
    if (code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)) \
            or "malformed" in text or "not a database" in text:
        return damaged_store(path, text)
    return None


def error_data(exc: FindSimilarError) -> dict[str, object]:
    """An error as it travels as data (a socket reply, a search's error entry): its type,
    which is what a program decides on (e.g. whether to retry a search with the file's
    bytes), its message for people, and the exit code the command line ends with."""
    return {"type": type(exc).__name__, "message": str(exc), "exit_code": exc.exit_code}
