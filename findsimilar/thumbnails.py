"""The freedesktop thumbnail cache: reuse a valid shared thumbnail, or make one.

Follows the Thumbnail Managing Standard (specifications.freedesktop.org/thumbnail-spec),
so thumbnails made here are reused by file managers and image viewers, and theirs by us:

* ``$XDG_CACHE_HOME/thumbnails/<size>/<md5 of the file URI>.png``, where the URI is
  the one GLib's ``g_filename_to_uri`` makes (same escaping, so the md5 names agree).
* A thumbnail is valid only while its ``Thumb::URI`` and ``Thumb::MTime`` (and
  ``Thumb::Size``, if present) still describe the file.
* Pictures that cannot be decoded get a marker in ``fail/findsimilar-<version>/`` so
  that we do not try again until the file changes.

Pillow is imported only when a thumbnail must be made: the thin CLI imports this module.
A camera RAW's thumbnail comes from LibRaw (``daemon/model/raw.py``), imported only then.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import struct
import threading
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, cast
from urllib.parse import quote

from findsimilar import __version__, pillow_plugins
from findsimilar.atomic import atomic_file
from findsimilar.config import cache_home as xdg_cache_home
from findsimilar.safeio import open_regular

if TYPE_CHECKING:
    from PIL import Image, ImageFile

__all__ = ["SIZES", "ThumbnailSize", "cache_dir", "png_text", "thumbnail", "thumbnail_path",
           "thumbnail_uri"]

ThumbnailSize = Literal["normal", "large", "x-large", "xx-large"]
# The largest edge, in pixels, of each size directory.
SIZES: dict[str, int] = {"normal": 128, "large": 256, "x-large": 512, "xx-large": 1024}

# Besides letters, digits and "-._~" (which quote() always keeps), these are the
# characters g_filename_to_uri leaves unescaped in a path. Escaping any of them would
# give a different URI, hence a different md5 name than GNOME, KDE and Xfce use.
_GLIB_PATH_SAFE = "/!$&'()*+,:=@"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")
_SOFTWARE = f"findsimilar {__version__}"
_WARNINGS_LOCK = threading.Lock()
# A RAW's sensor may declare this many pixels (the daemon's default --max-pixels).
_RAW_PIXELS = 250_000_000


def thumbnail_uri(path: str | os.PathLike[str]) -> str:
    """The ``file://`` URI of ``path`` (made absolute, symlinks kept) exactly as GLib
    writes it: the file name's bytes percent-escaped, ``/`` and a few others kept."""
    absolute = os.path.abspath(os.fsencode(path))
    return "file://" + quote(absolute, safe=_GLIB_PATH_SAFE)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/thumbnails``, or ``~/.cache/thumbnails`` (relative values are
    ignored, as the XDG Base Directory spec requires)."""
    return xdg_cache_home() / "thumbnails"


def thumbnail_path(path: str | os.PathLike[str], size: ThumbnailSize = "large") -> Path:
    """Where the cache keeps the ``size`` thumbnail of ``path`` (it may be missing or stale)."""
    _check_size(size)
    return cache_dir() / size / _cache_name(thumbnail_uri(path))


def thumbnail(path: str | os.PathLike[str], size: ThumbnailSize = "large") -> Path | None:
    """A valid cached thumbnail of ``path`` (at most SIZES[size] pixels on a side),
    made and stored first if needed.

    Returns None when no thumbnail can be had: the file is missing, unreadable or
    inside the thumbnail cache itself, it cannot be decoded (a fail marker then
    spares the next caller the attempt until the file changes), or the cache cannot
    be written. Raises ValueError for an unknown ``size``.
    """
    _check_size(size)
    try:
        source = os.path.abspath(path)
        st = os.stat(source)
    except (OSError, ValueError):  # ValueError: a NUL byte, from hand-edited JSON say
        return None
    # The spec: never read or write the cache for a file the user cannot read, and
    # never thumbnail the thumbnails.
    if not stat.S_ISREG(st.st_mode) or not os.access(source, os.R_OK) or _in_cache(source):
        return None
    uri = thumbnail_uri(source)
    target = cache_dir() / size / _cache_name(uri)
    if _describes(target, uri, st):
        return target
    fail = cache_dir() / "fail" / f"findsimilar-{__version__}" / _cache_name(uri)
    if _describes(fail, uri, st):
        return None
    try:
        return _make(source, target, fail, uri, st, SIZES[size])
    except OSError:  # a read-only or full cache: no thumbnail, but no crash either
        return None


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise ValueError(f"unknown thumbnail size {size!r}; expected one of {sorted(SIZES)}")


def _cache_name(uri: str) -> str:
    return hashlib.md5(uri.encode("ascii")).hexdigest() + ".png"


def _in_cache(source: str) -> bool:
    cache = os.path.realpath(cache_dir())
    real = os.path.realpath(source)
    return os.path.commonpath([cache, real]) == cache


def _mtime(st: os.stat_result) -> str:
    # Whole seconds, rounded down like C's time_t st_mtime that other implementations store.
    return str(st.st_mtime_ns // 1_000_000_000)


def _describes(png: Path, uri: str, st: os.stat_result) -> bool:
    """Whether ``png`` is a complete PNG whose Thumb:: keys match the file as it is now."""
    text = png_text(png)
    if text is None or text.get("Thumb::URI") != uri:
        return False
    if text.get("Thumb::MTime", "").strip() != _mtime(st):
        return False
    size = text.get("Thumb::Size")
    return size is None or size.strip() == str(st.st_size)


def png_text(png: str | os.PathLike[str]) -> dict[str, str] | None:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file, or None if it is missing,
    not a PNG, or cut short (no IEND chunk): a torn file is never a valid thumbnail."""
    text: dict[str, str] = {}
    try:
        with os.fdopen(open_regular(png), "rb") as f:  # a FIFO there: no wait
            if f.read(8) != _PNG_SIGNATURE:
                return None
            while len(header := f.read(8)) == 8:
                length, kind = struct.unpack(">I4s", header)
                if kind == b"IEND":
                    return text
                if kind in _TEXT_CHUNKS:
                    key, value = _decode_text_chunk(kind, f.read(length))
                    text.setdefault(key, value)
                    f.seek(4, os.SEEK_CUR)  # CRC
                else:  # pixel data: skip without reading
                    f.seek(length + 4, os.SEEK_CUR)
    except (OSError, ValueError, zlib.error):
        return None
    return None


