"""Which file of a duplicate group is kept, and the group as ``dupes`` lists it.

If files of the group are in a reference folder (``--keep-in``), the keeper is one of
them. The keep rules then narrow the candidates one by one, in the order given:

* ``resolution``: the most picture pixels (inside any bars or frame), where within 10%
  counts as equally sharp; among those, a copy without an added frame first;
* ``size``: the biggest file;
* ``format``: what a camera writes (JPEG, HEIF, TIFF, DNG) before conversions of it
  (PNG, then WebP, AVIF, JPEG 2000, then BMP, GIF; any other format last);
* ``oldest`` / ``newest``: by modification time; ``shortest-path``.

A tie on every rule ends on the path, so the choice never depends on listing order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from findsimilar.text import is_under

if TYPE_CHECKING:
    from findsimilar.daemon.dupes.grouping import FileRow

__all__ = ["DEFAULT_KEEP", "KEEP_RULES", "listed_group", "pick_keeper", "picture_pixels"]

KEEP_RULES = ("resolution", "size", "format", "oldest", "newest", "shortest-path")
DEFAULT_KEEP = ("resolution", "size", "format", "oldest")
RESOLUTION_TOLERANCE = 0.10
# Formats a camera or phone writes first rank before conversions of them.
_FORMAT_RANK = {"JPEG": 0, "MPO": 0, "HEIF": 0, "TIFF": 0, "DNG": 0, "PNG": 1, "WEBP": 2,
                "AVIF": 2, "JPEG2000": 2, "BMP": 3, "GIF": 3}


def listed_group(tier: str, members: list[FileRow], keep_in: Sequence[str],
                 keep_by: tuple[str, ...], score: float | None) -> dict:
    """The group as listed: ``keep`` (from the reference folders ``keep_in`` if any
    member is in one, by the rules ``keep_by``), ``files`` (the keeper first, then by
    path), its lowest ``score`` and each member's facts, ``match`` and ``protected``."""
    protected = {f["path"] for f in members if any(is_under(f["path"], d) for d in keep_in)}
    pool = [f for f in members if f["path"] in protected] or members
    keep = pick_keeper(pool, keep_by)
    ordered = [keep, *sorted((f for f in members if f is not keep), key=lambda f: f["path"])]
    return {
        "tier": tier,
        "keep": keep["path"],
        "files": [f["path"] for f in ordered],
        "score": None if score is None else round(float(score), 4),
        "members": [_member(f, keep, tier, f["path"] in protected) for f in ordered],
    }


def pick_keeper(pool: list[FileRow], rules: tuple[str, ...]) -> FileRow:
    """The file of ``pool`` the keep ``rules`` choose, narrowing the pool rule by rule;
    ties end on the path."""
    for rule in rules:
        if len(pool) == 1:
            break
        if rule == "resolution":
            # Within 10% of the most picture pixels counts as equally sharp; among those,
            # a copy without added bars or frame (which are pixels, not picture) first.
            most = max(picture_pixels(f) for f in pool)
            pool = [f for f in pool if picture_pixels(f) >= (1 - RESOLUTION_TOLERANCE) * most]
            pool = [f for f in pool if not _framed(f)] or pool
            continue
        key = _RULE_KEYS[rule]
        best = min(key(f) for f in pool)
        pool = [f for f in pool if key(f) == best]
    return min(pool, key=lambda f: f["path"])


def picture_pixels(f: FileRow) -> int:
    """Width x height of the picture itself: inside bars or a frame if it has them."""
    return (f.get("content_width") or f["width"] or 0) * (
        f.get("content_height") or f["height"] or 0)


def _framed(f: FileRow) -> bool:
    cw, ch, w, h = f.get("content_width"), f.get("content_height"), f["width"], f["height"]
    return bool(cw and ch and w and h and (cw < 0.985 * w or ch < 0.985 * h))


# Keep rules other than "resolution": the smallest key wins.
_RULE_KEYS: dict[str, Callable[[FileRow], Any]] = {
    "size": lambda f: -(f["size"] or 0),
    "format": lambda f: _FORMAT_RANK.get(str(f["format"]).upper(), 4),
    "oldest": lambda f: f["mtime_ns"] or 0,
    "newest": lambda f: -(f["mtime_ns"] or 0),
    "shortest-path": lambda f: len(f["path"]),
}


def _member(f: FileRow, keep: FileRow, tier: str, protected: bool) -> dict:
    match = ("keep" if f is keep else "exact" if f["content_hash"] == keep["content_hash"]
             else tier)
    return {"path": f["path"], "hash": f["content_hash"], "size": f["size"],
            "mtime": (f["mtime_ns"] or 0) / 1e9, "width": f["width"], "height": f["height"],
            "format": f["format"], "match": match, "protected": protected}
