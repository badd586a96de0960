"""A second opinion on "are these two files the same picture?".

CNN descriptors rank well but cannot tell an edited copy from a burst shot:
on the shared photos, edited copies score 0.63–1.0 cosine while different
shots of one scene score 0.54–0.99. Pixels can tell them apart once the two
pictures are aligned, so a candidate pair is checked like this:

1. Both files become small upright greyscale previews (longer side 512).
2. Candidate geometries mapping one onto the other: "same frame" (a resize or
   re-encode), and similarity transforms found by ORB features + RANSAC (also
   on contrast-equalised copies, for smooth pictures)
   (crops, borders, captions, small rotations); each also mirrored.
3. The sharper picture is warped onto the softer one (never upsampled, so a
   small copy is not punished for its lost detail), both are blurred a little,
   and normalised cross-correlation is measured in a grid of tiles over the
   overlap: 6×6, fewer on a small overlap (tiles of about 40 pixels at least,
   2×2 at the fewest). Flat tiles and clipped pixels say nothing and are skipped.
4. The score is the *worst* tile: an edit changes a picture everywhere the same
   way (NCC ignores brightness and contrast), while a moved arm, a second shot or
   a pasted object leaves at least one tile that does not match.

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

from findsimilar.errors import ImageDecodeError

__all__ = ["NEAR_SCORE", "PREVIEW_SIDE", "Preview", "VERIFIER_ID", "compare", "load_preview"]

VERIFIER_ID = "orb-tile-ncc/v3"  # stored with cached verdicts; bump when scores change
PREVIEW_SIDE = 512
NEAR_SCORE = 0.88  # worst-tile NCC at or above which two pictures are the same picture
MIN_OVERLAP = 0.4  # the aligned overlap must cover this share of each picture
_GRID = 6
_MIN_TILE_SIDE = 40
_MIN_TILES = 2
_ORB_FEATURES = 1000
_MIN_INLIERS = 12



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
    reaches ``good_enough``."""
    best = -1.0
    for mirrored in (False, True):
        for matrix in _geometries(a, b, mirrored):
            best = max(best, _tile_score(a.grey, b.image(mirrored), matrix))
            if best >= good_enough:
                return best
    return best


def _geometries(a: Preview, b: Preview, mirrored: bool):  # noqa: ANN202 - generator
    """Matrices mapping ``b`` (maybe mirrored) onto ``a``: the same frame first (cheap,
    and right for resizes and re-encodes), then RANSAC on ORB features, then (only if
    that found nothing) on contrast-equalised previews."""
    (ha, wa), (hb, wb) = a.grey.shape, b.grey.shape
    yield np.array([[wa / wb, 0, 0], [0, ha / hb, 0]], np.float64)
    for equalised in (False, True):
        matrix = _ransac(a.features(False, equalised), b.features(mirrored, equalised))
        if matrix is not None:
            yield matrix
            return


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
    the frame of the softer picture so that neither is upsampled."""
    cv2 = _cv2()
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if not np.isfinite(scale) or scale <= 1e-3:
        return -1.0
    if scale > 1.0:  # b would be enlarged: bring a down onto b instead
        matrix, scale = cv2.invertAffineTransform(matrix), 1.0 / scale
        a, b = b, a
    h, w = a.shape
    warped = cv2.warpAffine(b, matrix, (w, h), flags=cv2.INTER_AREA)
    mask = cv2.warpAffine(np.full(b.shape, 255, np.uint8), matrix, (w, h),
                          flags=cv2.INTER_NEAREST) > 0
    mask = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    overlap = float(mask.sum())
    if overlap < MIN_OVERLAP * h * w or overlap < MIN_OVERLAP * b.size * scale**2:
        return -1.0
    return _worst_tile(a, warped, mask)


def _worst_tile(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    cv2 = _cv2()
    a = cv2.GaussianBlur(a.astype(np.float32), (0, 0), 1.0)
    b = cv2.GaussianBlur(b.astype(np.float32), (0, 0), 1.0)
    # A pixel clipped in one picture but not the other says nothing (a brightened
    # copy burns highlights to white), so it takes no part; clipped in both agrees.
    usable = mask & (_clipped(a) == _clipped(b))
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    # Tiles of at least ~_MIN_TILE_SIDE pixels: on a thumbnail-sized copy smaller
    # tiles measure resampling noise, not the picture.
    grid = max(2, min(_GRID, min(y1 - y0, x1 - x0) // _MIN_TILE_SIDE))
    scores = []
    for i in range(grid):
        for j in range(grid):
            tile = (slice(y0 + (y1 - y0) * i // grid, y0 + (y1 - y0) * (i + 1) // grid),
                    slice(x0 + (x1 - x0) * j // grid, x0 + (x1 - x0) * (j + 1) // grid))
            if mask[tile].mean() < 0.9 or usable[tile].mean() < 0.5:
                continue
            ta, tb = a[tile][usable[tile]], b[tile][usable[tile]]
            if ta.std() < 4 and tb.std() < 4:  # both flat: any two flat tiles "match"
                continue
            scores.append(_ncc(ta, tb))
    return min(scores) if len(scores) >= _MIN_TILES else -1.0


def _clipped(x: np.ndarray) -> np.ndarray:
    return (x <= 6) | (x >= 249)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-6 else 0.0
