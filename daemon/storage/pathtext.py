"""Paths as the store's text: any name a Linux filesystem allows, kept exactly.

A Linux file name is bytes; Python gives a name that is not valid UTF-8 as a ``str``
holding lone surrogates (``os.fsdecode``: the byte 0xe9 becomes U+DCE9), which SQLite's
UTF-8 text cannot hold. So each such surrogate is stored as two characters: ``ESCAPE``
(U+10FDFF, in Supplementary Private Use Area-B) and ``U+10FD00 + (byte - 0x80)``; a real
``ESCAPE`` in a name is stored doubled. Every other character is itself, so a valid
UTF-8 name is stored unchanged (no migration), one character maps to the same text
wherever it is (a folder's stored text is a prefix of its files': the range scans of
``store._UNDER`` hold), and ``to_path(to_text(p)) == p`` for every ``p``.
"""

from __future__ import annotations

import re

__all__ = ["ESCAPE", "to_path", "to_text"]

ESCAPE = "\U0010fdff"
_BASE = 0x10FD00  # + (byte - 0x80): the stored form of a byte that is not UTF-8
_SURROGATE = re.compile("[\udc80-\udcff\U0010fdff]")
_STORED = re.compile("\U0010fdff(.)", re.DOTALL)


def to_text(path: str) -> str:
    """``path`` (as ``os.fsdecode`` gives it) as the store keeps it."""
    if not _SURROGATE.search(path):
        return path
    return _SURROGATE.sub(_escape, path)


def to_path(text: str) -> str:
    """The path a stored ``text`` stands for (``to_text`` undone)."""
    if ESCAPE not in text:
        return text
    return _STORED.sub(_unescape, text)


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    return ESCAPE * 2 if c == ESCAPE else ESCAPE + chr(_BASE + ord(c) - 0xDC80)


def _unescape(m: re.Match[str]) -> str:
    c = m.group(1)
    if c == ESCAPE:
        return c
    byte = ord(c) - _BASE + 0x80
    if not 0x80 <= byte <= 0xFF:
        raise ValueError(f"not a stored path: {text_sample(m.string)}")
    return chr(0xDC00 + byte)


def text_sample(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:200]
