"""A second opinion on "are these two files the same picture?".

CNN descriptors rank well but cannot tell an edited copy from a burst shot:
on the shared photos, edited copies score 0.46–1.0 cosine while different
shots of one scene score 0.54–0.99. Pixels can tell them apart once the two
pictures are aligned, so a candidate pair is checked like this:

1. Both files become small upright greyscale previews (longer side 512).
2. Candidate geometries mapping one onto the other: "same frame" (a resize or
   re-encode), and similarity transforms found by ORB features + RANSAC (also
   on contrast-equalised copies, for smooth pictures)
   (crops, borders, captions, small rotations); each also mirrored.
3. The sharper picture is warped onto the softer one (never upsampled, so a
   small copy is not punished for its lost detail; smoothed first when shrunk, so it
   does not alias), both are blurred a little, and normalised cross-correlation is
   measured in a grid of tiles over the overlap: 6×6, fewer on a small overlap (tiles
   of about 40 pixels at least, 2×2 at the fewest). Flat tiles, clipped pixels and
   faint tiles no further off than the pair's noise (a sky in a heavily compressed
   copy) say nothing and are skipped.
4. The score is the *worst* tile: an edit changes a picture everywhere the same
   way (NCC ignores brightness and contrast), while a moved arm or a second shot
   leaves at least one tile that does not match. Where a tile fails:
   * a deep crop's alignment is refined (ECC) and the tiles measured again;
   * a blurred or heavily compressed copy has lost detail: the sharper picture is
     softened to look like it, unless a tile that rescues then matches better a pixel
     or two off (a small motion, seen through the blur);
   * an overlay (caption band, watermark, logo, sticker) is forgiven: failing tiles
     that are at most 40% of the tiles, in one or two places, every other tile
     matching closely (≥ 0.94), and what differs there new content rather than
     content moved (``overlay``). The score is then the worst tile outside it.

The score is in [-1, 1]; ``NEAR_SCORE`` is calibrated on the shared photos
(see BENCHMARKS.md, "Duplicates").

The checks run where the model runs (the model worker, see ``local``); the daemon
imports this module for its constants alone, so OpenCV and Pillow are imported on the
first check, not with the module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from findsimilar.daemon.model.overlay import moved_a_little, new_content
from findsimilar.errors import ImageDecodeError

__all__ = ["NEAR_SCORE", "PREVIEW_SIDE", "Preview", "VERIFIER_ID", "compare", "load_preview"]

VERIFIER_ID = "orb-tile-ncc/v5"  # stored with cached verdicts; bump when scores change
PREVIEW_SIDE = 512
NEAR_SCORE = 0.88  # worst-tile NCC at or above which two pictures are the same picture
MIN_OVERLAP = 0.4  # the aligned overlap must cover this share of each picture
_GRID = 6
_MIN_TILE_SIDE = 40
_MIN_TILES = 2
_ORB_FEATURES = 750
_MIN_INLIERS = 12
# A preview with fewer ORB keypoints than this is smooth: matched again contrast-equalised
# if need be (every such pass on the shared photos and their edits had one below 210).
_SMOOTH = _ORB_FEATURES // 2
_HOPELESS = 0.6  # below this median tile NCC nothing is forgiven (saves the time)
_FAINT = 6.0  # a tile of less contrast than this (grey levels, std) is faint
_NOISE = 2.0  # ... and says nothing if it matches within this many times the pair's noise
_REFINE_FROM = 0.5  # a tile score from which a better alignment may reach NEAR_SCORE
_SOFTEN = (1.0, 2.0, 3.0)  # Gaussian sigmas tried on the sharper picture, in turn
_SOFTER = 1.5  # ... if it has this many times the other's detail
_OVERLAY_REST = 0.94  # tiles below this are the overlay; all others match this well
_OVERLAY_SHARE = 0.4  # an overlay covers at most this share of the scored tiles
_OVERLAY_PLACES = 2  # in at most this many places (a logo and a caption)



@functools.cache
def _cv2() -> ModuleType:
    import cv2

    cv2.setNumThreads(1)  # pairs are verified in parallel by the caller
    return cv2


@dataclass
class Preview:
    """A decoded preview plus its ORB features, computed once and reused per pair."""

    grey: np.ndarray  # uint8, upright, longer side <= PREVIEW_SIDE
    _features: dict[tuple[bool, bool], tuple[list, np.ndarray | None]] = field(
        default_factory=dict)

    def image(self, mirrored: bool) -> np.ndarray:
        return np.ascontiguousarray(self.grey[:, ::-1]) if mirrored else self.grey

    def features(self, mirrored: bool, equalised: bool) -> tuple[list, np.ndarray | None]:
        key = (mirrored, equalised)
        if key not in self._features:
            image = self.image(mirrored)
            if equalised:
                # Smooth pictures (sky, clouds, fog) give ORB a handful of corners; after
                # local contrast equalisation there are plenty.
                image = _cv2().createCLAHE(clipLimit=4.0, tileGridSize=(8, 8)).apply(image)
            orb = _cv2().ORB_create(_ORB_FEATURES, fastThreshold=5 if equalised else 10)
            self._features[key] = orb.detectAndCompute(image, None)
        return self._features[key]


def load_preview(path: str | Path, *, max_pixels: int) -> Preview:
    """Raises ImageDecodeError if the file cannot be decoded."""
    from findsimilar.daemon.model.decode import decode_preview

    grey = decode_preview(Path(path), PREVIEW_SIDE, max_pixels=max_pixels)
    if min(grey.shape) < 8:
        raise ImageDecodeError(f"too small to compare ({grey.shape[1]}x{grey.shape[0]})")
    return Preview(grey)


def compare(a: Preview, b: Preview, *, good_enough: float = NEAR_SCORE) -> float:
    """How surely ``a`` and ``b`` show the same picture: the worst-tile NCC under the
    best geometry found, -1.0 if none could be found. Stops early once a geometry
    reaches ``good_enough``; the cheap geometries go first (the same frame, as is and
    mirrored: no keypoints needed)."""
    best = -1.0
    for mirrored, matrix in _geometries(a, b):
        best = max(best, _tile_score(a.grey, b.image(mirrored), matrix))
        if best >= good_enough:
            return best
    return best


def _geometries(a: Preview, b: Preview):  # noqa: ANN202 - generator
    """(mirrored, matrix) pairs, the matrix mapping ``b`` (mirrored or not) onto ``a``:
    the same frame (cheap, and right for resizes and re-encodes), then RANSAC on ORB
    features, and only where that found nothing and a picture has few keypoints (a
    smooth one: sky, clouds, fog), on contrast-equalised previews."""
    (ha, wa), (hb, wb) = a.grey.shape, b.grey.shape
    for mirrored in (False, True):
        yield mirrored, np.array([[wa / wb, 0, 0], [0, ha / hb, 0]], np.float64)
    for mirrored in (False, True):
        plain = (a.features(False, False), b.features(mirrored, False))
        matrix = _ransac(*plain)
        if matrix is None and min(len(plain[0][0]), len(plain[1][0])) < _SMOOTH:
            matrix = _ransac(a.features(False, True), b.features(mirrored, True))
        if matrix is not None:
            yield mirrored, matrix


def _ransac(fa: tuple[list, np.ndarray | None],
            fb: tuple[list, np.ndarray | None]) -> np.ndarray | None:
    """The similarity transform taking b's keypoints onto a's, or None."""
    cv2 = _cv2()
    (ka, da), (kb, db) = fa, fb
    if da is None or db is None or len(ka) < _MIN_INLIERS or len(kb) < _MIN_INLIERS:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(db, da, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < _MIN_INLIERS:
        return None
    src = np.float32([kb[m.queryIdx].pt for m in good])
    dst = np.float32([ka[m.trainIdx].pt for m in good])
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, ransacReprojThreshold=3.0)
    return matrix if matrix is not None and int(inliers.sum()) >= _MIN_INLIERS else None


def _tile_score(a: np.ndarray, b: np.ndarray, matrix: np.ndarray) -> float:
    """Worst-tile NCC of ``a`` and ``b`` aligned by ``matrix`` (b -> a), compared in
    the frame of the softer picture so that neither is upsampled; if that falls short
    but not far, again with the alignment refined (``_refine``)."""
    score = _aligned_score(a, b, matrix)
    if _REFINE_FROM <= score < NEAR_SCORE:
        refined = _refine(a, b, matrix)
        if refined is not None:
            score = max(score, _aligned_score(a, b, refined))
    return score


def _refine(a: np.ndarray, b: np.ndarray, matrix: np.ndarray) -> np.ndarray | None:
    """``matrix`` (b -> a) refined by ECC maximisation over a full affine map, at half
    size: keypoints place a deep crop's scale a little off, and the tiles far from its
    centre then miss by a pixel or two. None if ECC does not converge."""
    cv2 = _cv2()
    half = np.diag([0.5, 0.5, 1.0])
    small_a, small_b = (cv2.resize(x, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
                        for x in (a, b))
    inverse = cv2.invertAffineTransform(matrix)  # ECC's warp maps a's pixels into b
    warp = (half @ np.vstack([inverse, [0, 0, 1]]) @ np.linalg.inv(half))[:2].astype(np.float32)
    try:
        _, warp = cv2.findTransformECC(small_a, small_b, warp, cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40,
                                        1e-5), None, 3)
    except cv2.error:
        return None
    full = np.linalg.inv(half) @ np.vstack([warp, [0, 0, 1]]) @ half
    return cv2.invertAffineTransform(full[:2].astype(np.float64))


def _aligned_score(a: np.ndarray, b: np.ndarray, matrix: np.ndarray) -> float:
    cv2 = _cv2()
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if not np.isfinite(scale) or scale <= 1e-3:
        return -1.0
    if scale > 1.0:  # b would be enlarged: bring a down onto b instead
        matrix, scale = cv2.invertAffineTransform(matrix), 1.0 / scale
        a, b = b, a
    h, w = a.shape
    if scale < 0.9:  # warpAffine samples, it does not average: smooth b first, or it aliases
        b = cv2.GaussianBlur(b, (0, 0), 0.5 * np.sqrt(1 / scale**2 - 1))
    warped = cv2.warpAffine(b, matrix, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full(b.shape, 255, np.uint8), matrix, (w, h),
                          flags=cv2.INTER_NEAREST) > 0
    mask = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    overlap = float(mask.sum())
    if overlap < MIN_OVERLAP * h * w or overlap < MIN_OVERLAP * b.size * scale**2:
        return -1.0
    return _worst_tile(a, warped, mask)


def _worst_tile(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """The worst tile's NCC; failing that, the same with the sharper picture softened to
    the other's (``_same_sharpness``); failing that, the worst tile outside an overlay
    (``_overlay_score``)."""
    cv2 = _cv2()
    a = cv2.GaussianBlur(a.astype(np.float32), (0, 0), 1.0)
    b = cv2.GaussianBlur(b.astype(np.float32), (0, 0), 1.0)
    # A pixel clipped in one picture but not the other says nothing (a brightened
    # copy burns highlights to white), so it takes no part; clipped in both agrees.
    usable = mask & (_clipped(a) == _clipped(b))
    tiles = _tiles(mask)
    scores = _tile_scores(a, b, mask, usable, tiles)
    if (~np.isnan(scores)).sum() < _MIN_TILES:
        return -1.0
    if np.nanmedian(scores) < _HOPELESS:  # most tiles differ: another picture, no rescue
        return float(np.nanmin(scores))
    if np.nanmin(scores) < NEAR_SCORE:
        softened = _same_sharpness(a, b, mask, scores, tiles)
        if softened is not None:
            soft_scores = _tile_scores(*softened, mask, usable, tiles)
            # Softening also hides a small motion: a tile it rescued that matches better
            # a pixel or two off is a second shot seen through the blur.
            rescued = np.nan_to_num(scores, nan=1.0) < NEAR_SCORE
            rescued &= np.nan_to_num(soft_scores, nan=-1.0) >= NEAR_SCORE
            if not any(moved_a_little(*softened, tiles[i][j]) for i, j in zip(
                    *np.nonzero(rescued), strict=True)):
                (a, b), scores = softened, soft_scores
    worst = float(np.nanmin(scores))
    if worst >= NEAR_SCORE:
        return worst
    return max(worst, _overlay_score(a, b, scores, tiles))


Tiles = list[list[tuple[slice, slice]]]


def _tiles(mask: np.ndarray) -> Tiles:
    """A grid of tiles over the overlap, by row and column."""
    ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    # Tiles of at least ~_MIN_TILE_SIDE pixels: on a thumbnail-sized copy smaller
    # tiles measure resampling noise, not the picture.
    grid = max(2, min(_GRID, min(y1 - y0, x1 - x0) // _MIN_TILE_SIDE))
    return [[(slice(y0 + (y1 - y0) * i // grid, y0 + (y1 - y0) * (i + 1) // grid),
              slice(x0 + (x1 - x0) * j // grid, x0 + (x1 - x0) * (j + 1) // grid))
             for j in range(grid)] for i in range(grid)]


def _tile_scores(a: np.ndarray, b: np.ndarray, mask: np.ndarray, usable: np.ndarray,
                 tiles: Tiles) -> np.ndarray:
    """NCC per tile, NaN where a tile says nothing: mostly outside the overlap or
    clipped, flat in both pictures, or faint and no further off than the pair's noise
    (``_faint``)."""
    scores = np.full((len(tiles), len(tiles)), np.nan)
    contrast = np.full(scores.shape, np.inf)
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            inside, use = mask[tile], usable[tile]
            share = np.count_nonzero(use) / use.size
            if share < 0.5 or np.count_nonzero(inside) < 0.9 * inside.size:
                continue
            ta, tb = (a[tile], b[tile]) if share == 1.0 else (a[tile][use], b[tile][use])
            ta, tb = ta - ta.mean(), tb - tb.mean()
            saa, sbb = float(np.vdot(ta, ta)), float(np.vdot(tb, tb))
            contrast[i, j] = np.sqrt(max(saa, sbb) / ta.size)
            if contrast[i, j] < 4:  # both flat: any two flat tiles "match"
                continue
            denom = np.sqrt(saa * sbb)
            scores[i, j] = float(np.vdot(ta, tb)) / denom if denom > 1e-6 else 0.0
    scores[_faint(scores, contrast)] = np.nan
    return scores


def _faint(scores: np.ndarray, contrast: np.ndarray) -> np.ndarray:
    """Tiles too faint for their NCC to mean much: low contrast in both pictures (a sky,
    a wall; ``contrast`` is the higher of the two: a blurred copy's faintness is no
    excuse), and
    what does not match there (``contrast`` × sqrt(1 - NCC²): what a linear fit leaves)
    no more than ``_NOISE`` times the pair's typical leftover. Heavy JPEG compression
    leaves blocks that make a faint tile's NCC drop; a moved arm leaves far more."""
    scored = ~np.isnan(scores)
    if not scored.any():
        return scored
    left = contrast * np.sqrt(np.clip(1 - np.nan_to_num(scores) ** 2, 0, 1))
    typical = float(np.median(left[scored]))
    return scored & (scores < NEAR_SCORE) & (contrast < _FAINT) & (
        left <= _NOISE * typical + 0.5)


