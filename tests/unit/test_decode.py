"""decode_for_model: any picture a user keeps becomes the right small RGB array, or a reason."""

from __future__ import annotations

import io
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from findsimilar.daemon.model.decode import (
    DecodedImage,
    decode_for_model,
    probe_format,
    register_plugins,
)
from findsimilar.errors import ImageDecodeError
from tests.conftest import SHARED, shared

PHOTOS = SHARED
register_plugins()  # lets Pillow write HEIC test files, whichever test runs first
SIZE = 32
LIMIT = 50_000_000  # pixels; generous for everything except the bomb tests
RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)

# (Pillow format name when saving, options, format name detected when reading)
FORMATS = [
    ("JPEG", {"quality": 95}, "JPEG"),
    ("PNG", {}, "PNG"),
    ("WEBP", {"quality": 95}, "WEBP"),
    ("WEBP", {"lossless": True}, "WEBP"),
    ("TIFF", {}, "TIFF"),
    ("TIFF", {"compression": "tiff_lzw"}, "TIFF"),
    ("BMP", {}, "BMP"),
    ("PPM", {}, "PPM"),
    ("GIF", {}, "GIF"),
    ("AVIF", {"quality": 95}, "AVIF"),
    ("HEIF", {"quality": 95}, "HEIF"),
]
FORMAT_IDS = [f"{name}-{'-'.join(map(str, opts.values())) or 'default'}"
              for name, opts, _ in FORMATS]

# How a camera stores an upright scene when it writes each orientation tag.
STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# -- helpers -------------------------------------------------------------------

def red_blue_split(width: int = 64, height: int = 48) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2:] = BLUE
    return Image.fromarray(pixels)


def four_colours(width: int = 80, height: int = 60) -> Image.Image:
    """Red, green / blue, yellow quadrants: every rotation and flip looks different."""
    pixels = np.zeros((height, width, 3), np.uint8)
    h, w = height // 2, width // 2
    pixels[:h, :w], pixels[:h, w:] = (255, 0, 0), (0, 255, 0)
    pixels[h:, :w], pixels[h:, w:] = (0, 0, 255), (255, 255, 0)
    return Image.fromarray(pixels)


def encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(source: bytes | Path, *, size: int = SIZE, max_pixels: int = LIMIT) -> DecodedImage:
    return decode_for_model(source, size, max_pixels=max_pixels)


