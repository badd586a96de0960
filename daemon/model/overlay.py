"""Telling an overlay from motion: where two aligned pictures differ in a few tiles only,
is the differing content new (a caption, a watermark, a logo, a sticker: an edited copy)
or moved (an arm, a head, a car: another shot of the scene)?

Two kinds of motion are looked for, and an overlay is what shows neither:

* a small motion (a few pixels: two frames of a video): shifting a differing tile a
  little (up to ``SHIFT`` pixels) makes it match (NCC ``SHIFTED`` or more) where it did
  not in place, each picture's tile in the other;
* content moved further (up to ``SEARCH`` pixels at half resolution): many of the
  patches that differ in place, of either picture, are found in the other picture by
  one same shift (a moved object moves all its patches alike), over the differing
  tiles or within one of them. An overlay's patches are found nowhere in the picture
  it covers, or, by coincidence, each somewhere else. The patches are searched at
  half the preview's size: motion between shots is larger than that detail, and the
  search costs a quarter.
"""

from __future__ import annotations

import numpy as np

__all__ = ["moved_a_little", "new_content"]

SHIFT = 8  # preview pixels a differing tile is shifted by, at most, to look for motion
SHIFTED = 0.9  # NCC a shifted tile reaching this (and gaining _GAIN) was moved
PATCH = 16  # side of a searched patch, at half the preview's resolution
STRIDE = 8  # patches overlap by half
SEARCH = 32  # how far a patch may have moved, at half resolution (64 preview pixels)
FOUND = 0.85  # NCC at which a patch counts as found
# Motion: at least MOVED_PATCHES differing patches (8 pixels apart, both pictures') found
# by one shift, that are FOUND_SHARE of the differing patches found at all or
# DIFFERING_SHARE of all the differing ones; or MOVED_IN_TILE in one tile, that are
# MOVED_TILE_SHARE of the tile's differing patches. Calibrated on the calibration half
# of bench/dupes_edits.py: most moved objects show 9-42 such patches, 40-100% of those
# found, 23-53% of those differing; most overlays' coincidences agree on fewer, or on at
# most 29% and 11% (a few drawings and plain pictures overlap: BENCHMARKS.md).
MOVED_PATCHES = 9
FOUND_SHARE = 0.38
DIFFERING_SHARE = 0.13
MOVED_IN_TILE = 6
MOVED_TILE_SHARE = 0.3
_GAIN = 0.04
_SAME = 0.8  # a patch pair that correlates this well in place does not differ
_HOLD = 2  # shifts up to this many pixels are "in place"

Tile = tuple[slice, slice]


def new_content(a: np.ndarray, b: np.ndarray, tiles: list[Tile]) -> bool:
    """True if aligned float32 pictures ``a`` and ``b`` differ in ``tiles`` (of the
    preview) by new content, False if by motion, small or large."""
    return not any(_shifted(a, b, t) and _shifted(b, a, t) for t in tiles) and not _moved_far(
        a, b, tiles)


def moved_a_little(a: np.ndarray, b: np.ndarray, tile: Tile) -> bool:
    """True if ``tile`` of aligned float32 pictures ``a`` and ``b`` matches better a few
    pixels off than in place, either way: a small motion (for tiles known to match)."""
    return _shifted(a, b, tile) or _shifted(b, a, tile)


def _shifted(a: np.ndarray, b: np.ndarray, tile: Tile) -> bool:
    """Does ``a``'s tile match ``b`` closely a few pixels off, though not in place? (Both
    ways for motion: an overlay at a tile's edge lets the clean picture's tile match once
    shifted away from it, never the covered one.)"""
    import cv2

    ys, xs = tile
    h, w = b.shape
    y0, x0 = max(0, ys.start - SHIFT), max(0, xs.start - SHIFT)
    window = b[y0:min(h, ys.stop + SHIFT), x0:min(w, xs.stop + SHIFT)]
    scores = np.nan_to_num(cv2.matchTemplate(window, a[tile], cv2.TM_CCOEFF_NORMED), nan=-1.0)
    in_place = float(scores[ys.start - y0, xs.start - x0])
    best = float(scores.max())
    return best >= SHIFTED and best >= in_place + _GAIN


