"""JPEG XL files for tests, written with the plugin findsimilar reads them with
(``pillow-jxl-plugin``: libjxl's encoder), and a codestream header written bit by bit
(for sizes no test could afford to encode)."""

from __future__ import annotations

import io
from pathlib import Path

import pillow_jxl  # noqa: F401 - teaches Pillow to write JPEG XL
from PIL import Image

__all__ = ["codestream_header", "jxl_bytes", "write_jxl"]


def jxl_bytes(im: Image.Image, *, lossless: bool = False, container: bool = False,
              exif: bytes | None = None, quality: int = 85) -> bytes:
    """``im`` (as RGB) encoded as JPEG XL: lossy at ``quality`` or lossless; a bare
    codestream, or the ISO BMFF container (always, with ``exif``: an ``Exif`` box)."""
    buffer = io.BytesIO()
    options: dict[str, object] = {"lossless": True} if lossless else {"quality": quality}
    if exif is not None:
        options["exif"] = exif
    # effort 3: seconds less per test photo than the default 7, and still libjxl's coder
    im.convert("RGB").save(buffer, "JXL", effort=3, use_container=container or bool(exif),
                           lossless_jpeg=False, **options)
    return buffer.getvalue()


def write_jxl(source: Path, out: Path, **options: object) -> Path:
    """The photo at ``source`` written to ``out`` as JPEG XL (``jxl_bytes``' options)."""
    with Image.open(source) as im:
        out.write_bytes(jxl_bytes(im, **options))  # type: ignore[arg-type]
    return out


def codestream_header(width: int, height: int, *, tail: int = 64) -> bytes:
    """A JPEG XL codestream that declares ``width``×``height`` (SizeHeader with 30-bit
    sizes, default ImageMetadata) followed by ``tail`` zero bytes: no picture."""
    fields = [(0, 1), (3, 2), (height - 1, 30), (0, 3), (3, 2), (width - 1, 30), (1, 1)]
    value, pos = 0, 0
    for field, bits in fields:  # least significant bit first, as JPEG XL reads them
        value |= field << pos
        pos += bits
    return b"\xff\x0a" + value.to_bytes((pos + 7) // 8, "little") + bytes(tail)