def left_half(decoded: DecodedImage) -> np.ndarray:
    """Mean colour of the left half, keeping clear of the blurred middle."""
    n = decoded.pixels.shape[1]
    return decoded.pixels[:, : n // 2 - 2].reshape(-1, 3).mean(axis=0)


def right_half(decoded: DecodedImage) -> np.ndarray:
    n = decoded.pixels.shape[1]
    return decoded.pixels[:, n // 2 + 2:].reshape(-1, 3).mean(axis=0)


def assert_colour(actual: np.ndarray, expected: tuple[int, int, int], tolerance: int = 12) -> None:
    assert np.abs(actual - np.array(expected)).max() <= tolerance, (actual, expected)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming width x height, with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def with_orientation(orientation: int) -> bytes:
    """An EXIF block carrying only the orientation tag (bytes: pillow-heif ignores Exif objects)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# -- every format, detected from content -----------------------------------------

@pytest.mark.parametrize(("fmt", "options", "detected"), FORMATS, ids=FORMAT_IDS)
def test_every_format_comes_back_with_red_left_and_blue_right(fmt, options, detected):
    decoded = decode(encode(red_blue_split(), fmt, **options))

    assert decoded.format == detected
    assert (decoded.width, decoded.height) == (64, 48)
    assert decoded.pixels.shape == (SIZE, SIZE, 3)
    assert decoded.pixels.dtype == np.uint8
    assert_colour(left_half(decoded), RED)
    assert_colour(right_half(decoded), BLUE)


@pytest.mark.parametrize(("fmt", "options", "detected"), FORMATS, ids=FORMAT_IDS)
def test_format_is_detected_from_content_even_under_a_wrong_extension(
        tmp_path, fmt, options, detected):
    wrong_name = tmp_path / ("holiday.png" if detected != "PNG" else "holiday.jpg")
    wrong_name.write_bytes(encode(red_blue_split(), fmt, **options))

    decoded = decode(wrong_name)

    assert decoded.format == detected
    assert probe_format(wrong_name) == detected
    assert_colour(left_half(decoded), RED)
    assert_colour(right_half(decoded), BLUE)


def test_real_jpegs_with_wrong_extensions_decode_as_jpeg(tmp_path):
    for name in ("ukbench09380.bmp", "ukbench09380.png", "ukbench09380.svg"):
        copy = shutil.copy(PHOTOS / "imagededup/formats" / name, tmp_path / name)
        decoded = decode(Path(copy))
        assert decoded.format == "JPEG", name
        assert (decoded.width, decoded.height) == (640, 480)


def test_the_requested_size_is_what_comes_back():
    decoded = decode(encode(red_blue_split(300, 200), "PNG"), size=224)

    assert decoded.pixels.shape == (224, 224, 3)
    assert (decoded.width, decoded.height) == (300, 200)


# -- EXIF orientation ------------------------------------------------------------

@pytest.mark.parametrize("orientation", [6, 3, 8, 2, 4, 5, 7])
def test_jpeg_stored_turned_with_orientation_tag_decodes_upright(orientation):
    upright = four_colours()
    stored = upright.transpose(STORED_AS[orientation])
    expected = decode(encode(upright, "JPEG", quality=95))

    decoded = decode(encode(stored, "JPEG", quality=95, exif=with_orientation(orientation)))

    assert (decoded.width, decoded.height) == (80, 60)
    assert np.abs(decoded.pixels.astype(int) - expected.pixels).max() <= 16


@pytest.mark.parametrize(("fmt", "options"), [
    ("PNG", {}), ("WEBP", {"quality": 95}), ("TIFF", {}), ("AVIF", {"quality": 95}),
    ("HEIF", {"quality": 95}),
])
@pytest.mark.parametrize("orientation", [6, 3, 8])
def test_other_formats_stored_turned_with_orientation_tag_decode_upright(
        fmt, options, orientation):
    upright = four_colours()
    stored = upright.transpose(STORED_AS[orientation])
    expected = decode(encode(upright, fmt, **options))

    decoded = decode(encode(stored, fmt, exif=with_orientation(orientation), **options))

    assert (decoded.width, decoded.height) == (80, 60)
    assert np.abs(decoded.pixels.astype(int) - expected.pixels).max() <= 16


def test_real_camera_photo_with_orientation_6_decodes_as_portrait():
    photo = PHOTOS / "imagededup/base/ukbench09268.jpg"  # stored 640x480, tagged 6
    reference = ImageOps.exif_transpose(Image.open(photo)).convert("RGB")
    expected = np.asarray(reference.resize((SIZE, SIZE), Image.Resampling.BILINEAR))

    decoded = decode(photo)

    assert (decoded.width, decoded.height) == (480, 640)
    assert np.abs(decoded.pixels.astype(int) - expected).mean() < 8


def test_damaged_orientation_value_is_ignored_not_fatal():
    decoded = decode(encode(red_blue_split(), "JPEG", exif=with_orientation(42)))

    assert (decoded.width, decoded.height) == (64, 48)
    assert_colour(left_half(decoded), RED)


# -- transparency and unusual pixel modes ----------------------------------------------

def half_transparent_red() -> Image.Image:
    pixels = np.zeros((40, 40, 4), np.uint8)
    pixels[:, :20] = (255, 0, 0, 255)
    pixels[:, 20:] = (0, 0, 0, 0)  # transparent black: must not come out black
    return Image.fromarray(pixels, "RGBA")


@pytest.mark.parametrize(("fmt", "options"), [("PNG", {}), ("WEBP", {"lossless": True}),
                                               ("TIFF", {})])
def test_transparent_areas_become_white(fmt, options):
    decoded = decode(encode(half_transparent_red(), fmt, **options))

    assert_colour(left_half(decoded), RED)
    assert_colour(right_half(decoded), WHITE)


def test_transparent_areas_of_greyscale_with_alpha_become_white():
    decoded = decode(encode(half_transparent_red().convert("LA"), "PNG"))

    assert_colour(left_half(decoded), (76, 76, 76))  # red as grey
    assert_colour(right_half(decoded), WHITE)


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_picture_with_a_transparent_colour_shows_white_there(fmt):
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([255, 0, 0, 0, 0, 0] + [0] * 762)
    palette.paste(1, (20, 0, 40, 40))

    decoded = decode(encode(palette, fmt, transparency=1))

    assert_colour(left_half(decoded), RED)
    assert_colour(right_half(decoded), WHITE)


def test_rgb_png_with_a_transparent_colour_key_shows_white_there():
    rgb = half_transparent_red().convert("RGB")  # right half black

    decoded = decode(encode(rgb, "PNG", transparency=(0, 0, 0)))

    assert_colour(left_half(decoded), RED)
    assert_colour(right_half(decoded), WHITE)


def test_real_png_with_alpha_channel_decodes():
    decoded = decode(PHOTOS / "imagededup/formats/alpha_channel_image.png")

    assert decoded.format == "PNG"
    assert (decoded.width, decoded.height) == (640, 480)


def test_cmyk_jpeg_keeps_its_colours():
    data = encode(red_blue_split().convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"

    decoded = decode(data)

    assert decoded.format == "JPEG"
    assert_colour(left_half(decoded), RED, tolerance=20)
    assert_colour(right_half(decoded), BLUE, tolerance=20)


def sixteen_bit_halves(left: int, right: int) -> Image.Image:
    values = np.zeros((40, 40), np.uint16)
    values[:, :20], values[:, 20:] = left, right
    return Image.fromarray(values)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_above_255_keeps_its_contrast(fmt):
    data = encode(sixteen_bit_halves(1000, 60000), fmt)
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")

    decoded = decode(data)

    # Clipping would make both halves white; scaling keeps dark and bright apart.
    assert left_half(decoded).max() < 20
    assert right_half(decoded).min() > 220


def test_16_bit_greyscale_full_range_maps_to_black_and_white():
    decoded = decode(encode(sixteen_bit_halves(0, 65535), "PNG"))

    assert_colour(left_half(decoded), (0, 0, 0), tolerance=1)
    assert_colour(right_half(decoded), WHITE, tolerance=1)


def test_32_bit_integer_tiff_is_scaled_not_clipped():
    values = np.zeros((40, 40), np.int32)
    values[:, :20], values[:, 20:] = -70000, 900000
    data = encode(Image.fromarray(values, "I"), "TIFF")

    decoded = decode(data)

    assert_colour(left_half(decoded), (0, 0, 0), tolerance=1)
    assert_colour(right_half(decoded), WHITE, tolerance=1)


def test_float_tiff_is_stretched_between_its_darkest_and_brightest_values():
    values = np.zeros((40, 40), np.float32)
    values[:, :20], values[:, 20:] = -3.5, 1e5
    values[0, 0] = np.nan  # one broken sample must not spoil the picture
    data = encode(Image.fromarray(values, "F"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "F"

    decoded = decode(data)

    assert decoded.format == "TIFF"
    assert_colour(left_half(decoded), (0, 0, 0), tolerance=10)
    assert_colour(right_half(decoded), WHITE, tolerance=1)


def test_float_tiff_without_any_finite_value_is_refused_with_a_reason():
    data = encode(Image.fromarray(np.full((8, 8), np.nan, np.float32), "F"), "TIFF")

    with pytest.raises(ImageDecodeError, match="no finite pixel values"):
        decode(data)


def test_one_bit_pbm_comes_back_black_and_white():
    bilevel = Image.new("1", (40, 40), 0)
    bilevel.paste(1, (20, 0, 40, 40))
    data = encode(bilevel, "PPM")
    assert data.startswith(b"P4")

    decoded = decode(data)

    assert decoded.format == "PPM"
    assert_colour(left_half(decoded), (0, 0, 0), tolerance=0)
    assert_colour(right_half(decoded), WHITE, tolerance=0)


def test_greyscale_pictures_become_grey_rgb():
    for fmt in ("PNG", "JPEG", "PPM"):
        decoded = decode(encode(Image.new("L", (40, 30), 77), fmt))
        assert_colour(decoded.pixels.reshape(-1, 3).mean(axis=0), (77, 77, 77), tolerance=2)


@pytest.mark.parametrize("name", ["baboon.pgm", "marbles.pbm", "copyleft.tiff", "giphy.gif"])
def test_real_odd_format_files_decode(name):
    decoded = decode(PHOTOS / "imagededup/formats" / name)

    assert decoded.pixels.shape == (SIZE, SIZE, 3)
    assert decoded.pixels.std() > 5  # a real picture, not a flat fill


def test_animated_gif_uses_its_first_frame():
    frames = [Image.new("RGB", (40, 40), colour) for colour in (RED, (0, 255, 0), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3

    decoded = decode(data)

    assert decoded.format == "GIF"
    assert_colour(decoded.pixels.reshape(-1, 3).mean(axis=0), RED, tolerance=2)


# -- big JPEGs -------------------------------------------------------------------

def test_big_jpeg_reports_its_original_size_not_the_draft_size():
    data = encode(red_blue_split(4000, 3000), "JPEG", quality=90)

    decoded = decode(data)

    assert (decoded.width, decoded.height) == (4000, 3000)
    assert_colour(left_half(decoded), RED)
    assert_colour(right_half(decoded), BLUE)


def test_big_jpeg_turned_by_its_tag_reports_the_upright_size():
    stored = red_blue_split(4000, 3000).transpose(STORED_AS[6])

    decoded = decode(encode(stored, "JPEG", quality=90, exif=with_orientation(6)))

    assert (decoded.width, decoded.height) == (4000, 3000)
    assert_colour(left_half(decoded), RED)
    assert_colour(right_half(decoded), BLUE)


def test_panorama_under_the_configured_limit_is_not_refused_by_pillows_own_default():
    # 90.25 MP: above Pillow's built-in ~89.5 MP warning, below our 250 MP setting.
    data = encode(Image.new("L", (9500, 9500), 128), "JPEG", quality=90)

    decoded = decode(data, max_pixels=250_000_000)

    assert (decoded.width, decoded.height) == (9500, 9500)


# -- failures come with a reason ---------------------------------------------------

def noisy_picture() -> Image.Image:
    return Image.fromarray(np.random.default_rng(7).integers(0, 256, (200, 200, 3), np.uint8))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.5, 0.9, 100])
def test_truncated_file_is_refused_as_truncated_or_damaged(fmt, keep):
    data = encode(noisy_picture(), fmt)
    cut = data[: int(len(data) * keep) if keep < 1 else keep]

    with pytest.raises(ImageDecodeError, match="truncated or damaged"):
        decode(cut)


def test_truncated_file_on_disk_is_refused_as_truncated(tmp_path):
    photo = tmp_path / "cut.jpg"
    data = (PHOTOS / "imagededup/base/ukbench00120.jpg").read_bytes()
    photo.write_bytes(data[: len(data) // 2])

    with pytest.raises(ImageDecodeError, match="truncated"):
        decode(photo)


def test_real_corrupt_jpeg_is_refused_with_a_reason():
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode(PHOTOS / "imagededup/variants/ukbench09268_corrupt.jpg")


def test_zero_byte_file_is_refused_as_empty(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.touch()

    with pytest.raises(ImageDecodeError, match="empty file"):
        decode(b"")
    with pytest.raises(ImageDecodeError, match="empty file"):
        decode(empty)


def test_text_file_named_jpg_is_refused_as_not_an_image(tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("shopping list: milk, eggs\n")

    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode(notes)
    assert probe_format(notes) is None


def test_missing_file_and_folder_are_refused_with_a_reason(tmp_path):
    with pytest.raises(ImageDecodeError, match="No such file"):
        decode(tmp_path / "gone.jpg")
    with pytest.raises(ImageDecodeError, match="folder"):
        decode(tmp_path)


def test_decompression_bomb_header_is_refused_quickly():
    bomb = png_header_only(100_000, 100_000)  # 10 gigapixels declared in 100 bytes

    started = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode(bomb, max_pixels=250_000_000)
    assert time.perf_counter() - started < 1.0


def test_picture_over_the_configured_limit_is_refused_before_its_pixels_are_read():
    # The pixel data is garbage: a decode attempt would fail as damaged, not as a bomb.
    over_limit = png_header_only(2000, 2000)

    with pytest.raises(ImageDecodeError, match=r"decompression bomb: 2000x2000 = 4 MP"):
        decode(over_limit, max_pixels=1_000_000)


def test_picture_at_the_limit_is_accepted():
    decoded = decode(encode(red_blue_split(100, 100), "PNG"), max_pixels=100 * 100)

    assert (decoded.width, decoded.height) == (100, 100)


def test_solid_bars_are_not_counted_as_picture(tmp_path):
    from findsimilar.daemon.model.decode import content_fraction

    from ..photo_edits import apply_edit

    original = shared("opencv/fruits.jpg")
    boxed = apply_edit("letterbox border", original, tmp_path / "boxed")
    plain = decode_for_model(original, 224, max_pixels=10**9)
    bars = decode_for_model(boxed, 224, max_pixels=10**9)
    assert plain.content == (1.0, 1.0)
    # fruits.jpg is 512x480 in a 512x588 frame: 82% of the height is picture.
    assert bars.content[0] == 1.0 and abs(bars.content[1] - 480 / 588) < 0.03
    assert content_fraction(np.zeros((50, 50, 3), np.uint8)) == (0.4, 0.4)  # capped at 30%