def _moved_far(a: np.ndarray, b: np.ndarray, tiles: list[Tile]) -> bool:
    """Is what differs in ``tiles`` content moved? Many of the differing patches, of
    either picture, found in the other by one same shift (a moved object moves all its
    patches alike, where an overlay's patches match anything only here and there): over
    all the tiles, or in one tile (an overlay elsewhere dilutes the share)."""
    evidence = _motion_evidence(a, b, tiles)
    found = [s for shifts, _ in evidence for s in shifts]
    alike, differing = _most_alike(found), sum(n for _, n in evidence)
    if alike >= MOVED_PATCHES and (alike >= FOUND_SHARE * len(found)
                                   or alike >= DIFFERING_SHARE * differing):
        return True
    return any(_most_alike(shifts) >= max(MOVED_IN_TILE, MOVED_TILE_SHARE * n)
               for shifts, n in evidence)


def _motion_evidence(a: np.ndarray, b: np.ndarray, tiles: list[Tile],
                     ) -> list[tuple[list[tuple[int, int]], int]]:
    """Per tile: the shifts by which the differing patches centred in it were found
    moved, and how many patches differ there."""
    import cv2

    a, b = (cv2.resize(x, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA) for x in (a, b))
    h, w = a.shape
    evidence = []
    for ys, xs in tiles:
        shifts, differing = [], 0
        # Patches centred in the tile (at half size), reaching out of it if need be.
        for y in range(max(0, ys.start // 2 - PATCH // 2), min(h - PATCH, ys.stop // 2 - PATCH // 2)
                       + 1, STRIDE):
            for x in range(max(0, xs.start // 2 - PATCH // 2),
                           min(w - PATCH, xs.stop // 2 - PATCH // 2) + 1, STRIDE):
                for src, dst, sign in ((b, a, 1), (a, b, -1)):
                    seen = _search(src, dst, y, x)
                    if seen is None:
                        continue
                    differing += 1
                    if seen[0] >= FOUND:
                        shifts.append((sign * seen[1][0], sign * seen[1][1]))
        evidence.append((shifts, differing))
    return evidence


def _most_alike(shifts: list[tuple[int, int]]) -> int:
    """The most shifts within a pixel of one of them."""
    return max((sum(abs(dy - y) <= 1 and abs(dx - x) <= 1 for dy, dx in shifts)
                for y, x in shifts), default=0)


def _search(src: np.ndarray, dst: np.ndarray, y: int, x: int,
            ) -> tuple[float, tuple[int, int]] | None:
    """Where ``src``'s patch at (y, x) is best found in ``dst`` near its place, though
    not in it: the NCC and the shift. None if the patch says nothing: too plain, or not
    different in place."""
    patch = src[y:y + PATCH, x:x + PATCH]
    if patch.std() < 6 or _ncc(patch, dst[y:y + PATCH, x:x + PATCH]) >= _SAME:
        return None
    return _best_elsewhere(dst, patch, y, x)


def _best_elsewhere(image: np.ndarray, patch: np.ndarray, y: int, x: int,
                    ) -> tuple[float, tuple[int, int]]:
    """The best NCC of ``patch`` in ``image`` within SEARCH of (y, x), not in place, and
    its shift from (y, x)."""
    import cv2

    h, w = image.shape
    y0, x0 = max(0, y - SEARCH), max(0, x - SEARCH)
    window = image[y0:min(h, y + PATCH + SEARCH), x0:min(w, x + PATCH + SEARCH)]
    scores = cv2.matchTemplate(window, patch, cv2.TM_CCOEFF_NORMED)
    cy, cx = y - y0, x - x0
    scores[max(0, cy - _HOLD):cy + _HOLD + 1, max(0, cx - _HOLD):cx + _HOLD + 1] = -1.0
    # Where the window is flat, the normalisation divides by nearly nothing.
    scores = np.nan_to_num(scores, nan=-1.0).clip(-1, 1)
    at = np.unravel_index(int(scores.argmax()), scores.shape)
    return float(scores[at]), (int(at[0]) - cy, int(at[1]) - cx)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-6 else 0.0
