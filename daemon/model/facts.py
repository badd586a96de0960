"""What decoding a picture tells a keeper, computed while it is decoded for the model.

Everything here is cheap beside the decode itself (measured in BENCHMARKS.md): the
camera's EXIF comes from the header Pillow has already read, colour, sharpness and the
share inside solid borders from the small model-size picture, the lossless-or-lossy
origin from the format (for WebP and JPEG XL, from the file's header). The one costly
fact, the *pixel digest* (a hash of every decoded pixel, upright, as 8-bit RGB), is
computed only for lossless pictures, which are fully decoded anyway, and for a lossy one
only when a duplicate group asks (a PNG holding exactly a JPEG's pixels was made from that
JPEG: it carries nothing more).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from findsimilar import jxl
from findsimilar.daemon.model.api import PictureFacts

__all__ = ["camera", "content_fraction", "exif_of", "is_colour", "lossless", "picture_facts",
           "pixel_digest", "sharpness", "with_alpha"]

_MAKE, _MODEL, _DATETIME, _EXIF_IFD, _DATETIME_ORIGINAL = 0x010F, 0x0110, 0x0132, 0x8769, 0x9003
# Formats that keep every pixel as it was given (TIFF unless JPEG-compressed, WebP if VP8L).
_LOSSLESS = frozenset({"PNG", "BMP", "GIF", "TIFF", "PPM", "TGA", "ICO", "QOI", "PCX", "SGI",
                       "IM", "XBM", "DIB", "APNG"})
_LOSSY = frozenset({"JPEG", "MPO", "HEIF", "AVIF"})
# A pixel whose channels spread by more than this is coloured; a picture with more than
# 1% of such pixels is a colour picture (a greyscale photo saved as RGB JPEG spreads by
# a few levels at most: chroma noise).
_CHROMA = 24
_COLOURED_SHARE = 0.01
# Rows hashed at a time: small bands stay in the CPU's caches between copy and hash
# (measured on a 12 MP PNG: ~35 ms with 1 MP bands, ~100 ms with 4 MP ones).
_BAND_PIXELS = 1_000_000


def is_colour(small: np.ndarray) -> bool:
    """Whether the model-size RGB picture ``small`` has colour (see ``_CHROMA``)."""
    # Channel slices, not reductions over the last axis: ~0.1 ms instead of ~3 ms.
    r, g, b = small[..., 0], small[..., 1], small[..., 2]
    spread = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    return bool(np.count_nonzero(spread > _CHROMA) > _COLOURED_SHARE * spread.size)


def content_fraction(pixels: np.ndarray, *, tolerance: int = 12, uniform: float = 0.7,
                     most: float = 0.3) -> tuple[float, float]:
    """The share of the width and of the height left once solid bands (letterbox bars,
    a plain frame) are trimmed from the picture's edges: a bordered copy holds no more
    picture than its original, though it has more pixels. At most ``most`` of each side
    is trimmed; a line is "solid" when ``uniform`` of it is within ``tolerance`` of the
    edge's colour."""
    grey = pixels.astype(np.int16).mean(axis=2) if pixels.ndim == 3 else pixels.astype(np.int16)

    def depth(lines: np.ndarray) -> int:  # lines from the edge inwards
        edge, n = np.median(lines[0]), 0
        while n < int(len(lines) * most) and (
                np.abs(lines[n] - edge) <= tolerance).mean() >= uniform:
            n += 1
        return n

    h, w = grey.shape
    width = w - depth(grey.T) - depth(grey.T[::-1])
    height = h - depth(grey) - depth(grey[::-1])
    return round(width / w, 3), round(height / h, 3)


def sharpness(small: np.ndarray) -> float:
    """Variance of the Laplacian of the model-size picture's green channel (the one that
    carries most of the detail): higher is sharper. It compares copies of one picture:
    a blurred or upscaled copy scores lower."""
    g = small[..., 1].astype(np.float32)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return round(float(lap.var()), 1)


