"""The freedesktop thumbnail cache: shared with file managers, valid only while it is true."""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat
from PIL.PngImagePlugin import PngInfo

from findsimilar import __version__, thumbnails
from findsimilar.thumbnails import png_text, thumbnail, thumbnail_path, thumbnail_uri

from ..conftest import REPO, shared

FAIL_DIR = f"fail/findsimilar-{__version__}"


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own $XDG_CACHE_HOME; returns its thumbnails folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "thumbnails"


def copy(rel: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(shared(rel), dest)
    return dest


def whole_seconds(path: Path) -> str:
    return str(path.stat().st_mtime_ns // 1_000_000_000)


def image_diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0..255, after bringing b to a's size."""
    b = b.convert("RGB").resize(a.size)
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b)).mean) / 3


# --- the URI and the cache file name --------------------------------------------------------


def test_uri_and_cache_name_match_the_spec_example(cache: Path) -> None:
    # Example 1 of the Thumbnail Managing Standard ("Thumbnail Saving").
    uri = "file:///home/jens/photos/me.png"
    md5 = "c6ee772d9e49320e97ec29a7eb5b1697"
    assert hashlib.md5(uri.encode()).hexdigest() == md5
    assert thumbnail_uri("/home/jens/photos/me.png") == uri
    assert thumbnail_path("/home/jens/photos/me.png", "normal") == cache / "normal" / f"{md5}.png"


