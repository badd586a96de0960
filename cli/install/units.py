"""The systemd user units that keep the daemon running, as ``service install`` writes
them.

The unit files in the repo's ``systemd/`` folder are templates: their ``ExecStart=``
lines get ``@FINDSIMILAR@`` replaced by the absolute command of the running findsimilar,
quoted for systemd, and :mod:`.installer` adds the marker line. Stdlib only.
"""

from __future__ import annotations

from pathlib import Path

from findsimilar.cli.install.installer import PLACEHOLDER, InstalledFile, daemon_command
from findsimilar.config import config_home

__all__ = ["UNITS", "UnitTemplateMissing", "render_units", "unit_dir",
           "unit_files"]

UNITS = ("findsimilar.service", "findsimilar.socket")


class UnitTemplateMissing(Exception):
    """The unit templates are not where this findsimilar expects them (a broken install)."""


def _templates() -> Path:
    """The unit templates: the repo's systemd/ folder (editable installs), else the copy
    packaged as ``findsimilar.systemd_units``."""
    repo = Path(__file__).resolve().parents[2] / "systemd"
    if (repo / UNITS[0]).exists():
        return repo
    import importlib.resources

    return Path(str(importlib.resources.files("findsimilar.systemd_units")))


_TEMPLATES = _templates()


def unit_dir() -> Path:
    """Returns the user unit folder: ``$XDG_CONFIG_HOME/systemd/user`` (``~/.config/...``)."""
    return config_home() / "systemd" / "user"


def _quote(word: str, *, is_path: bool = False) -> str:
    """One word for a unit's ExecStart=: specifiers, variables and quotes escaped.

    systemd expands ``$VAR`` in arguments but not in the executable path, so only
    arguments get ``$`` doubled (``systemd-analyze verify`` confirms this).
    """
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if not is_path:
        escaped = escaped.replace("$", "$$")
    if word and not any(c.isspace() or c in "'\";" for c in word):
        return escaped
    return f'"{escaped}"'


def unit_files(command: list[str] | None = None,
               folder: Path | None = None) -> list[InstalledFile]:
    """The units to install in ``folder`` (default: :func:`unit_dir`), running
    ``command`` (default: this findsimilar). Raises UnitTemplateMissing."""
    path, *args = command or daemon_command()
    exec_start = " ".join([_quote(path, is_path=True), *map(_quote, args)])
    folder = folder or unit_dir()
    files = []
    for name in UNITS:
        try:
            template = (_TEMPLATES / name).read_text(encoding="utf-8")
        except OSError as exc:
            raise UnitTemplateMissing(f"unit template missing: {exc}") from None
        # Only ExecStart= lines: the template's comments mention the placeholder too.
        lines = [line.replace(PLACEHOLDER, exec_start) if line.startswith("ExecStart=")
                 else line for line in template.splitlines(keepends=True)]
        files.append(InstalledFile(folder / name, "".join(lines), "service install",
                                   "service uninstall"))
    return files


def render_units(command: list[str] | None = None) -> dict[str, str]:
    """Returns each unit's file name mapped to the text ``install`` writes (marker line
    included). Raises UnitTemplateMissing."""
    return {f.dest.name: f.text for f in unit_files(command)}
