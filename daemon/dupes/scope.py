"""Which indexed files a duplicate listing looks at: those under the PATHs asked for, less
the ones ``--exclude`` globs match; and which PATHs hold no indexed file at all (the
command line warns about them rather than saying only "no duplicates").

A GLOB (``fnmatch``: ``*``, ``?``, ``[...]``, case-sensitive) leaves a file out if it
matches the file's name, the name of any folder in its path (as ``watch add --exclude``
matches folder names), or its whole absolute path, where ``*`` also matches ``/``:
``'*.png'``, ``'exports*'``, ``'*/backup/2019/*'``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

__all__ = ["excluder", "files_in_scope"]

Row = TypeVar("Row")


def excluder(globs: Sequence[str]) -> Callable[[str], bool] | None:
    """A test of a path against ``globs`` (see the module's rule), or None without any."""
    if not globs:
        return None
    match = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)).match

    def excluded(path: str) -> bool:
        return bool(match(path)) or any(match(part) for part in path.split("/") if part)

    return excluded


def files_in_scope(ok_files: Callable[[list[str]], Iterable[dict[str, Any]]],
                   paths: Sequence[str], exclude: Sequence[str],
                   row: Callable[[dict[str, Any]], Row]) -> tuple[list[Row], list[str]]:
    """(the files to group, as ``row(...)`` of each indexed file with a content hash under
    ``paths`` — all of them if none — each once and none that ``exclude`` matches; the
    ``paths`` under which nothing is indexed). ``ok_files(roots)`` is the store's."""
    excluded = excluder(exclude)
    rows: list[Row] = []
    not_indexed = []
    for root in paths or [None]:
        found = False
        for r in ok_files([root] if root else []):
            if not r["content_hash"]:
                continue
            found = True
            if excluded is None or not excluded(r["path"]):
                rows.append(row(r))
        if root is not None and not found:
            not_indexed.append(root)
    if len(paths) >= 2:  # nested roots: each file once
        rows = list({r["path"]: r for r in rows}.values())  # type: ignore[index]
    return rows, not_indexed