def _same_sharpness(a: np.ndarray, b: np.ndarray, mask: np.ndarray, scores: np.ndarray,
                    tiles: Tiles) -> tuple[np.ndarray, np.ndarray] | None:
    """``a`` and ``b`` with the sharper one blurred to look most like the other, or None
    if they are about as sharp. A blurred or heavily compressed copy has lost detail its
    original still shows, and that detail would count as a difference; blurring never
    creates the difference a second shot shows (a moved arm stays moved). Sharpness is
    compared tile by tile (the median ratio), so that an overlay's crisp text does not
    make its copy look sharper."""
    cv2 = _cv2()
    la, lb = (cv2.Laplacian(x, cv2.CV_32F) ** 2 for x in (a, b))
    ratios = [(la[t].mean() + 1e-3) / (lb[t].mean() + 1e-3)
              for i, row in enumerate(tiles) for j, t in enumerate(row)
              if not np.isnan(scores[i, j])]
    ratio = float(np.median(ratios))
    if 1 / _SOFTER < ratio < _SOFTER:
        return None  # equally sharp: blurring would smooth away a small motion
    sharp, soft = (a, b) if ratio > 1 else (b, a)
    best, best_ncc = sharp, _ncc(sharp[mask], soft[mask])
    for sigma in _SOFTEN:
        candidate = cv2.GaussianBlur(sharp, (0, 0), sigma)
        ncc = _ncc(candidate[mask], soft[mask])
        if ncc <= best_ncc:
            break
        best, best_ncc = candidate, ncc
    return (best, b) if ratio > 1 else (a, best)


