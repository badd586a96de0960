"""Real camera RAW files made from ordinary photos, for tests and benchmarks.

No RAW sample ships with these machines, so tests write DNG files the way a camera's
converter does: the photo's pixels as a 12-bit Bayer mosaic (RGGB colour filter array,
PhotometricInterpretation 32803) with the tags LibRaw needs to develop it (DNGVersion,
black and white levels, a colour matrix, the as-shot neutral, Orientation), optionally
behind a reduced-size JPEG preview in IFD0 with the mosaic in a SubIFD (as Adobe's DNG
Converter and cameras lay them out). LibRaw reads them as it reads a camera's: nothing
is mocked at the decoder. ``hostile_raws`` writes broken and hostile containers.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

__all__ = ["EXIF_TRANSPOSE", "hostile_raws", "upright", "write_dng"]

WHITE = 4095  # 12-bit sensor
BLACK = 64
# XYZ (D65) -> linear sRGB: the "camera" here sees linear sRGB.
_XYZ_TO_SRGB = [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415],
                [0.0557, -0.2040, 1.0570]]
# What a viewer does to show a picture stored with EXIF orientation n upright.
EXIF_TRANSPOSE = {
    1: [], 2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_270], 7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_90],
}
_INVERSE = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """``image`` (as stored) as a viewer shows it under EXIF ``orientation``."""
    for op in EXIF_TRANSPOSE[orientation]:
        image = image.transpose(op)
    return image


def _mosaic(rgb: np.ndarray) -> np.ndarray:
    """An RGGB Bayer mosaic of an sRGB picture: linear 12-bit counts above BLACK."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    lin = (rgb[:h, :w].astype(np.float32) / 255.0) ** 2.2 * (WHITE - BLACK) + BLACK
    cfa = np.empty((h, w), np.uint16)
    cfa[0::2, 0::2] = lin[0::2, 0::2, 0]
    cfa[0::2, 1::2] = lin[0::2, 1::2, 1]
    cfa[1::2, 0::2] = lin[1::2, 0::2, 1]
    cfa[1::2, 1::2] = lin[1::2, 1::2, 2]
    return cfa


def _dng_tags(orientation: int, make: str, model: str) -> list[tuple]:
    matrix = [v for row in _XYZ_TO_SRGB for v in row]
    srational = [x for v in matrix for x in (round(v * 10000), 10000)]
    return [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{make} {model}", True),  # UniqueCameraModel
        (271, "s", 0, make, True),
        (272, "s", 0, model, True),
        (306, "s", 0, "2024:05:17 10:20:30", True),  # DateTime
        (274, "H", 1, orientation, True),
        (50721, "2i", 9, srational, True),  # ColorMatrix1
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
    ]


def _raw_tags() -> list[tuple]:
    return [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50714, "H", 1, BLACK, True),  # BlackLevel
        (50717, "H", 1, WHITE, True),  # WhiteLevel
    ]


def write_dng(path: Path, photo: Image.Image | Path, *, orientation: int = 1,
              preview: int | None = 1024, make: str = "Findsimilar",
              model: str = "TestCam") -> Path:
    """Write ``photo`` (upright, as the camera saw it) as a DNG whose sensor data is stored
    the way a camera held under ``orientation`` records it, with a JPEG preview whose
    longer side is ``preview`` pixels in IFD0 (None: no preview, the mosaic in IFD0)."""
    if not isinstance(photo, Image.Image):
        photo = Image.open(photo)
    stored = upright(photo.convert("RGB"), _INVERSE[orientation])
    cfa = _mosaic(np.asarray(stored))
    tags = _dng_tags(orientation, make, model)
    with tifffile.TiffWriter(path) as tif:
        if preview is None:
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=tags + _raw_tags())
            return path
        small = stored.copy()
        small.thumbnail((preview, preview))
        jpeg = io.BytesIO()
        small.save(jpeg, "JPEG", quality=90)
        # The JPEG goes in as one ready strip, then IFD0 is marked JPEG-compressed
        # (tifffile would need imagecodecs to compress it itself).
        raw_size = small.width * small.height * 3
        strip = jpeg.getvalue().ljust(raw_size, b"\0")[:raw_size]
        tif.write(iter([strip]), shape=(small.height, small.width, 3),
                  dtype=np.uint8, photometric="rgb", subfiletype=1, subifds=1,
                  rowsperstrip=small.height, extratags=tags)
        tif.write(cfa, photometric=32803, subfiletype=0, extratags=_raw_tags())
    blob = bytearray(path.read_bytes())
    # Compression: JPEG; Photometric: YCbCr; StripByteCounts: the JPEG's own length
    _patch_ifd0(blob, {259: 7, 262: 6, 279: jpeg.tell()})
    path.write_bytes(bytes(blob))
    return path


def _patch_ifd0(blob: bytearray, values: dict[int, int]) -> None:
    """Set the inline SHORT or LONG values of tags in a little-endian TIFF's IFD0."""
    offset = struct.unpack_from("<I", blob, 4)[0]
    for i in range(struct.unpack_from("<H", blob, offset)[0]):
        entry = offset + 2 + 12 * i
        tag, kind = struct.unpack_from("<HH", blob, entry)
        if tag in values:
            struct.pack_into("<H" if kind == 3 else "<I", blob, entry + 8, values[tag])


def hostile_raws(folder: Path, good: Path) -> dict[str, Path]:
    """Broken and hostile RAW files in ``folder``, made from the valid DNG ``good``:
    name -> path. Each must fail with a reason, never crash the decoder."""
    data = good.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    made = {
        "truncated.dng": data[: len(data) // 3],
        "garbage.dng": data[:8] + bytes(range(256)) * 64,
        "header-only.nef": b"II*\x00\x08\x00\x00\x00",
        "huge.dng": _huge_dng(),
        "not-raw.cr2": _plain_tiff_named_raw(),
        "fuji-garbage.raf": b"FUJIFILMCCD-RAW 0201FF383501" + bytes(4000),
    }
    out = {}
    for name, blob in made.items():
        (folder / name).write_bytes(blob)
        out[name] = folder / name
    return out


def _huge_dng() -> bytes:
    """A DNG whose mosaic declares 60000 x 60000 pixels (3.6 GP) over a few bytes."""
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        tif.write(np.zeros((16, 16), np.uint16), photometric=32803, subfiletype=0,
                  extratags=_dng_tags(1, "Findsimilar", "Bomb") + _raw_tags())
    blob = bytearray(buf.getvalue())
    _patch_ifd0(blob, {256: 60000, 257: 60000})  # ImageWidth, ImageLength
    return bytes(blob)


def _plain_tiff_named_raw() -> bytes:
    """An ordinary RGB TIFF: a picture, but no camera RAW (it is a TIFF, decoded as one)."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.full((32, 48, 3), 128, np.uint8), photometric="rgb")
    return buf.getvalue()
