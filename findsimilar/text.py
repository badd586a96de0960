"""Small helpers on paths and sizes shared by the daemon and the thin client (stdlib only)."""

from __future__ import annotations

__all__ = ["human_size", "is_under", "printable"]


def human_size(n: int | float | None) -> str:
    """Bytes in decimal units, as file managers show them: ``1.5 MB``; ``?`` if unknown."""
    if n is None:
        return "?"
    if n < 1000:
        return f"{int(n)} B"
    value = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 999.95 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def printable(path: str) -> str:
    """``path`` as is, or quoted if a newline or control character would break a listing."""
    return path if path.isprintable() else repr(path)


def is_under(path: str, folder: str) -> bool:
    """True if ``path`` is ``folder`` itself or anything below it: plain strings, no I/O,
    so ``/a/bc`` is not under ``/a/b``."""
    folder = folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")
