"""Turn image files into small RGB arrays for the model, fast and safely.

Why this is not just ``Image.open(p).convert("RGB").resize(...)``:

* JPEGs are decoded with DCT-domain downscaling (``Image.draft``): a 12 MP
  camera JPEG decodes at 1/8 scale in ~20 ms instead of ~170 ms.
* The format comes from the bytes, never the file name; camera RAWs go to ``raw``.
* EXIF orientation is applied (on the small image: rotating a square model
  input after resizing equals resizing the rotated picture).
* Alpha, palette, CMYK, 16-bit, float and bilevel pictures become sensible RGB.
* Pictures that declare more than ``max_pixels`` are refused before any pixel
  is decoded (decompression bombs).
* What a keeper is chosen on (``facts``: colour, alpha, camera EXIF, sharpness, lossless
  origin, and for lossless files a digest of every pixel) is learnt on the way.
* Memory stays bounded whatever the folders hold: a big picture is shrunk a band
  of rows at a time before it is converted (a 16-bit or transparent picture
  would otherwise need several full-size copies), and the pictures being decoded
  at once share a pixel budget, so more decode threads never multiply the peak.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import stat
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from findsimilar import jxl, pillow_plugins
from findsimilar.daemon.indexing.scanner import signature_format
from findsimilar.daemon.model import facts, raw_container
from findsimilar.daemon.model.api import PictureFacts
from findsimilar.daemon.model.facts import content_fraction
from findsimilar.daemon.model.memory import BIG_PICTURE_PIXELS, give_back_soon
from findsimilar.errors import ImageDecodeError
from findsimilar.safeio import NotRegularFile, open_regular, read_head

__all__ = [
    "DecodedImage", "content_fraction", "decode_for_model", "decode_preview", "probe_format",
    "register_plugins",
]

T = TypeVar("T")

# Truncated files are failures with a reason, not half-grey pictures.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_EXIF_ORIENTATION = 0x0112
_TRANSPOSE = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}

# Pictures above this many pixels are shrunk band by band before any conversion.
SHRINK_ABOVE_PIXELS = 16_000_000
# Pixels of all pictures being decoded at once (one bigger picture decodes alone):
# the decoded frames then hold at most ~4 bytes x this, however many threads decode.
DECODE_BUDGET_PIXELS = 250_000_000
_BAND_PIXELS = 4_000_000
# Modes whose pixels cannot be averaged as they are: what to convert a band to first.
_AVERAGEABLE = {"1": "L", "P": "RGB", "PA": "RGBA", "I;16": "I", "I;16L": "I", "I;16B": "I",
                "I;16N": "I", "LAB": "RGB", "HSV": "RGB"}
_REDUCIBLE = frozenset({"L", "LA", "La", "RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "I", "F"})


def register_plugins() -> None:
    """Teach Pillow HEIC/HEIF and JPEG XL (``findsimilar.pillow_plugins``)."""
    pillow_plugins.register()


@dataclass(frozen=True)
class DecodedImage:
    """Model-ready pixels plus what we learned about the original picture."""

    pixels: np.ndarray  # (size, size, 3) uint8, RGB
    width: int  # original width after EXIF orientation
    height: int
    format: str  # Pillow's format name, from the content (JPEG, PNG, HEIF, ...)
    content: tuple[float, float] = (1.0, 1.0)  # share of width, height inside solid borders
    facts: PictureFacts | None = None


@dataclass(frozen=True)
class _Loaded:
    """A picture decoded (and shrunk) to 8-bit RGB, and what its file said on the way."""

    rgb: Image.Image
    orientation: int
    format: str
    alpha: bool
    exif: Image.Exif | None
    lossless: bool | None
    digest: str | None


class _PixelBudget:
    """Lets decodes run together only while their pixels fit in ``limit`` in total."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self.limit)  # a bigger picture waits until it is alone
        with self._changed:
            self._changed.wait_for(lambda: self.used + pixels <= self.limit)
            self.used += pixels
        try:
            yield
        finally:
            with self._changed:
                self.used -= pixels
                self._changed.notify_all()


_budget = _PixelBudget(DECODE_BUDGET_PIXELS)


