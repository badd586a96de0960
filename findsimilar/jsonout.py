"""JSON as findsimilar prints it: versioned, and true to every file name (stdlib only).

Every JSON output is an object with ``"version": JSON_VERSION`` (a JSON-lines stream: each
line; an output that is a list: each object in it), so a script can tell the schema it
reads. A Linux file name is bytes and need not be UTF-8 (Python holds such a name with
lone surrogates, ``os.fsdecode``); JSON text cannot carry it. So wherever a string
holds such a name, the output gives it *displayable* (each byte that is not UTF-8 as
``\\xHH``, e.g. ``caf\\xe9.jpg``) and, beside it under the same key plus ``_bytes``, the
exact bytes in base64 (``"path": "caf\\\\xe9.jpg", "path_bytes": "Y2Fm6S5qcGc="``; for a
list of names, ``"files_bytes"``: one base64 string each). ``restore`` undoes it, for
files findsimilar reads back (a plan for ``dupes apply``).
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

__all__ = ["JSON_VERSION", "displayable", "dumps", "restore", "to_json"]

JSON_VERSION = 1
_BYTES = "_bytes"


def displayable(text: str) -> str:
    """``text`` with each byte that is not UTF-8 shown as ``\\xHH`` (valid UTF-8)."""
    if not _undecodable(text):
        return text
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def to_json(obj: Any) -> Any:
    """``obj`` with every name that is not UTF-8 made displayable, its bytes beside it."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            key = displayable(key) if isinstance(key, str) else key
            if isinstance(value, str) and _undecodable(value):
                out[key], out[key + _BYTES] = displayable(value), _b64(value)
            elif isinstance(value, list) and any(isinstance(v, str) and _undecodable(v)
                                                 for v in value):
                out[key] = [displayable(v) if isinstance(v, str) else to_json(v)
                            for v in value]
                out[key + _BYTES] = [_b64(v) if isinstance(v, str) else None for v in value]
            else:
                out[key] = to_json(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, str):
        return displayable(obj)
    return obj


def dumps(obj: Any, *, indent: int | None = None, version: bool = True) -> str:
    """``obj`` as findsimilar prints JSON: ``to_json``, with the version (see above)."""
    obj = to_json(obj)
    if version:
        obj = _versioned(obj)
    return json.dumps(obj, indent=indent, ensure_ascii=False)


def restore(obj: Any) -> Any:
    """``to_json`` undone: each ``KEY_bytes`` (base64) back into ``KEY`` as the exact
    name (a ``str`` as ``os.fsdecode`` gives it). Malformed ``_bytes`` are left alone."""
    if isinstance(obj, dict):
        out = {k: restore(v) for k, v in obj.items() if not _is_bytes_key(k, obj)}
        for key in [k for k in obj if _is_bytes_key(k, obj)]:
            name, raw = key[:-len(_BYTES)], obj[key]
            try:
                if isinstance(raw, str):
                    out[name] = os.fsdecode(base64.b64decode(raw, validate=True))
                elif isinstance(raw, list) and isinstance(out.get(name), list) and len(
                        raw) == len(out[name]):
                    out[name] = [os.fsdecode(base64.b64decode(r, validate=True))
                                 if isinstance(r, str) else v for r, v in zip(
                                     raw, out[name], strict=True)]
            except ValueError:
                out[key] = raw  # not ours: kept as it was
        return out
    if isinstance(obj, list):
        return [restore(v) for v in obj]
    return obj


def _is_bytes_key(key: Any, obj: dict[str, Any]) -> bool:
    return isinstance(key, str) and key.endswith(_BYTES) and key[:-len(_BYTES)] in obj


def _versioned(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {"version": JSON_VERSION, **obj}
    if isinstance(obj, list):
        return [{"version": JSON_VERSION, **v} if isinstance(v, dict) else v for v in obj]
    return obj


def _undecodable(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text) if not text.isascii() else False


def _b64(text: str) -> str:
    return base64.b64encode(os.fsencode(text)).decode("ascii")