def _decode_text_chunk(kind: bytes, data: bytes) -> tuple[str, str]:
    key, _, rest = data.partition(b"\0")
    if kind == b"tEXt":
        return key.decode("latin-1"), rest.decode("latin-1")
    if kind == b"zTXt":  # one byte of compression method, then zlib data
        return key.decode("latin-1"), zlib.decompress(rest[1:]).decode("latin-1")
    compressed, rest = rest[0], rest[2:]  # iTXt: flag, method, language\0, key\0, text
    _language, _, rest = rest.partition(b"\0")
    _translated, _, value = rest.partition(b"\0")
    if compressed:
        value = zlib.decompress(value)
    return key.decode("latin-1"), value.decode("utf-8")


def _make(source: str, target: Path, fail: Path, uri: str, st: os.stat_result,
          edge: int) -> Path | None:
    # ``st`` was taken before decoding: if the file changes meanwhile, the stored
    # MTime is already stale and the next lookup makes the thumbnail again.
    keys = {"Thumb::URI": uri, "Thumb::MTime": _mtime(st), "Thumb::Size": str(st.st_size)}
    rendered = _render(source, edge)
    if rendered is None:
        from PIL import Image

        _write_png(fail, Image.new("RGBA", (1, 1)), keys)
        return None
    small, extra = rendered
    _write_png(target, small, keys | extra)
    return target


def _render(source: str, edge: int) -> tuple[Image.Image, dict[str, str]] | None:
    """The upright picture shrunk to fit ``edge``×``edge`` plus the Thumb:: keys that
    describe the original, or None if the file cannot be decoded."""
    pillow_plugins.register()  # HEIC, JPEG XL (its size checked before libjxl decodes it)
    if (raw := _render_raw(source, edge)) is not False:
        return raw
    try:
        # safeio: a file swapped for a FIFO or a device since the caller's stat is
        # refused, never waited on or read without end.
        with os.fdopen(open_regular(source), "rb") as fh, _open_quietly(fh) as im:
            return _shrink(im, edge)
    except Exception:  # noqa: BLE001 - bombs and every way a damaged file fails to decode
        return None


