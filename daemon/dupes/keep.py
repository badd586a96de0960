"""Which file of a duplicate group is kept, why, and the group as ``dupes`` lists it.

If files of the group are in a reference folder (``--keep-in``), the keeper is one of
them. The keep rules then narrow the candidates one by one, in the order given (the
default: ``raw, resolution, colour, original, camera, size, format, oldest``), as a
photographer would:

* ``raw``: a camera RAW (``findsimilar.rawpairs``) over any rendering of it (a JPEG the
  camera or an editor made from the sensor data carries less);
* ``resolution``: the most picture, in pixels after trimming added bars or a frame. A
  copy with fewer pixels than another (a crop, a downscale) never wins; only where a
  frame was trimmed (an estimate) do copies within 10% count as equal, and among those
  one without a frame wins;
* ``colour``: colour over greyscale;
* ``original``: not a conversion: a lossless file (PNG, TIFF, WebP lossless, ...)
  holding exactly the decoded pixels of a lossy member (a JPEG) was made from it and
  carries nothing more (equal pixel digests);
* ``camera``: camera metadata (EXIF make, model or date taken) present;
* ``size``: the biggest file;
* ``format``: what a camera writes (a RAW, JPEG, HEIF, TIFF) before conversions of it
  (PNG, then WebP, AVIF, JPEG XL, JPEG 2000, then BMP, GIF; any other format last);
* ``oldest`` / ``newest``: by modification time; ``shortest-path``.

A rule never drops a file on a fact not known of it (the listing makes sure facts are
known first: ``facts.py``). A tie on every rule ends on the path, so the choice never
depends on listing order. Each rule that drops files says so in a few words: the
group's ``reason``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from findsimilar.rawpairs import RAW_EXTENSIONS, is_raw
from findsimilar.text import human_size, is_under

if TYPE_CHECKING:
    from findsimilar.daemon.dupes.grouping import FileRow

__all__ = ["DEFAULT_KEEP", "KEEP_RULES", "choose_keeper", "listed_group", "pick_keeper",
           "picture_pixels"]

KEEP_RULES = ("raw", "resolution", "colour", "original", "camera", "size", "format", "oldest",
              "newest", "shortest-path")
DEFAULT_KEEP = ("raw", "resolution", "colour", "original", "camera", "size", "format",
                "oldest")
# Where a frame was trimmed, the picture's size is an estimate (from the model-size
# image): within this share of the most, copies count as equal.
RESOLUTION_TOLERANCE = 0.10
# Formats a camera or phone writes first rank before conversions of them.
_RAW_FORMATS = frozenset(ext[1:].upper() for ext in RAW_EXTENSIONS)
_FORMAT_RANK = {"JPEG": 0, "MPO": 0, "HEIF": 0, "TIFF": 0, **dict.fromkeys(_RAW_FORMATS, 0),
                "PNG": 1, "WEBP": 2, "AVIF": 2, "JPEG XL": 2, "JPEG2000": 2, "BMP": 3, "GIF": 3}


def listed_group(tier: str, members: list[FileRow], keep_in: Sequence[str],
                 keep_by: tuple[str, ...], score: float | None) -> dict:
    """The group as listed: ``keep`` (from the reference folders ``keep_in`` if any
    member is in one, by the rules ``keep_by``), ``reason`` (why it was kept),
    ``files`` (the keeper first, then by path), its lowest ``score`` and each member's
    facts, ``match`` and ``protected``."""
    # A file is protected if any of its paths (its hard links too) is in a reference folder.
    protected = {f["path"] for f in members
                 if any(is_under(p, d) for p in [f["path"], *(f.get("links") or [])]
                        for d in keep_in)}
    pool = [f for f in members if f["path"] in protected] or members
    keep, reason = choose_keeper(pool, keep_by)
    if len(pool) < len(members):
        reason = "in a reference folder (--keep-in)" + (f"; {reason}" if len(pool) > 1 else "")
    ordered = [keep, *sorted((f for f in members if f is not keep), key=lambda f: f["path"])]
    return {
        "tier": tier,
        "keep": keep["path"],
        "reason": reason,
        "files": [f["path"] for f in ordered],
        "score": None if score is None else round(float(score), 4),
        "members": [_member(f, keep, tier, f["path"] in protected) for f in ordered],
    }


def pick_keeper(pool: list[FileRow], rules: tuple[str, ...]) -> FileRow:
    """The file of ``pool`` the keep ``rules`` choose (see ``choose_keeper``)."""
    return choose_keeper(pool, rules)[0]


def choose_keeper(pool: list[FileRow], rules: tuple[str, ...]) -> tuple[FileRow, str]:
    """The file of ``pool`` the keep ``rules`` choose, narrowing the pool rule by rule
    (ties end on the path), and why, in a short sentence."""
    reasons = []
    for rule in rules:
        if len(pool) == 1:
            break
        kept = _RULES[rule](pool)
        if len(kept) < len(pool):
            dropped = [f for f in pool if f not in kept]
            reasons.append(_WHY[rule](kept, dropped))
            pool = kept
    keep = min(pool, key=lambda f: f["path"])
    if not reasons:
        reasons.append("equal on every rule: first by path" if len(pool) > 1 else "the only file")
    return keep, "; ".join(reasons)


def picture_pixels(f: FileRow) -> int:
    """Width x height of the picture itself: inside bars or a frame if it has them."""
    if _framed(f):
        return f["content_width"] * f["content_height"]
    return (f["width"] or 0) * (f["height"] or 0)


def _framed(f: FileRow) -> bool:
    cw, ch, w, h = f.get("content_width"), f.get("content_height"), f["width"], f["height"]
    return bool(cw and ch and w and h and (cw < 0.985 * w or ch < 0.985 * h))


def _more_picture(pool: list[FileRow]) -> list[FileRow]:
    most = max(pool, key=picture_pixels)
    kept = [f for f in pool if _as_much(f, most)]
    return [f for f in kept if not _framed(f)] or kept


def _as_much(f: FileRow, most: FileRow) -> bool:
    """Whether ``f`` holds as much picture as ``most`` (within the tolerance if either
    size is an estimate inside a frame)."""
    fuzzy = _framed(f) or _framed(most)
    return picture_pixels(f) >= picture_pixels(most) * (
        1 - RESOLUTION_TOLERANCE if fuzzy else 1)


def _known(fact: str) -> Callable[[FileRow], bool]:
    return lambda f: bool(f.get("facts_known")) and f.get(fact) is not None


def _best_known(pool: list[FileRow], good: Callable[[FileRow], bool],
                known: Callable[[FileRow], bool]) -> list[FileRow]:
    """Drop files known not to be ``good`` if any file is; unknown facts drop nothing."""
    if not any(known(f) and good(f) for f in pool):
        return pool
    return [f for f in pool if not known(f) or good(f)]


def _colour(pool: list[FileRow]) -> list[FileRow]:
    return _best_known(pool, lambda f: bool(f.get("colour")), _known("colour"))


def _camera(pool: list[FileRow]) -> list[FileRow]:
    return _best_known(pool, _has_camera, lambda f: bool(f.get("facts_known")))


def _has_camera(f: FileRow) -> bool:
    return bool(f.get("make") or f.get("model") or f.get("taken"))


def _original(pool: list[FileRow]) -> list[FileRow]:
    lossy = {f.get("pixel_digest") for f in pool if f.get("lossless") is False}
    return [f for f in pool if not _converted(f, lossy)]


def _converted(f: FileRow, lossy_digests: set[Any]) -> bool:
    return bool(f.get("lossless") and f.get("pixel_digest")
                and f.get("pixel_digest") in lossy_digests)


def _smallest(key: Callable[[FileRow], Any]) -> Callable[[list[FileRow]], list[FileRow]]:
    def narrow(pool: list[FileRow]) -> list[FileRow]:
        best = min(key(f) for f in pool)
        return [f for f in pool if key(f) == best]
    return narrow


def _raw(f: FileRow) -> bool:
    return str(f.get("format") or "").upper() in _RAW_FORMATS or is_raw(f["path"])


def _format_rank(f: FileRow) -> int:
    return _FORMAT_RANK.get(str(f["format"]).upper(), 4)


_RULES: dict[str, Callable[[list[FileRow]], list[FileRow]]] = {
    "raw": lambda pool: [f for f in pool if _raw(f)] or pool,
    "resolution": _more_picture,
    "colour": _colour,
    "original": _original,
    "camera": _camera,
    "size": _smallest(lambda f: -(f["size"] or 0)),
    "format": _smallest(_format_rank),
    "oldest": _smallest(lambda f: f["mtime_ns"] or 0),
    "newest": _smallest(lambda f: -(f["mtime_ns"] or 0)),
    "shortest-path": _smallest(lambda f: len(f["path"])),
}


# -- why: one short sentence per rule that dropped files -------------------------------


def _names(files: list[FileRow], verb: str) -> str:
    """"a.png is", "a.png and b.png are", "3 others are" (``verb``: "is" / "has")."""
    plural = {"is": "are", "has": "have", "holds": "hold"}[verb]
    names = sorted({os.path.basename(f["path"]) for f in files})
    if len(names) == 1:
        return f"{names[0]} {verb}"
    if len(names) == 2:
        return f"{names[0]} and {names[1]} {plural}"
    return f"{len(names)} others {plural}"


def _dims(f: FileRow) -> str:
    if _framed(f):
        return f"{f['content_width']}×{f['content_height']} inside a frame"
    return f"{f['width'] or '?'}×{f['height'] or '?'}"


def _why_resolution(kept: list[FileRow], dropped: list[FileRow]) -> str:
    most = max(kept + dropped, key=picture_pixels)
    smaller = [f for f in dropped if not _as_much(f, most)]
    framed = [f for f in dropped if f not in smaller]
    why = []
    if smaller:
        best = max(kept, key=picture_pixels)
        why.append(f"most pixels ({_dims(best)} vs {_dims(max(smaller, key=picture_pixels))})")
    if framed:
        why.append(f"no added frame ({_names(framed, 'has')} bars or a border)")
    return "; ".join(why)


def _why_original(kept: list[FileRow], dropped: list[FileRow]) -> str:
    return f"the original: {_names(dropped, 'holds')} the same pixels converted"


def _why_camera(kept: list[FileRow], dropped: list[FileRow]) -> str:
    what = _camera_name(next(f for f in kept if _has_camera(f))) or "a date taken"
    return f"camera metadata ({what}; {_names(dropped, 'has')} none)"


def _camera_name(f: FileRow) -> str | None:
    """"Canon EOS 400D DIGITAL" (the model alone when it names the make already)."""
    make, model = f.get("make"), f.get("model")
    if make and model and str(model).lower().startswith(str(make).lower()):
        return str(model)
    return " ".join(str(x) for x in (make, model) if x) or None


def _why_size(kept: list[FileRow], dropped: list[FileRow]) -> str:
    biggest = max(dropped, key=lambda f: f["size"] or 0)
    return f"largest file ({human_size(kept[0]['size'])} vs {human_size(biggest['size'])})"


def _why_format(kept: list[FileRow], dropped: list[FileRow]) -> str:
    others = sorted({str(f["format"]) for f in dropped})
    return f"camera format ({kept[0]['format']} over {', '.join(others)})"


_WHY: dict[str, Callable[[list[FileRow], list[FileRow]], str]] = {
    "raw": lambda kept, dropped: f"the camera RAW ({_names(dropped, 'is')} a rendering)",
    "resolution": _why_resolution,
    "colour": lambda kept, dropped: f"colour ({_names(dropped, 'is')} greyscale)",
    "original": _why_original,
    "camera": _why_camera,
    "size": _why_size,
    "format": _why_format,
    "oldest": lambda kept, dropped: "oldest",
    "newest": lambda kept, dropped: "newest",
    "shortest-path": lambda kept, dropped: "shortest path",
}


def _member(f: FileRow, keep: FileRow, tier: str, protected: bool) -> dict:
    match = ("keep" if f is keep else "exact" if f["content_hash"] == keep["content_hash"]
             else tier)
    member = {"path": f["path"], "hash": f["content_hash"], "size": f["size"],
              "mtime": (f["mtime_ns"] or 0) / 1e9, "width": f["width"], "height": f["height"],
              "format": f["format"], "match": match, "protected": protected}
    if f.get("facts_known"):
        member.update(colour=bool(f.get("colour")), alpha=bool(f.get("alpha")),
                      lossless=f.get("lossless"), camera=_camera_name(f), taken=f.get("taken"),
                      sharpness=f.get("sharpness"))
    if f.get("links"):
        member["links"] = list(f.get("links"))
    return member