def probe_format(source: bytes | Path | BinaryIO) -> str | None:
    """The image format detected from content, or None if Pillow cannot tell. A file
    object is read from where it stands; a path that is not a regular file is None.
    A JPEG XL is known by its header, never decoded here (its plugin decodes at open)."""
    if (found := jxl.sniff(source)) is not None:
        return found or None
    register_plugins()
    if (container := raw_container.inspect(source)) is not None:
        return container.format
    try:
        with contextlib.ExitStack() as files, _open(source, files) as im:
            return str(im.format)
    except Exception:
        return None


def _open(source: bytes | Path | BinaryIO, files: contextlib.ExitStack) -> Image.Image:
    """Pillow's image of ``source``; a file it opens is closed with ``files``."""
    if isinstance(source, bytes):
        return Image.open(io.BytesIO(source))
    if isinstance(source, (str, os.PathLike)):
        return Image.open(files.enter_context(_open_file(source)))
    return Image.open(source)


def _open_file(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading (safeio: never waits on a FIFO, refuses devices)."""
    try:
        return os.fdopen(open_regular(path), "rb")
    except NotRegularFile as exc:
        raise ImageDecodeError(exc.strerror) from None


def decode_for_model(source: bytes | Path, size: int, *, max_pixels: int,
                     digest: bool | None = None) -> DecodedImage:
    """Decode ``source`` (file bytes or a path) into a ``size``×``size`` RGB array, with
    the picture's facts; their pixel digest for a lossless file, or with ``digest`` True
    for any (a JPEG is then decoded at full size), or False for none.

    The whole picture is kept (squashed, not cropped) so that crops, borders
    and captions change the input as little as possible.

    Raises ImageDecodeError with a human-readable reason.
    """
    if (container := raw_container.inspect(source)) is not None:  # camera RAW: LibRaw
        from findsimilar.daemon.model.raw import decode_raw_for_model as raw
        return raw(source, container, size, max_pixels=max_pixels)
    return _guarded(source, max_pixels,
                    lambda im, held: _decode_opened(im, size, max_pixels, held, source, digest))


def decode_preview(source: bytes | Path, max_side: int, *, max_pixels: int) -> np.ndarray:
    """Decode ``source`` into an upright greyscale array whose longer side is at most
    ``max_side`` (aspect ratio kept), for pixel-level comparisons of two pictures.

    Raises ImageDecodeError with a human-readable reason.
    """
    if (container := raw_container.inspect(source)) is not None:
        from findsimilar.daemon.model.raw import decode_raw_preview as raw
        return raw(source, container, max_side, max_pixels=max_pixels)
    return _guarded(source, max_pixels,
                    lambda im, held: _preview_opened(im, max_side, max_pixels, held))


Decoder = Callable[[Image.Image, contextlib.ExitStack], T]


def _guarded(source: bytes | Path, max_pixels: int, decode: Decoder[T]) -> T:
    """Open ``source`` and run ``decode`` on it; every failure becomes ImageDecodeError.

    ``decode`` may hold a share of the pixel budget on the stack it is given: it is
    released only once the picture is closed and its pixels freed."""
    register_plugins()
    if _is_empty(source):
        raise ImageDecodeError("empty file (0 bytes)")
    _no_stricter_than(max_pixels)
    jxl.check_size(source, max_pixels)  # its plugin decodes it all as it opens it
    try:
        with warnings.catch_warnings(), contextlib.ExitStack() as held:
            warnings.simplefilter("ignore", UserWarning)  # e.g. "Corrupt EXIF data": the
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # outcome says it
            with _open(source, held) as im:
                try:
                    return decode(im, held)
                finally:
                    im.close()
    except ImageDecodeError:
        raise
    except UnidentifiedImageError:
        raise ImageDecodeError(_unidentified(source)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(_bomb(exc, max_pixels)) from None
    except MemoryError:
        raise ImageDecodeError("out of memory while decoding") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError,
            KeyError, AttributeError, ZeroDivisionError, RuntimeError) as exc:
        raise ImageDecodeError(_reason(exc)) from None


def _is_empty(source: bytes | Path) -> bool:
    if isinstance(source, bytes):
        return not source
    try:
        st = os.stat(source)
        return stat.S_ISREG(st.st_mode) and st.st_size == 0
    except OSError:  # opening it gives the real reason
        return False


def _no_stricter_than(max_pixels: int) -> None:
    # Pillow refuses pictures over its own default (~89 MP) at open time; our
    # exact check below enforces ``max_pixels``, so Pillow's may only be looser.
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    lower = text.lower()
    if "truncated" in lower or "end of file" in lower or isinstance(exc, EOFError):
        return f"truncated or damaged image data ({text})"
    if "MAX_TEXT_CHUNK" in text or "MAX_TEXT_MEMORY" in text:
        return ("refused: its metadata (a text or colour-profile chunk) inflates beyond "
                f"the size a picture needs ({text})")
    if "could not create decoder object" in lower:  # libwebp's only word on bad data
        return f"truncated or damaged image data ({text})"
    if "libjxl" in text:  # its only word is "Generic Error" and how to build it for more
        return "truncated or damaged image data (libjxl cannot decode it)"
    return f"cannot decode image: {text}"


def _unidentified(source: bytes | Path) -> str:
    """Pillow knows no format for ``source``: say so, or that its header is damaged."""
    try:
        head = source[:16] if isinstance(source, bytes) else read_head(source, 16)
    except OSError:
        head = b""
    fmt = signature_format(head)
    if fmt is None:
        return "not a recognised image format"
    return f"truncated or damaged image data (it starts like a {fmt} file, but its header " \
           "cannot be read)"


def _bomb(exc: BaseException, max_pixels: int) -> str:
    declared = re.search(r"\((\d+) pixels\)", str(exc))
    if declared is None:
        return f"refused as a decompression bomb: {exc}"
    return (f"refused as a decompression bomb: it declares {int(declared[1]) / 1e6:.0f} MP, "
            f"over the {max_pixels / 1e6:.0f} MP limit")


def _load(im: Image.Image, target: tuple[int, int], max_pixels: int,
          held: contextlib.ExitStack, draft: tuple[int, int] | None = None,
          source: bytes | Path | None = None, digest: bool | None = False) -> _Loaded:
    """Check the declared size, decode (JPEG at the smallest DCT scale covering
    ``draft``, by default ``target``, unless a ``digest`` of its pixels is asked) within
    the pixel budget, shrink a big picture towards ``target``, and return it as 8-bit
    RGB with what the file said (the pixel digest: see ``decode_for_model``)."""
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"refused as a decompression bomb: {width}x{height} = "
            f"{width * height / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP limit")
    fmt = jxl.FORMAT if im.format == jxl.PLUGIN_FORMAT else str(im.format or "unknown")
    is_lossless = facts.lossless(im, source) if source is not None else None
    want_digest = bool(is_lossless) if digest is None else digest
    if fmt == "JPEG" and im.mode in ("RGB", "L", "YCbCr", "CMYK") and not want_digest:
        im.draft(im.mode if im.mode != "YCbCr" else "RGB", draft or target)
    held.enter_context(_budget.reserve(im.size[0] * im.size[1]))
    if im.size[0] * im.size[1] > BIG_PICTURE_PIXELS:  # once its pixels are freed
        held.callback(give_back_soon, "a big picture decoded")
    im.load()  # first frame only for animations and multi-page files
    # Read after load: Pillow's TIFF loader turns the pixels itself and then drops
    # the tag (its size is reported upright already), so it must not be turned twice.
    exif = facts.exif_of(im)
    orientation = 1 if jxl.upright(im) else _orientation(exif)
    pixels = facts.pixel_digest(im, _TRANSPOSE.get(orientation, [])) if want_digest else None
    alpha = facts.with_alpha(im)
    rgb = _to_rgb(_shrink(im, target), sixteen_bit=im.mode.startswith("I;16"))
    return _Loaded(rgb, orientation, fmt, alpha, exif, is_lossless, pixels)


def _shrink(im: Image.Image, target: tuple[int, int]) -> Image.Image:
    """A big picture block-averaged towards ~3x ``target`` (what the resize after it
    would do first anyway), a band of rows at a time: converting it to RGB, over white
    or from 16 bits then costs a few small copies instead of several full-size ones."""
    width, height = im.size
    fx = max(1, int(width / target[0] / 3))
    fy = max(1, int(height / target[1] / 3))
    converts = im.mode != "RGB" or "transparency" in im.info
    if width * height <= SHRINK_ABOVE_PIXELS or fx * fy == 1 or not converts:
        return im  # (RGB needs no copy: the resize after reduces it just as well)
    convert = _AVERAGEABLE.get(im.mode)
    if convert is None and im.mode not in _REDUCIBLE:
        convert = "RGB"
    if im.mode in ("P", "L", "RGB") and "transparency" in im.info:
        convert = "RGBA"  # the shrunk picture has no colour key: mark it as alpha now
    rows = fy * max(1, _BAND_PIXELS // (width * fy))
    small: Image.Image | None = None
    for top in range(0, height, rows):
        band = im.crop((0, top, width, min(height, top + rows)))
        if convert:
            band = band.convert(convert)
        band = band.reduce((fx, fy))
        if small is None:
            small = Image.new(band.mode, (math.ceil(width / fx), math.ceil(height / fy)))
        small.paste(band, (0, top // fy))
    assert small is not None
    return small


def _decode_opened(im: Image.Image, size: int, max_pixels: int, held: contextlib.ExitStack,
                   source: bytes | Path, digest: bool | None) -> DecodedImage:
    width, height = im.size
    got = _load(im, (size, size), max_pixels, held, source=source, digest=digest)
    small = got.rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0)
    for op in _TRANSPOSE.get(got.orientation, []):
        small = small.transpose(op)
    if got.orientation in (5, 6, 7, 8):
        width, height = height, width
    pixels = np.asarray(small, dtype=np.uint8)
    if pixels.shape != (size, size, 3):
        raise ImageDecodeError(f"unexpected decoded shape {pixels.shape}")
    content = content_fraction(pixels)
    known = facts.picture_facts(width=width, height=height, fmt=got.format, content=content,
                                small=pixels, alpha=got.alpha, exif=got.exif,
                                is_lossless=got.lossless, digest=got.digest)
    return DecodedImage(pixels=pixels, width=width, height=height, format=got.format,
                        content=content, facts=known)


def _preview_opened(im: Image.Image, max_side: int, max_pixels: int,
                    held: contextlib.ExitStack) -> np.ndarray:
    scale = min(1.0, max_side / max(im.size))
    target = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    got = _load(im, target, max_pixels, held, draft=(max_side, max_side))
    grey = got.rgb.convert("L")
    grey.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=3.0)
    for op in _TRANSPOSE.get(got.orientation, []):
        grey = grey.transpose(op)
    return np.asarray(grey, dtype=np.uint8)


def _orientation(exif: Image.Exif | None) -> int:
    try:
        value = exif.get(_EXIF_ORIENTATION, 1) if exif is not None else 1
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # a damaged EXIF block must not cost us the picture
        return 1


_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _to_rgb(im: Image.Image, *, sixteen_bit: bool = False) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is laid over white. ``sixteen_bit``:
    the picture was decoded as 16-bit (a shrunk one is 32-bit now)."""
    mode = im.mode
    if mode in _HIGH_DEPTH:
        return _high_depth_to_rgb(im, sixteen_bit=sixteen_bit or mode.startswith("I;16"))
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "LA", "La", "RGBa") or mode in ("L", "RGB") and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    if im.mode == "RGB":
        return im
    return im.convert("RGB")


def _high_depth_to_rgb(im: Image.Image, *, sixteen_bit: bool) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale: scale to 0..255, not clip."""
    arr = np.asarray(im).astype(np.float32)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        raise ImageDecodeError("image contains no finite pixel values")
    if sixteen_bit:
        lo, hi = 0.0, 65535.0
    elif im.mode == "I" and finite.min() >= 0 and finite.max() <= 65535:
        lo, hi = 0.0, 65535.0 if finite.max() > 255 else 255.0
    else:
        lo, hi = float(finite.min()), float(finite.max())
    scaled = np.nan_to_num((arr - lo) / max(hi - lo, 1e-12) * 255.0)
    grey = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L")
    return grey.convert("RGB")
