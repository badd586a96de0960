"""One installer for the files findsimilar writes from its templates: the systemd units
(``service install``) and the file-manager and image-app integrations (``integrate
install``).

Every installed file carries one marker line, first (after a ``#!`` line)::

    # Installed by findsimilar (`findsimilar service install`, checksum 1a2b3c4d); ...

It tells our files from the user's: a file without it is never overwritten (unless the
command is forced) nor removed. The checksum is that of the rest of the file, so an edit
made since shows ("modified"); a file that this findsimilar would now write differently
(a newer template, or findsimilar moved) is "outdated". Stdlib only: a light command.
"""

from __future__ import annotations

import os
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from findsimilar.atomic import write_atomic

__all__ = ["MARKER", "PLACEHOLDER", "FileState", "InstalledFile", "daemon_command", "file_state",
           "foreign_files", "write_file"]

MARKER = "Installed by findsimilar"
PLACEHOLDER = "@FINDSIMILAR@"  # in every template: where the command that runs findsimilar goes
FileState = Literal["missing", "foreign", "modified", "outdated", "installed"]
_MARKER_RE = re.compile(r"^(#|--|\.\\\") Installed by findsimilar .*checksum ([0-9a-f]{8})\)")
# Unit files written before there was one marker scheme had a line without a checksum:
# still ours (install replaces them, uninstall removes them), and outdated.
_LEGACY_RE = re.compile(r"^# Installed by findsimilar \(`findsimilar service install`\)")
_LEGACY = "legacy"


@dataclass(frozen=True)
class InstalledFile:
    """One file an installer writes: where, what (the rendered template, without the
    marker), and the commands that install and remove it (named in the marker)."""

    dest: Path
    body: str
    installed_by: str  # e.g. "service install", "integrate install nemo"
    removed_by: str
    comment: str = "#"  # how the file's language starts a comment line
    mode: int = 0o644

    @property
    def text(self) -> str:
        """The whole file as written: the body with the marker line first (after a
        ``#!`` line)."""
        line = (f"{self.comment} {MARKER} (`findsimilar {self.installed_by}`, checksum "
                f"{_checksum(self.body)}); `findsimilar {self.removed_by}` removes it.\n")
        if self.body.startswith("#!"):
            first, _, rest = self.body.partition("\n")
            return f"{first}\n{line}{rest}"
        return line + self.body


def daemon_command() -> list[str]:
    """Returns the absolute command that runs this findsimilar (without ``daemon run``),
    for the units and menus to run.

    The ``findsimilar`` script this process was started as; else the one installed
    next to this Python (same venv); else ``python -m findsimilar`` with this Python.
    Symlinks are kept, not resolved, so a pipx upgrade does not break the unit.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "findsimilar" and os.path.isfile(argv0):
        return [os.path.abspath(argv0)]
    sibling = Path(sys.executable).absolute().parent / "findsimilar"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return [str(sibling)]
    return [str(Path(sys.executable).absolute()), "-m", "findsimilar"]


def file_state(path: Path, expected: str | None) -> FileState:
    """Returns "missing", "foreign" (no marker: not ours, or unreadable), "modified"
    (ours, edited since), "outdated" (ours, but ``expected``, the body this findsimilar
    would write, differs) or "installed" (also when ``expected`` is None)."""
    if not path.exists() and not path.is_symlink():
        return "missing"
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return "foreign"
    checksum, body = _split_marker(text)
    if checksum is None:
        return "foreign"
    if checksum == _LEGACY:
        return "outdated"
    if checksum != _checksum(body):
        return "modified"
    return "installed" if expected is None or body == expected else "outdated"


def foreign_files(files: list[InstalledFile]) -> list[Path]:
    """The destinations among ``files`` that hold something findsimilar did not write."""
    return [f.dest for f in files if file_state(f.dest, None) == "foreign"]


def write_file(file: InstalledFile) -> None:
    """Writes ``file`` (its folders made as needed), atomically. Raises OSError."""
    file.dest.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(file.dest, file.text.encode("utf-8", "surrogateescape"), mode=file.mode)


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode('utf-8', 'surrogateescape')):08x}"


def _split_marker(text: str) -> tuple[str | None, str]:
    """Returns (the marker's checksum, or "legacy", or None without a marker; the text
    without the marker line(s))."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines[:2]):
        match = _MARKER_RE.match(line)
        if match:
            return match.group(2), "".join(lines[:i] + lines[i + 1:])
    if any(_LEGACY_RE.match(line) for line in lines):
        return _LEGACY, text
    return None, text