def _overlay_score(a: np.ndarray, b: np.ndarray, scores: np.ndarray,
                   tiles: Tiles) -> float:
    """The worst NCC of the tiles outside an overlay, or -1.0 if the tiles that do not
    match closely are not one. An overlay (caption band, watermark, logo, sticker)
    covers a minority of the tiles, in one or two places; every other tile matches
    closely (the copy is otherwise clean, where two frames of a video differ a little
    everywhere); and what differs there is new content, not content moved
    (``overlay.new_content``: a second shot)."""
    scored = ~np.isnan(scores)
    low = scored & (scores < _OVERLAY_REST)
    if low.sum() > _OVERLAY_SHARE * scored.sum() or _places(low) > _OVERLAY_PLACES:
        return -1.0
    if not new_content(a, b, [tiles[i][j] for i, j in zip(*np.nonzero(low), strict=True)]):
        return -1.0
    return float(scores[scored & ~low].min())


def _places(cells: np.ndarray) -> int:
    """How many 8-connected groups the True cells of ``cells`` form."""
    count, _ = _cv2().connectedComponents(cells.astype(np.uint8), connectivity=8)
    return count - 1


def _clipped(x: np.ndarray) -> np.ndarray:
    return (x <= 6) | (x >= 249)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-6 else 0.0
