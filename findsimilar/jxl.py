"""JPEG XL (``.jxl``): the Pillow plugin, and what the file's header says before decoding.

Pillow reads JPEG XL through ``pillow-jxl-plugin`` (libjxl behind Rust bindings): it is
maintained, and installs as a wheel for CPython 3.11 (checked on x86-64) with the Pillow
we use (``jxlpy``, the other plugin on PyPI, had no release since 2024). That plugin decodes
the whole picture as soon as the file is *opened*, before any caller can look at its size,
so the size is read here from the codestream's header first (a few bytes: the
decompression-bomb rule holds for JPEG XL as for every format), and the plugin's opener
is registered behind that check. The decoder (``daemon/model/decode.py``) and the
thumbnails (``findsimilar/thumbnails.py``) register it; importing this module imports no
Pillow.

The header also tells whether the pixels were stored in XYB, libjxl's perceptual colour
space: an XYB file is lossy for certain. A file in its original colour space is what
lossless encoding needs but does not prove (libjxl can also encode lossily without XYB),
so its origin is "cannot tell" (None); a file that holds a JPEG for exact reconstruction
(a ``jbrd`` box) has a lossy origin: the JPEG's.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from findsimilar.errors import ImageDecodeError
from findsimilar.safeio import open_regular

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["FORMAT", "PLUGIN_FORMAT", "Header", "check_size", "is_jxl", "lossless",
           "read_header", "register", "sniff", "upright"]

FORMAT = "JPEG XL"
PLUGIN_FORMAT = "JXL"  # Pillow's name for it (the plugin's)
CODESTREAM = b"\xff\x0a"
CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
# Bytes of codestream read for the header: its fields up to ``xyb_encoded`` take a few
# dozen bytes, unless extra channels carry long names.
_HEADER_BYTES = 4096
_MAX_BOXES = 64
# SizeHeader's ratio codes 1..7: width = height * num // den.
_RATIOS = ((1, 1), (12, 10), (4, 3), (3, 2), (16, 9), (5, 4), (2, 1))
_SIZE = ((0, 9), (0, 13), (0, 18), (0, 30))  # U32 distributions: (offset, bits)
_registered = False


@dataclass(frozen=True)
class Header:
    """What a JPEG XL file declares before any pixel is decoded."""

    width: int
    height: int
    xyb: bool | None  # pixels stored in XYB (lossy); None: that field could not be read
    jpeg: bool  # holds a JPEG for exact reconstruction


def is_jxl(head: bytes) -> bool:
    """Whether ``head`` starts like a JPEG XL codestream or container."""
    return head[:2] == CODESTREAM or head[:12] == CONTAINER


def sniff(source: bytes | Path | BinaryIO) -> str | None:
    """None if ``source`` does not start like a JPEG XL; else ``FORMAT`` if its header
    reads and the plugin is installed, or "" if not. A file object is read from where it
    stands and put back there; a path that cannot be opened is None."""
    try:
        with _reader(source) as fh:
            start = fh.tell()
            try:
                if not is_jxl(fh.read(12)):
                    return None
                fh.seek(start)
                read_header(fh)
            finally:
                fh.seek(start)
    except OSError:
        return None
    except ValueError:
        return ""
    return FORMAT if importlib.util.find_spec("pillow_jxl") is not None else ""


def register() -> None:
    """Teach Pillow JPEG XL (the plugin's opener behind the size check); without the
    plugin installed, JPEG XL files fail with Pillow's "not a recognised image format"."""
    global _registered
    if _registered:
        return
    _registered = True
    try:
        from pillow_jxl import JpegXLImagePlugin
    except ImportError:
        return
    from PIL import Image

    class SizeCheckedJXL(JpegXLImagePlugin.JXLImageFile):
        """The plugin's image, opened only once the declared size passed Pillow's limit."""

        def _open(self) -> None:
            start = self.fp.tell()
            header = read_header(self.fp)
            self.fp.seek(start)
            Image._decompression_bomb_check((header.width, header.height))
            super()._open()

    Image.register_open(PLUGIN_FORMAT, SizeCheckedJXL, is_jxl)


def upright(im: Image.Image) -> bool:
    """Whether ``im`` (any format) was turned upright by its decoder: libjxl applies the
    codestream's orientation, which JPEG XL says overrides EXIF's (a JPEG the plugin
    reconstructs is handed back as it was, EXIF orientation and all)."""
    return im.format == PLUGIN_FORMAT and not getattr(im, "jpeg", False)


def check_size(source: bytes | Path, max_pixels: int) -> None:
    """Refuse a JPEG XL ``source`` that declares more than ``max_pixels``, before decoding;
    anything else passes. Raises ImageDecodeError (also for a header that cannot be read)."""
    try:
        with _reader(source) as fh:
            if not is_jxl(fh.read(12)):
                return
            fh.seek(0)
            header = read_header(fh)
    except OSError:  # opening it to decode gives the reason
        return
    except ValueError as exc:
        raise ImageDecodeError(f"truncated or damaged image data (JPEG XL: {exc})") from None
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise ImageDecodeError(
            f"refused as a decompression bomb: {header.width}x{header.height} = "
            f"{pixels / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP limit")


def lossless(source: bytes | Path) -> bool | None:
    """False for a JPEG XL stored in XYB or holding a JPEG; None otherwise (see above)."""
    try:
        with _reader(source) as fh:
            header = read_header(fh)
    except (OSError, ValueError):
        return None
    return False if header.jpeg or header.xyb else None


@contextlib.contextmanager
def _reader(source: bytes | Path | BinaryIO) -> Iterator[BinaryIO]:
    """``source`` to read from (safeio: a path that is not a regular file raises)."""
    if isinstance(source, bytes):
        yield io.BytesIO(source)
    elif not isinstance(source, (str, os.PathLike)):
        yield source
    else:
        with os.fdopen(open_regular(source), "rb") as fh:
            yield fh


def read_header(fh: BinaryIO) -> Header:
    """The header of the JPEG XL file read from ``fh``'s position (which it moves).
    Raises ValueError if it is not one, or its header is cut short or malformed."""
    start = fh.tell()
    head = fh.read(12)
    if head[:2] == CODESTREAM:
        fh.seek(start)
        return _parse(fh.read(_HEADER_BYTES), jpeg=False)
    if head != CONTAINER:
        raise ValueError("not a JPEG XL file")
    codestream, jpeg = _codestream_of(fh)
    return _parse(codestream, jpeg=jpeg)


def _codestream_of(fh: BinaryIO) -> tuple[bytes, bool]:
    """The first bytes of a container's codestream (``jxlc`` box, or ``jxlp`` parts) and
    whether it has a ``jbrd`` box (JPEG reconstruction), walking box headers only."""
    parts: list[bytes] = []
    jpeg = False
    for _ in range(_MAX_BOXES):
        box = fh.read(8)
        if len(box) < 8:
            break
        size, kind = int.from_bytes(box[:4], "big"), box[4:]
        header = 8
        if size == 1:
            size, header = int.from_bytes(fh.read(8), "big"), 16
        payload = None if size == 0 else size - header  # 0: the box runs to the end
        if payload is not None and payload < 0:
            raise ValueError(f"box {kind!r} declares an impossible size")
        jpeg = jpeg or kind == b"jbrd"
        if kind in (b"jxlc", b"jxlp"):
            skip = 4 if kind == b"jxlp" else 0  # a part's index
            want = _HEADER_BYTES - sum(map(len, parts)) + skip
            data = fh.read(want if payload is None else min(want, payload))
            parts.append(data[skip:])
            if kind == b"jxlc" or sum(map(len, parts)) >= _HEADER_BYTES or payload is None:
                break
            fh.seek(payload - len(data), io.SEEK_CUR)
        elif payload is None:
            break
        else:
            fh.seek(payload, io.SEEK_CUR)
    if not parts:
        raise ValueError("no codestream box")
    return b"".join(parts), jpeg


class _Bits:
    """Reads the codestream's fields: bits least significant first."""

    def __init__(self, data: bytes) -> None:
        self.value = int.from_bytes(data, "little")
        self.left = len(data) * 8
        self.pos = 0

    def u(self, n: int) -> int:
        if n > self.left - self.pos:
            raise ValueError("header cut short")
        out = (self.value >> self.pos) & ((1 << n) - 1)
        self.pos += n
        return out

    def u32(self, *dists: tuple[int, int]) -> int:
        offset, bits = dists[self.u(2)]
        return offset + self.u(bits)


def _parse(codestream: bytes, *, jpeg: bool) -> Header:
    if codestream[:2] != CODESTREAM:
        raise ValueError("no codestream signature")
    bits = _Bits(codestream[2:_HEADER_BYTES])
    width, height = _size(bits)
    try:
        xyb: bool | None = _xyb_encoded(bits)
    except (ValueError, IndexError):
        xyb = None
    return Header(width, height, xyb, jpeg)


def _size(bits: _Bits) -> tuple[int, int]:
    small = bits.u(1)
    height = (bits.u(5) + 1) * 8 if small else bits.u32(*_SIZE) + 1
    ratio = bits.u(3)
    if ratio:
        num, den = _RATIOS[ratio - 1]
        return height * num // den, height
    width = (bits.u(5) + 1) * 8 if small else bits.u32(*_SIZE) + 1
    return width, height


def _xyb_encoded(bits: _Bits) -> bool:
    """ImageMetadata read up to ``xyb_encoded`` (JPEG XL part 1, or libjxl's
    image_metadata.cc), skipping what comes before it."""
    if bits.u(1):  # all_default
        return True
    if bits.u(1):  # extra_fields
        bits.u(3)  # orientation
        if bits.u(1):  # intrinsic size
            _size(bits)
        if bits.u(1):  # preview
            _skip_preview(bits)
        if bits.u(1):  # animation
            bits.u32((100, 0), (1000, 0), (1, 10), (1, 30))
            bits.u32((1, 0), (1001, 0), (1, 8), (1, 10))
            bits.u32((0, 0), (0, 3), (0, 16), (0, 32))
            bits.u(1)
    _skip_bit_depth(bits)
    bits.u(1)  # modular_16_bit_buffer_sufficient
    for _ in range(bits.u32((0, 0), (1, 0), (2, 4), (1, 12))):
        _skip_extra_channel(bits)
    return bool(bits.u(1))


def _skip_preview(bits: _Bits) -> None:
    div8 = bits.u(1)
    dist = ((16, 0), (32, 0), (1, 5), (33, 9)) if div8 else (
        (1, 6), (65, 8), (321, 10), (1345, 12))
    bits.u32(*dist)
    if bits.u(3) == 0:
        bits.u32(*dist)


def _skip_bit_depth(bits: _Bits) -> None:
    if bits.u(1):  # floating point
        bits.u32((32, 0), (16, 0), (24, 0), (1, 6))
        bits.u(4)
    else:
        bits.u32((8, 0), (10, 0), (12, 0), (1, 6))


def _skip_extra_channel(bits: _Bits) -> None:
    if bits.u(1):  # all_default: an alpha channel
        return
    kind = bits.u32((0, 0), (1, 0), (2, 4), (18, 6))
    _skip_bit_depth(bits)
    bits.u32((0, 0), (3, 0), (4, 0), (1, 3))  # dim_shift
    bits.u(8 * bits.u32((0, 0), (0, 4), (16, 5), (48, 10)))  # name
    if kind == 0:  # alpha: premultiplied or not
        bits.u(1)
    elif kind == 2:  # spot colour: four F16
        bits.u(64)
    elif kind == 5:  # CFA channel
        bits.u32((1, 0), (0, 2), (3, 4), (19, 8))
