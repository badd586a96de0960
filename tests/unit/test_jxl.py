"""JPEG XL: found by the scanner (name or signature), its header read before decoding,
decoded with the right facts, and every hostile file a reason."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from findsimilar import jxl
from findsimilar.daemon.indexing.scanner import looks_like_image, scan, signature_format
from findsimilar.daemon.model.decode import decode_for_model, decode_preview, probe_format
from findsimilar.errors import ImageDecodeError
from findsimilar.thumbnails import png_text
from tests.conftest import shared
from tests.jxl_samples import codestream_header, jxl_bytes

LIMIT = 50_000_000


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    with Image.open(shared("skimage/coffee.png")) as im:  # 600x400
        return im.convert("RGB")


@pytest.fixture(scope="module")
def samples(coffee: Image.Image) -> dict[str, bytes]:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0112] = "JXLMake", "JXLModel", 6  # 6: turn 90°
    return {"lossy": jxl_bytes(coffee), "lossless": jxl_bytes(coffee, lossless=True),
            "container": jxl_bytes(coffee, container=True),
            "exif": jxl_bytes(coffee, exif=exif.tobytes())}


# -- sniffing ----------------------------------------------------------------------------

def test_codestream_and_container_signatures_are_jpeg_xl(samples):
    assert samples["lossy"][:2] == b"\xff\x0a"
    assert samples["container"][:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n"
    for data in samples.values():
        assert signature_format(data[:16]) == "JPEG XL"
        assert looks_like_image(data[:16])
    assert signature_format(b"\x00\x00\x00\x0cJXL \r\n") is None  # container cut short
    assert signature_format(b"\xff\xd8\xff\xe0") == "JPEG"  # 0xFF then not 0x0A


def test_scanner_finds_jxl_by_name_and_a_misnamed_one_by_its_bytes(tmp_path, samples):
    (tmp_path / "photo.jxl").write_bytes(samples["lossy"])
    (tmp_path / "no extension").write_bytes(samples["container"])
    (tmp_path / "notes.txt").write_text("not a picture")
    found = sorted(f.path for f in scan([str(tmp_path)], explicit_files=False))
    assert found == [str(tmp_path / "no extension"), str(tmp_path / "photo.jxl")]


# -- the header, read before decoding ----------------------------------------------------

@pytest.mark.parametrize("size", [(600, 400), (1, 1), (333, 777), (64, 48), (2048, 1024),
                                  (4000, 9)])
@pytest.mark.parametrize("container", [False, True])
def test_header_gives_the_size_every_way_it_can_be_written(coffee, size, container):
    data = jxl_bytes(coffee.resize(size), container=container)
    header = jxl.read_header(io.BytesIO(data))
    assert (header.width, header.height) == size
    assert header.xyb is True and header.jpeg is False


def test_header_tells_lossy_for_certain_and_lossless_only_as_unknown(samples, coffee):
    assert jxl.lossless(samples["lossy"]) is False  # XYB
    assert jxl.lossless(samples["lossless"]) is None  # original colour space: cannot tell
    # Lossy without XYB exists, which is why the above cannot say True.
    buffer = io.BytesIO()
    coffee.save(buffer, "JXL", quality=60, use_original_profile=True, effort=3)
    assert jxl.read_header(io.BytesIO(buffer.getvalue())).xyb is False


def test_a_jpeg_kept_for_reconstruction_is_a_lossy_origin(tmp_path):
    source = tmp_path / "photo.jpg"
    source.write_bytes(shared("opencv/fruits.jpg").read_bytes())
    buffer = io.BytesIO()
    with Image.open(source) as im, pytest.warns(UserWarning, match="JPEG reconstruction"):
        im.save(buffer, "JXL")
    header = jxl.read_header(io.BytesIO(buffer.getvalue()))
    assert header.jpeg is True
    decoded = decode_for_model(buffer.getvalue(), 32, max_pixels=LIMIT)
    assert decoded.format == "JPEG XL" and decoded.facts.lossless is False


# -- decoding ----------------------------------------------------------------------------

def test_lossy_and_lossless_decode_with_their_facts(samples, coffee):
    for name, lossless in (("lossy", False), ("lossless", None)):
        decoded = decode_for_model(samples[name], 32, max_pixels=LIMIT)
        assert (decoded.format, decoded.width, decoded.height) == ("JPEG XL", 600, 400)
        assert decoded.facts.lossless is lossless and decoded.facts.colour
    exact = decode_for_model(samples["lossless"], 32, max_pixels=LIMIT, digest=True)
    png = io.BytesIO()
    coffee.save(png, "PNG")
    assert exact.facts.pixel_digest == decode_for_model(
        png.getvalue(), 32, max_pixels=LIMIT, digest=True).facts.pixel_digest


def test_exif_gives_the_camera_but_not_a_second_turn(samples):
    decoded = decode_for_model(samples["exif"], 32, max_pixels=LIMIT)
    assert (decoded.facts.make, decoded.facts.model) == ("JXLMake", "JXLModel")
    # libjxl has turned the pixels by the codestream's orientation (none here): the EXIF
    # tag must not turn them again.
    assert (decoded.width, decoded.height) == (600, 400)
    assert decode_preview(samples["exif"], 60, max_pixels=LIMIT).shape == (40, 60)


def test_probe_knows_jpeg_xl_by_its_header_without_decoding(tmp_path, samples):
    path = tmp_path / "big.jxl"
    path.write_bytes(codestream_header(100_000, 100_000))
    assert probe_format(path) == "JPEG XL"
    assert probe_format(samples["lossy"]) == "JPEG XL"
    with open(path, "rb") as fh:
        fh.seek(0)
        assert probe_format(fh) == "JPEG XL" and fh.tell() == 0


# -- hostile files -----------------------------------------------------------------------

def test_a_huge_declared_size_is_refused_before_libjxl_sees_it(tmp_path):
    bomb = tmp_path / "bomb.jxl"
    bomb.write_bytes(codestream_header(100_000, 100_000))
    started = time.monotonic()
    with pytest.raises(ImageDecodeError, match=r"decompression bomb: 100000x100000 = "
                                               r"10000 MP exceeds the 50 MP limit"):
        decode_for_model(bomb, 32, max_pixels=LIMIT)
    assert time.monotonic() - started < 5  # nothing was allocated for 10 GP


def test_a_real_picture_over_the_limit_is_refused_too(samples):
    with pytest.raises(ImageDecodeError, match="decompression bomb: 600x400"):
        decode_for_model(samples["container"], 32, max_pixels=200_000)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_preview(samples["lossy"], 60, max_pixels=200_000)


def test_pillow_never_decodes_a_jxl_over_its_own_limit(tmp_path):
    bomb = tmp_path / "bomb.jxl"
    bomb.write_bytes(codestream_header(100_000, 100_000))
    with pytest.raises(Image.DecompressionBombError):
        Image.open(bomb)


@pytest.mark.parametrize("cut", [0.5, 0.1])
def test_truncated_and_damaged_files_fail_with_a_reason(samples, cut):
    for data in samples.values():
        with pytest.raises(ImageDecodeError, match="truncated or damaged image data"):
            decode_for_model(data[:int(len(data) * cut)], 32, max_pixels=LIMIT)
    damaged = bytearray(samples["lossy"])
    damaged[20:400] = bytes(380)
    with pytest.raises(ImageDecodeError, match=r"truncated or damaged image data \(libjxl"):
        decode_for_model(bytes(damaged), 32, max_pixels=LIMIT)


def test_a_container_without_a_codestream_and_a_text_named_jxl_fail(tmp_path, samples):
    no_codestream = samples["container"][:12] + b"\x00\x00\x00\x10ftypjxl \x00\x00\x00\x00"
    with pytest.raises(ImageDecodeError, match=r"JPEG XL: no codestream box"):
        decode_for_model(no_codestream, 32, max_pixels=LIMIT)
    text = tmp_path / "notes.jxl"
    text.write_text("shopping list: milk, eggs\n")
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode_for_model(Path(text), 32, max_pixels=LIMIT)


# -- thumbnails (the `show` page's pictures) ---------------------------------------------

def test_a_jxl_gets_a_thumbnail_and_a_bomb_gets_none(tmp_path, samples):
    photo, bomb = tmp_path / "photo.jxl", tmp_path / "bomb.jxl"
    photo.write_bytes(samples["container"])
    bomb.write_bytes(codestream_header(100_000, 100_000))
    # A fresh process: this one has the plugin imported by the tests' encoder already.
    code = ("import sys\nfrom findsimilar.thumbnails import thumbnail\n"
            "for p in sys.argv[1:]:\n    print(thumbnail(p, 'normal'))")
    done = subprocess.run([sys.executable, "-c", code, str(photo), str(bomb)],
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
                          capture_output=True, text=True, check=True)
    made, none = done.stdout.splitlines()
    assert none == "None"
    with Image.open(made) as im:
        assert im.size == (128, 85)
    text = png_text(Path(made)) or {}
    assert (text["Thumb::Mimetype"], text["Thumb::Image::Width"]) == ("image/jxl", "600")
