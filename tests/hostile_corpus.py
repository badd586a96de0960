"""Hostile files, made by the tests: what a folder a daemon reads can hold, besides photos.

``hostile_files`` gives the byte-level cases (damaged, bomb and odd pictures), each with
what must become of it: indexed, or failed with a reason matching a pattern.
``make_special_files`` adds what is not a plain file or has a hostile name: FIFOs, a
device node, a socket, symlink loops, an unreadable file and folder, names with a
newline or with bytes that are not UTF-8. ``make_empty_tree`` makes the 10-level tree of
100k empty files; ``endless_writer`` keeps a FIFO fed for ever. Nothing here is stored in
the repository: the bytes come from Pillow, from a real photo and from a seeded random
generator.
"""

from __future__ import annotations

import functools
import io
import os
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from findsimilar.daemon.model.decode import register_plugins

# A script that writes zeros into the FIFO it is given for as long as anyone reads,
# reopening it each time a reader goes away: a writer that never stops.
_ENDLESS_WRITER = """
import sys
while True:
    try:
        with open(sys.argv[1], "wb") as fifo:
            while True:
                fifo.write(bytes(1 << 20))
    except BrokenPipeError:
        pass
"""


def endless_writer(fifo: Path) -> subprocess.Popen[bytes]:
    """Start feeding ``fifo`` zeros for ever (the caller kills the process)."""
    return subprocess.Popen([sys.executable, "-c", _ENDLESS_WRITER, str(fifo)])

__all__ = ["INDEXED", "Hostile", "Special", "hostile_files", "make_empty_tree",
           "make_special_files", "pixel_flood_png"]

INDEXED = ""  # the ``reason`` of a case that must be indexed, not failed
TRUNCATED = r"truncated or damaged"
BOMB = r"decompression bomb"

register_plugins()  # lets Pillow write HEIC


@dataclass(frozen=True)
class Hostile:
    """A file to drop into a watched folder; ``reason`` is a regex the recorded failure
    must match, or INDEXED. Its bytes are made on first use (some take a second)."""

    name: str
    make: Callable[[], bytes] = field(repr=False)
    reason: str

    @functools.cached_property
    def data(self) -> bytes:
        return self.make()


@dataclass(frozen=True)
class Special:
    """Something made in place, named relative to its folder; ``outcome`` is "indexed",
    "failed" (with ``reason``, and ``stored_as`` the name the store knows it by) or
    "ignored" (no row at all)."""

    name: str
    outcome: str
    reason: str = ""
    stored_as: str = ""


# -- byte-level pieces -----------------------------------------------------------------

def encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_chunk(png: bytes, chunk: bytes) -> bytes:
    """``png`` with ``chunk`` inserted right after its IHDR."""
    ihdr_end = 8 + 25
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def png_header(width: int, height: int) -> bytes:
    """A valid signature and IHDR claiming width x height, and a few bytes of pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b""))


def pixel_flood_png(width: int, height: int, *, colour_type: int = 2, bit_depth: int = 8,
                    seed: int = 0) -> bytes:
    """A valid PNG of ``width`` x ``height`` flat pixels that compresses ~1000:1: a few MB
    on disk that decode to hundreds of MB (colour types 0 grey, 2 RGB, 6 RGBA)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = bytes([0, seed % 256]) + b"\0" * (width * channels * bit_depth // 8 - 1)
    compressor = zlib.compressobj(1)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_with_segments(jpeg: bytes, segments: bytes) -> bytes:
    return jpeg[:2] + segments + jpeg[2:]


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) patched to claim another size."""
    sof = jpeg.index(b"\xff\xc0")
    patched = bytearray(jpeg)
    patched[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(patched)


def tiff_claiming(width: int, height: int) -> bytes:
    """A small greyscale TIFF whose ImageWidth/ImageLength tags claim another size."""
    tiff = bytearray(encode(Image.new("L", (16, 16), 90), "TIFF"))
    for offset, tag in _ifd_entries(tiff):
        if tag in (256, 257):  # LONG values, held in the entry itself
            tiff[offset + 2:offset + 4] = struct.pack("<H", 4)
            tiff[offset + 8:offset + 12] = struct.pack("<I", width if tag == 256 else height)
    return bytes(tiff)


def tiff_with_looping_ifd() -> bytes:
    """A TIFF whose first IFD names itself as the next one: a reader that follows the
    chain without remembering where it has been loops for ever."""
    tiff = bytearray(encode(Image.new("RGB", (24, 16), (20, 120, 220)), "TIFF"))
    first = struct.unpack("<I", tiff[4:8])[0]
    count = struct.unpack("<H", tiff[first:first + 2])[0]
    tiff[first + 2 + 12 * count:first + 6 + 12 * count] = struct.pack("<I", first)
    return bytes(tiff)


def _ifd_entries(tiff: bytearray) -> Iterator[tuple[int, int]]:
    first = struct.unpack("<I", tiff[4:8])[0]
    for i in range(struct.unpack("<H", tiff[first:first + 2])[0]):
        offset = first + 2 + 12 * i
        yield offset, struct.unpack("<H", tiff[offset:offset + 2])[0]


def jpeg_with_looping_exif(picture: Image.Image) -> bytes:
    """A JPEG whose EXIF IFD0 names itself as IFD1."""
    raw = bytearray(_exif_with_orientation(1))
    base = 6  # after b"Exif\0\0"
    first = struct.unpack(">I", raw[base + 4:base + 8])[0]
    count = struct.unpack(">H", raw[base + first:base + first + 2])[0]
    end = base + first + 2 + 12 * count
    raw[end:end + 4] = struct.pack(">I", first)
    return encode(picture, "JPEG", quality=90, exif=bytes(raw))


def _exif_with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def gif_with_frames(count: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    frames = [Image.fromarray(rng.integers(0, 256, (16, 16), np.uint8)).convert("P")
              for _ in range(count)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=20)


# -- the corpus ----------------------------------------------------------------------------

def hostile_files(photo: Path, *, seed: int = 0) -> list[Hostile]:
    """The byte-level cases, made from the real JPEG ``photo`` and generated pictures.

    Pictures that are odd but whole (huge metadata, thousands of frames, a looping IFD,
    a mislabeled format, a pixel flood within the size limit) must be indexed; damaged
    ones and bombs must fail with a reason. The same ``seed`` gives the same bytes."""
    jpeg = photo.read_bytes()
    picture = Image.open(photo).convert("RGB")
    small = picture.resize((96, 72))
    png = encode(small, "PNG")

    def noise(fmt: str) -> bytes:
        rng = np.random.default_rng(seed)
        return encode(Image.fromarray(rng.integers(0, 256, (120, 160, 3), np.uint8)), fmt)

    def random(size: int, salt: int) -> bytes:
        return np.random.default_rng([seed, salt]).bytes(size)

    def half(data: bytes) -> bytes:
        return data[: len(data) // 2]

    def inflating() -> bytes:
        return zlib.compress(b"\0" * (64 << 20), 9)  # 64 MB of zeros in ~64 kB

    def segments(marker: int, header: Callable[[int], bytes]) -> bytes:
        return b"".join(jpeg_segment(marker, header(i) + random(65_000, 100 + i))
                        for i in range(100))

    return [
        # truncated files of every common format
        Hostile("cut-in-half.jpg", lambda: half(jpeg), TRUNCATED),
        Hostile("cut-after-header.jpg", lambda: jpeg[:300], TRUNCATED),
        Hostile("cut.png", lambda: noise("PNG")[:4000], TRUNCATED),
        Hostile("cut-in-signature.png", lambda: png[:20], TRUNCATED),
        Hostile("cut.webp", lambda: noise("WEBP")[:3000], TRUNCATED),
        Hostile("cut.heic", lambda: half(noise("HEIF")), TRUNCATED),
        Hostile("cut.tif", lambda: noise("TIFF")[:20_000], TRUNCATED),
        Hostile("cut.gif", lambda: half(noise("GIF")), TRUNCATED),
        # nothing at all, and things that are no picture
        Hostile("empty.jpg", lambda: b"", r"empty file \(0 bytes\)"),
        Hostile("empty.heic", lambda: b"", r"empty file \(0 bytes\)"),
        Hostile("random-bytes.jpg", lambda: random(20_000, 1), r"not a recognised image format"),
        Hostile("shopping-list.png", lambda: b"milk, eggs\n" * 50, r"not a recognised image"),
        Hostile("random-after-jpeg-signature.jpg",
                lambda: b"\xff\xd8\xff\xe0" + random(20_000, 2), TRUNCATED),
        Hostile("random-after-png-signature.png",
                lambda: b"\x89PNG\r\n\x1a\n" + random(20_000, 3), r"starts like a PNG"),
        Hostile("random-after-heic-brand.heic",
                lambda: b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + random(20_000, 4),
                r"starts like a HEIF"),
        Hostile("broken-header-crc.png", lambda: png[:29] + b"\0\0\0\0" + png[33:],
                r"starts like a PNG"),
        Hostile("chunk-claims-2-GB.png",
                lambda: png[:33] + struct.pack(">I", 0x7FFFFFFF) + b"tEXt" + b"abc", TRUNCATED),
        # bombs: headers claiming sizes no one could decode
        Hostile("bomb-100k-by-100k.png", lambda: png_header(100_000, 100_000), BOMB),
        Hostile("bomb-65535-by-65535.jpg",
                lambda: jpeg_claiming(encode(small, "JPEG"), 65535, 65535), BOMB),
        Hostile("bomb-100k-by-100k.tif", lambda: tiff_claiming(100_000, 100_000), BOMB),
        Hostile("bomb-text-chunk.png", lambda: png_with_chunk(
            png, png_chunk(b"zTXt", b"Comment\0\0" + inflating())), r"metadata .* inflates"),
        Hostile("bomb-colour-profile.png", lambda: png_with_chunk(
            png, png_chunk(b"iCCP", b"icc\0\0" + inflating())), r"metadata .* inflates"),
        # odd but whole: indexed
        Hostile("huge-plain-text-chunk.png", lambda: png_with_chunk(
            png, png_chunk(b"iTXt", b"Comment\0\0\0\0\0" + b"x" * (8 << 20))), INDEXED),
        Hostile("huge-exif-segments.jpg", lambda: jpeg_with_segments(
            encode(small.rotate(90), "JPEG"), segments(0xE1, lambda i: b"Exif\0\0")), INDEXED),
        Hostile("huge-colour-profile.jpg", lambda: jpeg_with_segments(
            encode(small.rotate(180), "JPEG"),
            segments(0xE2, lambda i: b"ICC_PROFILE\0" + bytes([i + 1, 100]))), INDEXED),
        Hostile("looping-exif.jpg", lambda: jpeg_with_looping_exif(small.rotate(270)), INDEXED),
        Hostile("looping-ifd.tif", tiff_with_looping_ifd, INDEXED),
        Hostile("3000-frames.gif", lambda: gif_with_frames(3000, seed), INDEXED),
        Hostile("really-a-png.jpg", lambda: encode(picture.resize((320, 240)), "PNG"), INDEXED),
        Hostile("really-a-jpeg.png", lambda: encode(picture.resize((300, 220)), "JPEG"),
                INDEXED),
        Hostile("really-a-webp.tif", lambda: encode(picture.resize((280, 200)), "WEBP"),
                INDEXED),
        # pixel floods: within the 250 MP limit, a few MB that decode to ~1 GB (16-bit
        # grey 225 MP, RGBA 100 MP); both must decode within bounded memory
        Hostile("flood-16-bit-grey.png", lambda: pixel_flood_png(
            15_000, 15_000, colour_type=0, bit_depth=16, seed=seed), INDEXED),
        Hostile("flood-rgba.png", lambda: pixel_flood_png(
            10_000, 10_000, colour_type=6, seed=seed + 1), INDEXED),
    ]


def make_special_files(folder: Path, photo: Path) -> list[Special]:
    """FIFOs, a device node, a socket, symlinks that loop or dangle, an unreadable file
    and folder, a sparse 100 GB file and names that are hard to handle, made in
    ``folder`` (to be renamed into a watched folder afterwards: they appear at once).

    The device node is made only where ``mknod`` is allowed (root); the unreadable
    ones are unreadable only to a process without CAP_DAC_OVERRIDE."""
    made: list[Special] = []
    for name in ("fifo.jpg", "fifo-no-extension"):
        os.mkfifo(folder / name)
        made.append(Special(name, "ignored"))
    try:  # /dev/null's numbers: reading it would give 0 bytes, a write would vanish
        os.mknod(folder / "device.jpg", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        made.append(Special("device.jpg", "ignored"))
    except OSError:  # not root, or no CAP_MKNOD in this container
        pass
    short = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))  # socket paths: < 108 bytes
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(short / "s"))
    os.rename(short / "s", folder / "socket.jpg")
    short.rmdir()
    (folder / "loop").symlink_to(".", target_is_directory=True)
    (folder / "self.jpg").symlink_to("self.jpg")
    (folder / "dangling.jpg").symlink_to("gone.jpg")
    (folder / "zeros.jpg").symlink_to("/dev/zero")
    made += [Special(name, "ignored") for name in ("socket.jpg", "loop", "self.jpg",
                                                    "dangling.jpg", "zeros.jpg")]

    (folder / "locked.jpg").write_bytes(photo.read_bytes())
    (folder / "locked.jpg").chmod(0)
    made.append(Special("locked.jpg", "failed", r"cannot open: Permission denied",
                        "locked.jpg"))
    (folder / "locked-folder").mkdir()
    (folder / "locked-folder/inside.jpg").write_bytes(photo.read_bytes())
    (folder / "locked-folder").chmod(0)
    made.append(Special("locked-folder/inside.jpg", "ignored"))

    try:  # 100 GB of zeros that take no disk: hashing it first would take minutes
        with open(folder / "sparse-100-GB.jpg", "wb") as sparse:
            sparse.truncate(100 << 30)
        made.append(Special("sparse-100-GB.jpg", "failed", r"not a recognised image format",
                            "sparse-100-GB.jpg"))
    except OSError:  # a file system without sparse files, or with a smaller size limit
        (folder / "sparse-100-GB.jpg").unlink(missing_ok=True)

    (folder / "two\nlines.jpg").write_bytes(photo.read_bytes())
    made.append(Special("two\nlines.jpg", "indexed", stored_as="two\nlines.jpg"))
    not_utf8 = os.fsdecode(b"caf\xe9-\xff.jpg")
    (folder / not_utf8).write_bytes(photo.read_bytes())
    made.append(Special(not_utf8, "indexed", stored_as=not_utf8))  # any name is a name
    return made


def make_empty_tree(root: Path, files: int = 100_000, depth: int = 10) -> int:
    """``files`` empty ``.jpg`` files spread over a tree of two-way folders ``depth``
    levels deep (2**depth leaves); returns the number of folders made."""
    leaves = [str(root)]
    for level in range(depth):
        leaves = [os.path.join(parent, f"l{level}-{i}") for parent in leaves for i in (0, 1)]
    for leaf in leaves:
        os.makedirs(leaf)
    for n in range(files):
        with open(os.path.join(leaves[n % len(leaves)], f"empty-{n:06d}.jpg"), "wb"):
            pass
    return 2 ** (depth + 1) - 2
