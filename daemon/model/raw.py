"""Decode camera RAW files (DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, ...) with LibRaw.

A RAW holds the sensor's mosaic and, from nearly every camera, a JPEG preview the camera
rendered. The model needs a few hundred pixels a side, so the preview is used when it is
large enough (no demosaic: a fraction of the time, see BENCHMARKS.md), else LibRaw
develops the mosaic at half size (each 2x2 Bayer cell one pixel: no interpolation).
Orientation comes from the RAW's metadata (LibRaw's ``flip``), or from the preview's own
EXIF where it has one; a preview already turned upright (portrait-shaped while the sensor
is landscape) is not turned again. A RAW is the camera's original: lossless.

A RAW file is an untrusted TIFF-like container: the sensor's declared size is checked
against ``max_pixels`` before any pixel is decoded, sensor data that ends past the end
of the file is refused as truncated, and every LibRaw error becomes an ImageDecodeError
with a reason.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from findsimilar.daemon.model import decode, facts
from findsimilar.daemon.model.memory import BIG_PICTURE_PIXELS, give_back_soon
from findsimilar.daemon.model.raw_container import RawContainer
from findsimilar.errors import ImageDecodeError

__all__ = ["decode_raw_for_model", "decode_raw_preview", "render_raw"]

# LibRaw's flip -> the EXIF orientation that shows the sensor's picture upright.
_FLIP_TO_EXIF = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


@dataclass(frozen=True)
class _Developed:
    """A RAW as an upright 8-bit RGB picture near the size asked, with its facts."""

    rgb: Image.Image
    width: int  # the whole picture's, upright
    height: int
    make: str | None
    model: str | None
    taken: str | None


def decode_raw_for_model(source: bytes | Path, container: RawContainer, size: int, *,
                         max_pixels: int) -> decode.DecodedImage:
    """The RAW ``source`` (``container``: what its tags said) as a ``size``×``size`` RGB
    array with its facts (``decode.decode_for_model`` for a RAW).

    Raises ImageDecodeError with a human-readable reason."""
    got = _develop(source, container, lambda w, h: (size, size), max_pixels)
    small = got.rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    pixels = np.asarray(small, dtype=np.uint8)
    content = decode.content_fraction(pixels)
    known = facts.PictureFacts(
        width=got.width, height=got.height, format=container.format, content=content,
        colour=facts.is_colour(pixels), alpha=False, sharpness=facts.sharpness(pixels),
        make=got.make, model=got.model, taken=got.taken, lossless=True, pixel_digest=None)
    return decode.DecodedImage(pixels=pixels, width=got.width, height=got.height,
                               format=container.format, content=content, facts=known)


def decode_raw_preview(source: bytes | Path, container: RawContainer, max_side: int, *,
                       max_pixels: int) -> np.ndarray:
    """The RAW ``source`` as an upright greyscale array whose longer side is at most
    ``max_side`` (``decode.decode_preview`` for a RAW).

    Raises ImageDecodeError with a human-readable reason."""
    def need(width: int, height: int) -> tuple[int, int]:
        scale = min(1.0, max_side / max(width, height, 1))
        return round(width * scale), round(height * scale)

    grey = _develop(source, container, need, max_pixels).rgb.convert("L")
    grey.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(grey, dtype=np.uint8)


def render_raw(source: Path, container: RawContainer, edge: int, *,
               max_pixels: int) -> tuple[Image.Image, int, int]:
    """The RAW at ``source`` upright in RGB, fitting ``edge``×``edge`` (a thumbnail: the
    preview if it is that large, else the half-size demosaic), and its upright width and
    height. Raises ImageDecodeError with a human-readable reason."""
    def need(width: int, height: int) -> tuple[int, int]:
        scale = min(1.0, edge / max(width, height, 1))
        return round(width * scale), round(height * scale)

    got = _develop(source, container, need, max_pixels)
    got.rgb.thumbnail((edge, edge), Image.Resampling.LANCZOS)
    return got.rgb, got.width, got.height


def _develop(source: bytes | Path, container: RawContainer, need: Any,
             max_pixels: int) -> _Developed:
    """Open with LibRaw, check, then the preview or a half-size demosaic, upright.
    ``need(width, height)``: the size (upright) the caller needs of a picture that big."""
    import rawpy

    if container.complete is False:
        raise ImageDecodeError(f"truncated {container.format} file: its sensor data ends "
                               "past the end of the file")
    if container.format == "DNG" and container.sensor is None:
        raise ImageDecodeError("truncated or damaged DNG file: no sensor data found")
    try:
        with contextlib.ExitStack() as files:
            raw = files.enter_context(rawpy.imread(_stream(source, files)))
            width, height, orientation = _checked_size(raw, container, max_pixels)
            needed = need(width, height)
            preview = _preview(raw, needed, (orientation, width, height), max_pixels)
            rgb, exif = preview if preview is not None else (_demosaic(raw, width, height), None)
            make, model, taken = _camera(raw, container, exif)
            return _Developed(rgb, width, height, make, model, taken)
    except rawpy.LibRawError as exc:
        raise ImageDecodeError(_reason(exc, container)) from None
    except MemoryError:
        raise ImageDecodeError("out of memory while decoding a RAW file") from None


def _stream(source: bytes | Path, files: contextlib.ExitStack) -> io.BufferedIOBase:
    if isinstance(source, bytes):
        return io.BytesIO(source)
    return files.enter_context(decode._open_file(source))  # safeio: a regular file only


def _checked_size(raw: Any, container: RawContainer, max_pixels: int) -> tuple[int, int, int]:
    """The picture's upright width and height and its EXIF orientation; refuses one that
    declares more than ``max_pixels`` (before anything is unpacked)."""
    sizes = raw.sizes
    width, height = int(sizes.width), int(sizes.height)
    full = max(width * height, int(sizes.raw_width) * int(sizes.raw_height))
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"invalid {container.format} image size {width}x{height}")
    if full > max_pixels:
        raise ImageDecodeError(
            f"refused as a decompression bomb: its sensor declares {full / 1e6:.0f} MP, "
            f"over the {max_pixels / 1e6:.0f} MP limit")
    orientation = _FLIP_TO_EXIF.get(int(sizes.flip), 1)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height, orientation


def _preview(raw: Any, needed: tuple[int, int], upright: tuple[int, int, int],
             max_pixels: int) -> tuple[Image.Image, Image.Exif | None] | None:
    """The embedded preview, upright (``upright``: the RAW's EXIF orientation, upright
    width and height) and decoded near ``needed``, with its EXIF; None if there is none
    LibRaw can give, it is smaller than ``needed``, or it is no JPEG Pillow can open (the
    mosaic is then developed: a damaged preview need not cost the picture)."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        picture = Image.fromarray(np.ascontiguousarray(thumb.data, dtype=np.uint8), "RGB")
        if not _big_enough(picture.size, needed):
            return None
        return _upright(picture, 1, upright), None
    try:
        with Image.open(io.BytesIO(thumb.data)) as probe:
            if probe.format != "JPEG" or not _big_enough(probe.size, needed):
                return None
    except Exception:  # Pillow's many words for a damaged header
        return None
    target = (max(1, needed[0]), max(1, needed[1]))
    def load(im: Image.Image, held: contextlib.ExitStack) -> tuple[Image.Image, int, Any]:
        got = decode._load(im, target, max_pixels, held)
        return got.rgb.copy(), got.orientation, got.exif  # a copy outlives the JPEG

    rgb, own, exif = decode._guarded(thumb.data, max_pixels, load)
    return _upright(rgb, own, upright), exif