def test_uri_of_a_relative_path_is_absolute(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert thumbnail_uri("sub/../a b.jpg") == "file://" + str(tmp_path) + "/a%20b.jpg"


TRICKY_NAMES = [
    "/home/u/Photos/Summer 2024/IMG_0001 (1).jpg",
    "/home/u/ünïcode ☃/日本.heic",
    "/home/u/a <b> & \"c\" 'd' #1 ?x=1 %41 ;[]{}|\\^`.png",
    "/home/u/line\nbreak\ttab.jpg",
    "/home/u/" + "".join(chr(c) for c in range(32, 127)),
]
# What GLib's g_filename_to_uri returns for the last name above (checked against libglib).
PRINTABLE_ASCII_URI = (
    "file:///home/u/%20!%22%23$%25&'()*+,-./0123456789:%3B%3C=%3E%3F@ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "%5B%5C%5D%5E_%60abcdefghijklmnopqrstuvwxyz%7B%7C%7D~")


def test_uri_escapes_names_as_glib_does_so_caches_are_shared() -> None:
    assert thumbnail_uri(TRICKY_NAMES[-1]) == PRINTABLE_ASCII_URI
    assert thumbnail_uri(TRICKY_NAMES[1]) == (
        "file:///home/u/%C3%BCn%C3%AFcode%20%E2%98%83/%E6%97%A5%E6%9C%AC.heic")
    # A name that is not UTF-8 keeps its bytes (Python holds them as surrogate escapes).
    assert thumbnail_uri(os.fsdecode(b"/home/u/caf\xe9.jpg")) == "file:///home/u/caf%E9.jpg"


def glib_filename_to_uri() -> object:
    name = ctypes.util.find_library("glib-2.0")
    if name is None:
        pytest.skip("libglib-2.0 not installed: cannot compare with g_filename_to_uri")
    glib = ctypes.CDLL(name)
    glib.g_filename_to_uri.restype = ctypes.c_void_p
    glib.g_filename_to_uri.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    glib.g_free.argtypes = [ctypes.c_void_p]

    def to_uri(path: bytes) -> str:
        pointer = glib.g_filename_to_uri(path, None, None)
        try:
            return ctypes.string_at(pointer).decode("ascii")
        finally:
            glib.g_free(pointer)

    return to_uri


def test_uri_is_byte_for_byte_what_libglib_makes() -> None:
    to_uri = glib_filename_to_uri()
    names = [*TRICKY_NAMES, os.fsdecode(b"/home/u/caf\xe9 \xff.jpg")]
    for name in names:
        assert thumbnail_uri(name) == to_uri(os.fsencode(name)), repr(name)  # type: ignore[operator]


# --- making and reusing thumbnails ----------------------------------------------------------


def test_makes_a_large_thumbnail_with_every_key_the_spec_names(tmp_path: Path,
                                                                cache: Path) -> None:
    photo = copy("mate/Storm.jpg", tmp_path / "photos" / "Storm.jpg")  # 1920x1280
    result = thumbnail(photo)
    assert result == thumbnail_path(photo, "large") and result.parent == cache / "large"
    with Image.open(result) as im:
        assert im.format == "PNG" and im.size == (256, 171)
    assert png_text(result) == {
        "Thumb::URI": f"file://{photo}", "Thumb::MTime": whole_seconds(photo),
        "Thumb::Size": str(photo.stat().st_size), "Thumb::Mimetype": "image/jpeg",
        "Thumb::Image::Width": "1920", "Thumb::Image::Height": "1280",
        "Software": f"findsimilar {__version__}",
    }


def test_cache_folders_are_private_and_thumbnails_owner_only(tmp_path: Path, cache: Path) -> None:
    result = thumbnail(copy("opencv/fruits.jpg", tmp_path / "fruits.jpg"))
    assert result is not None
    for folder in (cache.parent, cache, cache / "large"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(result.stat().st_mode) == 0o600
    assert os.listdir(cache / "large") == [result.name]  # no temp file left behind


@pytest.mark.parametrize(("size", "edge"), [("normal", 128), ("large", 256), ("x-large", 512),
                                            ("xx-large", 1024)])
def test_each_size_fits_its_box(tmp_path: Path, cache: Path, size: str, edge: int) -> None:
    photo = copy("mate/Storm.jpg", tmp_path / "Storm.jpg")
    result = thumbnail(photo, size)  # type: ignore[arg-type]
    assert result is not None and result.parent == cache / size
    with Image.open(result) as im:
        assert max(im.size) == edge


def test_small_pictures_are_not_enlarged(tmp_path: Path) -> None:
    result = thumbnail(copy("imagededup/formats/copyleft.tiff", tmp_path / "c.tiff"), "x-large")
    assert result is not None
    with Image.open(result) as im:
        assert im.size == (220, 220)


def test_valid_thumbnail_is_reused_without_rewriting(tmp_path: Path) -> None:
    photo = copy("opencv/fruits.jpg", tmp_path / "fruits.jpg")
    first = thumbnail(photo)
    assert first is not None
    before = first.stat()
    assert thumbnail(photo) == first
    after = first.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_thumbnail_made_by_another_program_is_reused(tmp_path: Path) -> None:
    """GNOME, KDE and Xfce write the same cache; their text chunks may be compressed."""
    photo = copy("opencv/fruits.jpg", tmp_path / "fruits.jpg")
    theirs = thumbnail_path(photo)
    theirs.parent.mkdir(parents=True)
    info = PngInfo()
    info.add_text("Thumb::URI", thumbnail_uri(photo), zip=True)  # zTXt
    info.add_itxt("Thumb::MTime", whole_seconds(photo), zip=True)  # compressed iTXt
    info.add_text("Software", "GNOME::ThumbnailFactory")
    Image.new("RGB", (10, 10), (255, 0, 0)).save(theirs, pnginfo=info)
    assert thumbnail(photo) == theirs
    with Image.open(theirs) as im:
        assert im.size == (10, 10)  # theirs, untouched


def test_changed_file_gets_a_new_thumbnail(tmp_path: Path) -> None:
    photo = copy("opencv/fruits.jpg", tmp_path / "photo.jpg")
    old = thumbnail(photo)
    assert old is not None
    old_pixels = Image.open(old).convert("RGB")
    shutil.copy(shared("opencv/baboon.jpg"), photo)
    os.utime(photo, (photo.stat().st_atime, photo.stat().st_mtime + 100))
    new = thumbnail(photo)
    assert new == old
    assert png_text(new)["Thumb::MTime"] == whole_seconds(photo)  # type: ignore[index]
    assert image_diff(old_pixels, Image.open(new)) > 20


def test_different_size_with_the_same_mtime_is_not_trusted(tmp_path: Path) -> None:
    """A copy tool that keeps the mtime (cp -p, rsync -t) must not keep the old picture."""
    photo = copy("opencv/fruits.jpg", tmp_path / "photo.jpg")
    result = thumbnail(photo)
    assert result is not None
    mtime = photo.stat().st_mtime_ns
    shutil.copy(shared("opencv/baboon.jpg"), photo)
    os.utime(photo, ns=(mtime, mtime))
    assert thumbnail(photo) == result
    assert png_text(result)["Thumb::Size"] == str(photo.stat().st_size)  # type: ignore[index]
    assert image_diff(Image.open(result), Image.open(shared("opencv/baboon.jpg"))) < 10


def test_torn_thumbnail_is_made_again(tmp_path: Path) -> None:
    photo = copy("opencv/fruits.jpg", tmp_path / "fruits.jpg")
    result = thumbnail(photo)
    assert result is not None
    data = result.read_bytes()
    result.write_bytes(data[: len(data) // 2])  # keys intact, pixels and IEND cut off
    assert png_text(result) is None
    assert thumbnail(photo) == result
    assert result.read_bytes().endswith(b"IEND\xaeB`\x82")


# --- pictures that are hard to thumbnail ----------------------------------------------------


def test_corrupt_file_gives_none_and_a_fail_marker(tmp_path: Path, cache: Path) -> None:
    broken = copy("imagededup/variants/ukbench09268_corrupt.jpg", tmp_path / "broken.jpg")
    assert thumbnail(broken) is None
    marker = cache / FAIL_DIR / thumbnail_path(broken).name
    text = png_text(marker)
    assert text is not None
    assert text["Thumb::URI"] == thumbnail_uri(broken)
    assert text["Thumb::MTime"] == whole_seconds(broken)
    assert not (cache / "large").exists()
    assert stat.S_IMODE(marker.stat().st_mode) == 0o600


def test_fail_marker_spares_retries_until_the_file_changes(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    broken = copy("imagededup/variants/ukbench09268_corrupt.jpg", tmp_path / "photo.jpg")
    assert thumbnail(broken) is None

    def must_not_decode(*args: object) -> None:
        raise AssertionError("decoded although a fresh fail marker exists")

    with monkeypatch.context() as patch:
        patch.setattr(thumbnails, "_render", must_not_decode)
        assert thumbnail(broken) is None
    shutil.copy(shared("opencv/fruits.jpg"), broken)  # the user repaired it
    os.utime(broken, (broken.stat().st_atime, broken.stat().st_mtime + 10))
    assert thumbnail(broken) is not None


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_without_decoding(tmp_path: Path, cache: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(40_000, 40_000))  # 1.6 gigapixels declared
    assert thumbnail(bomb) is None
    assert (cache / FAIL_DIR / thumbnail_path(bomb).name).exists()


def test_exif_rotated_jpeg_gives_an_upright_thumbnail(tmp_path: Path) -> None:
    upright = Image.open(shared("mate/Storm.jpg")).convert("RGB")  # landscape 1920x1280
    # Cameras store the sensor's pixels and an orientation tag: 6 = turn 90° clockwise.
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "portrait.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(photo, quality=92, exif=exif)
    result = thumbnail(photo)
    assert result is not None
    small = Image.open(result)
    assert small.size == (256, 171)
    assert png_text(result)["Thumb::Image::Width"] == "1920"  # type: ignore[index]
    assert image_diff(small, upright) < 8
    assert image_diff(small, upright.transpose(Image.Transpose.ROTATE_180)) > 20


def test_alpha_channel_is_kept(tmp_path: Path) -> None:
    photo = Image.open(shared("opencv/fruits.jpg")).convert("RGBA")  # 512x480
    alpha = Image.new("L", photo.size, 255)
    alpha.paste(0, (0, 0, photo.width // 2, photo.height))  # left half transparent
    photo.putalpha(alpha)
    photo.save(tmp_path / "cut-out.png")
    result = thumbnail(tmp_path / "cut-out.png")
    assert result is not None
    with Image.open(result) as im:
        assert im.mode == "RGBA"
        alpha = im.getchannel("A")
        assert alpha.getpixel((10, 100)) == 0 and alpha.getpixel((im.width - 10, 100)) == 255


def test_heic_and_wrong_extensions_are_read_by_content(tmp_path: Path) -> None:
    pillow_heif.register_heif_opener()
    source = ImageOps.exif_transpose(Image.open(shared("opencv/fruits.jpg")))
    heic = tmp_path / "IMG_0001.heic"
    pillow_heif.from_pillow(source).save(heic, quality=80)
    disguised = copy("imagededup/formats/ukbench09380.svg", tmp_path / "photo.svg")  # a JPEG
    for path, mime in ((heic, "image/heic"), (disguised, "image/jpeg")):
        result = thumbnail(path)
        assert result is not None, path
        assert png_text(result)["Thumb::Mimetype"] == mime  # type: ignore[index]
    assert image_diff(Image.open(thumbnail_path(heic)), source) < 8


def test_sixteen_bit_greyscale_is_not_washed_out(tmp_path: Path) -> None:
    """12-bit sensor data in a 16-bit PNG: clipping to 8 bits would make it all white."""
    ramp = np.tile(np.linspace(0, 4095, 300, dtype=np.uint16), (200, 1))
    photo = tmp_path / "raw16.png"
    Image.fromarray(ramp).save(photo)
    result = thumbnail(photo)
    assert result is not None
    assert Image.open(result).convert("L").getextrema() == (0, 255)


def test_path_with_spaces_unicode_and_markup(tmp_path: Path, cache: Path) -> None:
    photo = copy("opencv/fruits.jpg", tmp_path / "my photos ☃" / "Ünïcode (1) & <x> #2.jpg")
    result = thumbnail(photo)
    uri = thumbnail_uri(photo)
    assert uri.endswith("/my%20photos%20%E2%98%83/%C3%9Cn%C3%AFcode%20(1)%20&%20%3Cx%3E%20%232.jpg")
    assert result == cache / "large" / (hashlib.md5(uri.encode()).hexdigest() + ".png")
    assert png_text(result)["Thumb::URI"] == uri  # type: ignore[index]


# --- what is never done ---------------------------------------------------------------------


def test_thumbnails_are_never_made_of_the_cache_itself(tmp_path: Path, cache: Path) -> None:
    result = thumbnail(copy("opencv/fruits.jpg", tmp_path / "fruits.jpg"))
    assert result is not None
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    assert thumbnail(result) is None
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before


def test_missing_or_unreadable_files_get_nothing(tmp_path: Path, cache: Path) -> None:
    assert thumbnail(tmp_path / "gone.jpg") is None
    assert thumbnail(tmp_path) is None  # a folder
    assert thumbnail(f"{tmp_path}/nul\0byte.jpg") is None  # no such name can exist
    assert not cache.exists()
    with pytest.raises(ValueError, match="unknown thumbnail size"):
        thumbnail(tmp_path / "gone.jpg", "huge")  # type: ignore[arg-type]


def test_unwritable_cache_gives_none_instead_of_crashing(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a file").write_text("not a folder")  # unwritable even for root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a file" / "cache"))
    assert thumbnail(copy("opencv/fruits.jpg", tmp_path / "fruits.jpg")) is None


def test_importing_the_module_does_not_import_pillow() -> None:
    """The thin CLI imports this module; Pillow may load only when a thumbnail is made."""
    code = ("import sys, findsimilar.thumbnails, findsimilar.cli.pages.report; "
            "sys.exit('PIL' in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
