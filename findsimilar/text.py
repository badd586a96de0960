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
    """``path`` as the shell would show it: as is, or, where a byte that is not UTF-8, a
    newline or another control character would break a listing, in the shell's ANSI-C
    quotes (``$'caf\\xe9.jpg'``; what GNU ``ls`` prints), which the shell reads back as the
    exact name."""
    if path.isprintable():
        return path
    return "$'" + "".join(_shell_char(c) for c in path) + "'"


_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}


def _shell_char(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (os.fsdecode)
        return f"\\x{code - 0xDC00:02x}"
    if c in _NAMED:
        return _NAMED[c]
    if c.isprintable():
        return c
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def is_under(path: str, folder: str) -> bool:
    """True if ``path`` is ``folder`` itself or anything below it: plain strings, no I/O,
    so ``/a/bc`` is not under ``/a/b``."""
    folder = folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")
