"""Typed exceptions shared by the engine and the command line.

The library raises these; only the CLI turns them into messages and exit codes.
"""

from __future__ import annotations

__all__ = [
    "EXIT_EMPTY_INDEX",
    "EXIT_MISSING_FILE",
    "EXIT_UNREADABLE_IMAGE",
    "EXIT_USAGE",
    "EmptyIndexError",
    "FindSimilarError",
    "ImageDecodeError",
    "MissingFileError",
    "StoreError",
]

# Exit codes (documented in the README; scripts may rely on them).
EXIT_USAGE = 2
EXIT_MISSING_FILE = 3
EXIT_UNREADABLE_IMAGE = 4
EXIT_EMPTY_INDEX = 5
EXIT_STORE = 6


class FindSimilarError(Exception):
    """Base class; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class MissingFileError(FindSimilarError):
    exit_code = EXIT_MISSING_FILE


class ImageDecodeError(FindSimilarError):
    """A file could not be turned into pixels; the message is the reason."""

    exit_code = EXIT_UNREADABLE_IMAGE


class EmptyIndexError(FindSimilarError):
    exit_code = EXIT_EMPTY_INDEX


class StoreError(FindSimilarError):
    exit_code = EXIT_STORE
