"""Tell a camera RAW file from its first bytes and TIFF tags, without LibRaw.

Most RAW formats (DNG, CR2, NEF, NRW, ARW, SRF, PEF, SRW, 3FR, ERF, MEF) are TIFF containers:
their first bytes are an ordinary TIFF's, and Pillow would "decode" one by showing the
small thumbnail in IFD0. What makes one a RAW is in its tags: a DNGVersion, or an image
stored as a colour filter array (PhotometricInterpretation 32803) or as linear raw
(34892), or Canon's "CR" mark. The others (ORF, RW2, RAF, CR3, X3F, MRW, IIQ, and CRW's
CIFF heap) have their own signatures. Reading the tags also gives the camera's make,
model and date, and where the sensor data lies, so a truncated file is refused before
LibRaw sees it.

The walk is bounded (IFDs, entries, values) and reads only a few small ranges: the file
is untrusted.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from findsimilar.safeio import NotRegularFile, open_regular

__all__ = ["RawContainer", "inspect", "sniff"]

# Signatures of RAW formats that are not plain TIFF (first bytes, with an offset).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"IIRO", "ORF"), (0, b"IIRS", "ORF"), (0, b"MMOR", "ORF"), (0, b"IIU\x00", "RW2"),
    (0, b"FUJIFILMCCD-RAW", "RAF"), (4, b"ftypcrx ", "CR3"), (0, b"FOVb", "X3F"),
    (0, b"\x00MRM", "MRW"), (6, b"HEAPCCDR", "CRW"),
    # Phase One: its own header first, or after a TIFF header (as LibRaw looks for it)
    (0, b"IIII", "IIQ"), (0, b"MMMM", "IIQ"), (8, b"IIII", "IIQ"), (8, b"MMMM", "IIQ"),
)
# Make (upper case, first word) -> the usual name of its TIFF-based RAW format.
_MAKERS = {"NIKON": "NEF", "SONY": "ARW", "PENTAX": "PEF", "RICOH": "PEF", "SAMSUNG": "SRW",
           "HASSELBLAD": "3FR", "CANON": "CR2", "PHASE": "IIQ", "LEAF": "IIQ",
           "KODAK": "DCR", "MAMIYA": "MEF", "EPSON": "ERF"}
_MAX_IFDS = 32
_MAX_ENTRIES = 1024
_MAX_VALUES = 1 << 16
_TYPES = {1: "B", 2: "B", 3: "H", 4: "I", 7: "B", 9: "i", 13: "I", 16: "Q"}
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8, 13: 4, 16: 8}
_CFA, _LINEAR_RAW = 32803, 34892
_NEW_SUBFILE, _WIDTH, _HEIGHT, _PHOTOMETRIC = 254, 256, 257, 262
_MAKE, _MODEL, _DATETIME, _STRIPS, _STRIP_BYTES = 271, 272, 306, 273, 279
_TILES, _TILE_BYTES, _SUBIFDS, _EXIF_IFD, _TAKEN, _DNG = 324, 325, 330, 34665, 36867, 50706


@dataclass
class RawContainer:
    """What the container says before any pixel is read."""

    format: str  # DNG, CR2, NEF, ... ("RAW" for a TIFF RAW of an unknown maker)
    make: str | None = None
    model: str | None = None
    taken: str | None = None
    # Sensor data (CFA or linear raw) size, and whether its strips or tiles end within
    # the file (None: unknown, not a TIFF container or no offsets given).
    sensor: tuple[int, int] | None = None
    complete: bool | None = None


Reader = Callable[[int, int], bytes]


def sniff(head: bytes) -> str | None:
    """The RAW format a non-TIFF signature at the start of ``head`` names, or None."""
    for offset, magic, name in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return name
    return None


def inspect(source: bytes | Path | BinaryIO) -> RawContainer | None:
    """The RAW container ``source`` (file bytes, a path, or a file object, read from
    its start and put back where it stood) is, or None if it is no camera RAW. Never
    raises for bad content: a damaged TIFF that shows no RAW sign is None."""
    try:
        with _reader(source) as (read, length):
            head = read(0, 16)
            named = sniff(head)
            if named is not None:
                return RawContainer(named)
            if head[:4] not in (b"II*\x00", b"MM\x00*"):
                return None
            return _walk(read, length, head)
    except (OSError, NotRegularFile, struct.error, ValueError, OverflowError):
        return None


@contextlib.contextmanager
def _reader(source: bytes | Path | BinaryIO) -> Iterator[tuple[Reader, int]]:
    if isinstance(source, bytes):
        yield (lambda offset, size: source[offset:offset + size]), len(source)
        return
    if isinstance(source, (str, os.PathLike)):
        with os.fdopen(open_regular(source), "rb") as fh:
            yield _file_reader(fh), os.fstat(fh.fileno()).st_size
        return
    start = source.tell()
    try:
        end = source.seek(0, os.SEEK_END)
        yield _file_reader(source), end
    finally:
        source.seek(start)


def _file_reader(fh: BinaryIO) -> Reader:
    def read(offset: int, size: int) -> bytes:
        fh.seek(offset)
        return fh.read(size)
    return read


def _walk(read: Reader, length: int, head: bytes) -> RawContainer | None:
    order = "<" if head[:2] == b"II" else ">"
    found = RawContainer("RAW")
    is_raw = head[8:10] == b"CR"  # Canon CR2
    if is_raw:
        found.format = "CR2"
    queue, seen = [struct.unpack(order + "I", head[4:8])[0]], set()
    while queue and len(seen) < _MAX_IFDS:
        offset = queue.pop(0)
        if offset in seen or not 8 <= offset < length:
            continue
        seen.add(offset)
        tags, next_ifd = _ifd(read, order, offset)
        queue.extend(tags.get(_SUBIFDS, ()))
        queue.extend(tags.get(_EXIF_IFD, ()))
        if next_ifd:
            queue.append(next_ifd)
        if _DNG in tags:
            is_raw, found.format = True, "DNG"
        _camera(found, tags)
        photometric = tags.get(_PHOTOMETRIC, (0,))[0]
        if photometric in (_CFA, _LINEAR_RAW) and found.sensor is None:
            is_raw = True
            found.sensor = (tags.get(_WIDTH, (0,))[0], tags.get(_HEIGHT, (0,))[0])
            found.complete = _ends_within(tags, length)
    if not is_raw:
        return None
    if found.format == "RAW" and found.make:
        found.format = _MAKERS.get(found.make.split()[0].upper(), "RAW")
    return found


def _camera(found: RawContainer, tags: dict[int, tuple]) -> None:
    for tag, name in ((_MAKE, "make"), (_MODEL, "model"), (_TAKEN, "taken"),
                      (_DATETIME, "taken")):
        text = _text(tags.get(tag))
        if text and getattr(found, name) is None:
            setattr(found, name, text)


def _text(value: tuple | None) -> str | None:
    if not value or not isinstance(value[0], bytes):
        return None
    return value[0].split(b"\x00")[0].decode("latin-1").strip()[:64] or None


def _ends_within(tags: dict[int, tuple], length: int) -> bool | None:
    for offsets, counts in ((_STRIPS, _STRIP_BYTES), (_TILES, _TILE_BYTES)):
        if offsets in tags and counts in tags:
            ends = [o + c for o, c in zip(tags[offsets], tags[counts], strict=False)]
            return bool(ends) and max(ends) <= length
    return None


def _ifd(read: Reader, order: str, offset: int) -> tuple[dict[int, tuple], int]:
    """The tags of the IFD at ``offset`` (strings as one bytes value; numbers of the
    tags this module reads only) and the next IFD's offset."""
    count = min(struct.unpack(order + "H", read(offset, 2))[0], _MAX_ENTRIES)
    table = read(offset + 2, 12 * count + 4)
    tags: dict[int, tuple] = {}
    for i in range(min(count, len(table) // 12)):
        tag, kind, n = struct.unpack_from(order + "HHI", table, 12 * i)
        size = _SIZES.get(kind, 0) * n
        if kind not in _TYPES or n > _MAX_VALUES or size == 0:
            continue
        data = table[12 * i + 8:12 * i + 12]
        if size > 4:
            data = read(struct.unpack_from(order + "I", table, 12 * i + 8)[0], size)
        if len(data) < size:
            continue
        if kind == 2:
            tags[tag] = (bytes(data[:size]),)
        else:
            tags[tag] = struct.unpack_from(f"{order}{n}{_TYPES[kind]}", data)
    tail = table[12 * count:12 * count + 4]
    return tags, struct.unpack(order + "I", tail)[0] if len(tail) == 4 else 0