def _big_enough(size: tuple[int, int], needed: tuple[int, int]) -> bool:
    return max(size) >= max(needed) and min(size) >= min(needed)


def _upright(picture: Image.Image, own: int, upright: tuple[int, int, int]) -> Image.Image:
    """The preview turned upright: by its own EXIF orientation if it has one, else by
    the RAW's, unless it is already shaped like the upright picture (the sensor's turned
    a quarter: some cameras store the preview turned)."""
    orientation, width, height = upright
    w, h = picture.size
    if own == 1 and orientation in (5, 6, 7, 8) and w != h and (w > h) == (width > height):
        orientation = 1
    for op in decode._TRANSPOSE.get(own if own != 1 else orientation, []):
        picture = picture.transpose(op)
    return picture


def _demosaic(raw: Any, width: int, height: int) -> Image.Image:
    """Half-size demosaic (2x2 cells as pixels), upright (LibRaw applies its flip),
    within the shared pixel budget."""
    with decode._budget.reserve(width * height):
        rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
        picture = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
        del rgb
    if width * height > BIG_PICTURE_PIXELS:
        give_back_soon("a RAW developed")
    return picture


def _camera(raw: Any, container: RawContainer,
            exif: Image.Exif | None) -> tuple[str | None, str | None, str | None]:
    """Make, model and date: the RAW's tags first, the preview's EXIF, LibRaw's date."""
    make, model, taken = facts.camera(exif)
    taken = container.taken or taken
    if taken is None:
        with contextlib.suppress(Exception):  # a date LibRaw cannot tell is no failure
            stamp = raw.other.timestamp
            taken = stamp.strftime("%Y:%m:%d %H:%M:%S") if stamp else None
    return container.make or make, container.model or model, taken


def _reason(exc: BaseException, container: RawContainer) -> str:
    import rawpy

    text = exc.args[0].decode("latin-1", "replace") if exc.args and isinstance(
        exc.args[0], bytes) else str(exc) or type(exc).__name__
    fmt = container.format
    if isinstance(exc, rawpy.LibRawFileUnsupportedError):
        return f"not a {fmt} file LibRaw can read (unsupported or damaged: {text})"
    if isinstance(exc, (rawpy.LibRawIOError, rawpy.LibRawDataError)):
        return f"truncated or damaged {fmt} data ({text})"
    if isinstance(exc, (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError,
                        rawpy.LibRawMemPoolOverflowError)):
        return f"refused: the {fmt} file declares more data than LibRaw will hold ({text})"
    return f"cannot decode {fmt} file: {text}"