def with_alpha(im: Image.Image) -> bool:
    """Whether the picture has an alpha channel or a transparent colour."""
    return im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info


def exif_of(im: Image.Image) -> Image.Exif | None:
    """The picture's EXIF (read after ``load``: TIFF's loader applies and drops the
    orientation), or None if it is damaged."""
    try:
        return im.getexif()
    except Exception:  # a damaged EXIF block must not cost us the picture
        return None


def camera(exif: Image.Exif | None) -> tuple[str | None, str | None, str | None]:
    """The camera's make, model and the date the photo was taken, from EXIF (None where
    absent or unreadable)."""
    if exif is None:
        return None, None, None
    try:
        taken = exif.get_ifd(_EXIF_IFD).get(_DATETIME_ORIGINAL) or exif.get(_DATETIME)
        return _text(exif.get(_MAKE)), _text(exif.get(_MODEL)), _text(taken)
    except Exception:  # a damaged EXIF block must not cost us the picture
        return None, None, None


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = str(value).replace("\x00", "").strip()
    return text[:64] or None


def lossless(im: Image.Image, source: bytes | Path) -> bool | None:
    """Whether the file stores its pixels losslessly (None: cannot tell)."""
    fmt = str(im.format or "").upper()
    if fmt == "TIFF":
        return "jpeg" not in str(im.info.get("compression", "")).lower()
    if fmt == "WEBP":
        return _webp_lossless(source)
    if fmt == jxl.PLUGIN_FORMAT:
        return jxl.lossless(source)
    if fmt in _LOSSLESS:
        return True
    return False if fmt in _LOSSY else None


def _webp_lossless(source: bytes | Path) -> bool | None:
    """A WebP's first image chunk: VP8L is lossless, VP8 lossy (chunks are walked past an
    ICC profile or EXIF without reading them)."""
    def read(offset: int, size: int) -> bytes:
        if isinstance(source, bytes):
            return source[offset:offset + size]
        with open(source, "rb") as fh:
            fh.seek(offset)
            return fh.read(size)

    offset = 12
    for _ in range(16):
        head = read(offset, 8)
        if len(head) < 8:
            return None
        kind, size = head[:4], int.from_bytes(head[4:], "little")
        if kind == b"VP8L":
            return True
        if kind == b"VP8 ":
            return False
        offset += 8 + size + (size & 1)
    return None


def pixel_digest(im: Image.Image, transposes: list[Image.Transpose]) -> str | None:
    """SHA-256 (128 bits of it) of the loaded picture's upright pixels as 8-bit RGB
    (alpha left out), a band of rows at a time; None for high-depth pictures (no JPEG
    holds such pixels). SHA-256 has CPU instructions on x86 and ARM: faster here than
    BLAKE2b."""
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        return None
    for op in transposes:  # rare: a lossless file with an EXIF orientation
        im = im.transpose(op)
    width, height = im.size
    h = hashlib.sha256(f"{width}x{height}".encode())
    rows = max(1, _BAND_PIXELS // width)
    for top in range(0, height, rows):
        band = im.crop((0, top, width, min(height, top + rows)))
        h.update((band if band.mode == "RGB" else band.convert("RGB")).tobytes())
    return h.hexdigest()[:32]


def picture_facts(*, width: int, height: int, fmt: str, content: tuple[float, float],
                  small: np.ndarray, alpha: bool, exif: Image.Exif | None,
                  is_lossless: bool | None, digest: str | None) -> PictureFacts:
    """The facts of one decoded picture (``small``: the model-size RGB array)."""
    make, model, taken = camera(exif)
    return PictureFacts(width=width, height=height, format=fmt, content=content,
                        colour=is_colour(small), alpha=alpha, sharpness=sharpness(small),
                        make=make, model=model, taken=taken, lossless=is_lossless,
                        pixel_digest=digest)