def _render_raw(source: str, edge: int) -> tuple[Image.Image, dict[str, str]] | None | bool:
    """A camera RAW's thumbnail through LibRaw (Pillow would show the small thumbnail of
    a TIFF-based RAW's IFD0, or nothing), None if it cannot be decoded; False if
    ``source`` is no RAW. The RAW modules are imported only for a file that is one."""
    from findsimilar.daemon.model.raw_container import inspect

    container = inspect(Path(source))
    if container is None:
        return False
    try:
        from findsimilar.daemon.model.raw import render_raw

        small, width, height = render_raw(Path(source), container, edge, max_pixels=_RAW_PIXELS)
    except Exception:  # noqa: BLE001 - as for any picture: no preview, not a failure
        return None
    return small, {"Thumb::Image::Width": str(width), "Thumb::Image::Height": str(height)}


def _open_quietly(fh: BinaryIO) -> ImageFile.ImageFile:
    from PIL import Image

    # Pillow warns (at open) between its pixel limit and twice that, and raises
    # DecompressionBombError above; a camera's 100 MP picture is no bomb. The lock:
    # catch_warnings swaps process-wide state, and callers may make thumbnails in threads.
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return Image.open(fh)


def _shrink(im: ImageFile.ImageFile, edge: int) -> tuple[Image.Image, dict[str, str]]:
    from PIL import Image, ImageOps

    width, height = im.size
    keys = {"Thumb::Mimetype": im.get_format_mimetype() or ""}
    if im.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale: 10x faster on camera JPEGs
        im.draft(im.mode, (edge, edge))
    im.load()  # the first frame of animations and multi-page files
    try:
        orientation = int(im.getexif().get(0x0112, 1))
        # exif_transpose copies even an upright picture; skip it for those.
        upright = ImageOps.exif_transpose(im) if orientation in range(2, 9) else im
    except Exception:  # noqa: BLE001 - a damaged EXIF block must not cost the preview
        orientation, upright = 1, im
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    small = _eight_bit(upright)
    small.thumbnail((edge, edge), Image.Resampling.LANCZOS)  # never enlarges
    keys |= {"Thumb::Image::Width": str(width), "Thumb::Image::Height": str(height)}
    return small, {k: v for k, v in keys.items() if v}


def _eight_bit(im: Image.Image) -> Image.Image:
    """A mode PNG stores and LANCZOS resizes well: L, LA, RGB or RGBA (alpha kept)."""
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        # Stretch the values actually used to 0..255: clipping would turn most
        # 16-bit pictures white.
        grey = im.convert("F")
        lo, hi = cast("tuple[float, float]", grey.getextrema())
        scale = 255.0 / max(hi - lo, 1e-12)
        return grey.point(lambda v: (v - lo) * scale).convert("L")
    has_alpha = "A" in im.getbands() or "a" in im.mode or "transparency" in im.info
    return im.convert("RGBA" if has_alpha else ("L" if im.mode == "1" else "RGB"))


def _write_png(target: Path, image: Image.Image, keys: dict[str, str]) -> None:
    """Save atomically (temp file in the same folder, then rename) with mode 0600, so
    other programs reading the shared cache never see half a file."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (keys | {"Software": _SOFTWARE}).items():
        info.add_text(key, value)
    _make_private_dirs(target.parent)
    # Not durable (no fsync): this is a cache. A file torn by a crash has no IEND, so
    # png_text() rejects it and the thumbnail is simply made again.
    with atomic_file(target, mode=0o600, durable=False, prefix=".findsimilar-") as f:
        # Level 3: a 256 px photo compresses in ~9 ms instead of ~27 ms at the
        # default 6 (as long as decoding it), for a file ~9% larger.
        image.save(f, "PNG", pnginfo=info, compress_level=3)


def _make_private_dirs(folder: Path) -> None:
    # os.makedirs applies ``mode`` to the last folder only; the spec wants 0700 for
    # every folder of the cache, so create each missing one ourselves.
    missing: list[Path] = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another program made it meanwhile
            path.mkdir(mode=0o700)
