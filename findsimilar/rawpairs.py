"""RAW+JPEG pairs: one photo in two files, as cameras write them (stdlib only).

A camera set to RAW+JPEG writes ``IMG_0042.CR2`` and ``IMG_0042.JPG`` side by side: the
sensor data and the camera's own rendering of it. They are one photo, so a duplicate
listing shows them as a pair and ``dupes`` actions never part them unless asked
(``--include-raw-pairs``). A pair: two files in one folder with the same stem, one a
camera RAW (``RAW_EXTENSIONS``), the other a rendering a camera writes (``RENDERINGS``);
extensions in any case.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from typing import Any, TypeVar

M = TypeVar("M", bound=Any)

__all__ = ["RAW_EXTENSIONS", "RENDERINGS", "is_raw", "one_per_photo", "raw_pairs"]

# Camera RAW (daemon/model/raw.py: as far as LibRaw reads them).
RAW_EXTENSIONS = frozenset({
    ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".raf", ".orf",
    ".rw2", ".pef", ".srw", ".3fr", ".iiq", ".x3f", ".mrw", ".erf", ".mef", ".dcr",
})
# What a camera writes beside its RAW: JPEG, HEIF (HIF), JPEG XL, TIFF.
RENDERINGS = frozenset({".jpg", ".jpeg", ".jpe", ".heic", ".heif", ".hif", ".jxl", ".tif",
                        ".tiff"})


def is_raw(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in RAW_EXTENSIONS


def raw_pairs(paths: Iterable[str]) -> dict[str, str]:
    """Each of ``paths`` that is half of a RAW+JPEG pair among them -> its other half."""
    by_stem: dict[tuple[str, str], list[str]] = {}
    for path in dict.fromkeys(paths):
        folder, name = os.path.split(path)
        stem, ext = os.path.splitext(name)
        if ext.lower() in RAW_EXTENSIONS or ext.lower() in RENDERINGS:
            by_stem.setdefault((folder, stem), []).append(path)
    pairs: dict[str, str] = {}
    for files in by_stem.values():
        raws = [f for f in files if is_raw(f)]
        others = [f for f in files if not is_raw(f)]
        if raws and others:
            for raw in raws:
                pairs[raw] = others[0]
            for other in others:
                pairs[other] = raws[0]
    return pairs


def one_per_photo(matches: list[M]) -> list[M]:
    """Search results (dataclasses with ``path`` and ``pair``, best first) with the two
    files of a RAW+JPEG pair as one: the better-scoring one stands, the other becomes its
    ``pair``, so one photo takes one place in the top k."""
    pairs = raw_pairs(m.path for m in matches)
    if not pairs:
        return matches
    placed: dict[str, int] = {}
    out: list[M] = []
    for m in matches:
        at = placed.get(pairs.get(m.path, ""))
        if at is not None and out[at].pair is None:
            out[at] = dataclasses.replace(out[at], pair=m.path)
            continue
        placed[m.path] = len(out)
        out.append(m)
    return out
