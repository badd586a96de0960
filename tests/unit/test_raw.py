"""Camera RAW files: real DNGs (tests/raw_files.py) decoded through LibRaw, and hostile ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rawpy
from PIL import Image

from findsimilar.daemon.indexing.scanner import IMAGE_EXTENSIONS, looks_like_image
from findsimilar.daemon.model.decode import decode_for_model, decode_preview, probe_format
from findsimilar.daemon.model.raw_container import inspect, sniff
from findsimilar.errors import ImageDecodeError
from tests.conftest import shared
from tests.raw_files import hostile_raws, upright, write_dng

LIMIT = 250_000_000
PHOTO = "opencv/fruits.jpg"  # 512x480, landscape


def _similar(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float32).ravel() - a.mean()
    b = b.astype(np.float32).ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _photo_pixels(size: int) -> np.ndarray:
    return np.asarray(Image.open(shared(PHOTO)).convert("RGB").resize((size, size)))


@pytest.fixture(scope="module")
def dngs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, bool], Path]:
    folder = tmp_path_factory.mktemp("dng")
    return {(o, p): write_dng(folder / f"o{o}-{'p' if p else 'n'}.dng", shared(PHOTO),
                              orientation=o, preview=1024 if p else None)
            for o in (1, 3, 6, 8) for p in (True, False)}


def test_libraw_reads_the_generated_dngs_as_bayer_raws(dngs) -> None:
    for (orientation, with_preview), path in dngs.items():
        with rawpy.imread(str(path)) as raw:
            assert raw.raw_pattern.shape == (2, 2) and raw.color_desc == b"RGBG"
            assert raw.sizes.flip == {1: 0, 3: 3, 6: 6, 8: 5}[orientation]
            if with_preview:
                assert raw.extract_thumb().format == rawpy.ThumbFormat.JPEG
            else:
                with pytest.raises(rawpy.LibRawNoThumbnailError):
                    raw.extract_thumb()


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("with_preview", [True, False])
def test_a_dng_decodes_upright_like_its_photo(dngs, orientation, with_preview) -> None:
    got = decode_for_model(dngs[orientation, with_preview], 64, max_pixels=LIMIT)
    assert (got.width, got.height, got.format) == (512, 480, "DNG")
    assert _similar(got.pixels, _photo_pixels(64)) > 0.9
    # and not its turned copy: the orientation was applied
    turned = np.asarray(Image.fromarray(_photo_pixels(64)).transpose(Image.Transpose.ROTATE_180))
    assert _similar(got.pixels, turned) < 0.6


def test_a_dng_tells_its_camera_and_counts_as_a_lossless_original(dngs) -> None:
    facts = decode_for_model(dngs[6, True], 64, max_pixels=LIMIT).facts
    assert facts is not None
    assert (facts.make, facts.model, facts.taken) == ("Findsimilar", "TestCam",
                                                      "2024:05:17 10:20:30")
    assert facts.lossless is True and facts.colour is True


def test_the_pixel_check_preview_of_a_dng_is_upright(dngs) -> None:
    grey = decode_preview(dngs[8, False], 512, max_pixels=LIMIT)
    assert grey.shape[1] > grey.shape[0]  # landscape, as the photo
    photo = np.asarray(Image.open(shared(PHOTO)).convert("L").resize(grey.shape[::-1]))
    assert _similar(grey, photo) > 0.9


def test_a_small_preview_is_passed_over_for_the_mosaic(tmp_path: Path) -> None:
    # A 160-pixel preview cannot feed a 224 model input: the demosaic gives the picture.
    path = write_dng(tmp_path / "thumb.dng", upright(Image.open(shared(PHOTO)), 1),
                     preview=160)
    got = decode_for_model(path, 224, max_pixels=LIMIT)
    assert _similar(got.pixels, _photo_pixels(224)) > 0.9
    # not the thumbnail upscaled (sharpness ~120; the half-size demosaic: ~640)
    assert got.facts is not None and got.facts.sharpness > 400


def test_a_raw_is_found_by_name_and_by_content(dngs) -> None:
    for ext in (".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2", ".pef"):
        assert ext in IMAGE_EXTENSIONS
    for head in (b"FUJIFILMCCD-RAW 0201", b"IIRO\x08\x00\x00\x00", b"IIU\x00\x18\x00\x00\x00",
                 b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01"):
        assert looks_like_image(head)
    assert sniff(b"II*\x00\x08\x00\x00\x00IIII\x01\x00\x00\x00") == "IIQ"
    assert sniff(b"II\x1a\x00\x00\x00HEAPCCDR") == "CRW"
    assert sniff(b"II*\x00\x08\x00\x00\x00\x10\x00") is None  # a TIFF: its tags tell
    path = dngs[1, True]
    assert probe_format(path) == "DNG"
    assert inspect(path.read_bytes()) == inspect(path)
    with path.open("rb") as fh:  # a file too big to hold in memory is probed this way
        fh.seek(5)
        assert probe_format(fh) == "DNG" and fh.tell() == 5


def test_an_ordinary_tiff_is_no_raw(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "a.tif")
    assert inspect(tmp_path / "a.tif") is None
    assert decode_for_model(tmp_path / "a.tif", 16, max_pixels=LIMIT).format == "TIFF"


@pytest.mark.parametrize("name, reason", [
    ("truncated.dng", "truncated"),
    ("garbage.dng", "damaged"),
    ("header-only.nef", "damaged"),
    ("huge.dng", "decompression bomb"),
    ("fuji-garbage.raf", "not a RAF file LibRaw can read"),
])
def test_a_hostile_raw_fails_with_a_reason(dngs, tmp_path: Path, name, reason) -> None:
    path = hostile_raws(tmp_path, dngs[1, True])[name]
    with pytest.raises(ImageDecodeError, match=reason):
        decode_for_model(path, 64, max_pixels=LIMIT)
    with pytest.raises(ImageDecodeError, match=reason):
        decode_for_model(path.read_bytes(), 64, max_pixels=LIMIT)


def test_a_raw_over_the_pixel_limit_is_refused_before_it_is_unpacked(dngs) -> None:
    with pytest.raises(ImageDecodeError, match="decompression bomb.*0 MP limit"):
        decode_for_model(dngs[1, False], 64, max_pixels=100_000)


def test_damaged_dngs_decode_or_fail_with_a_reason_never_crash(dngs) -> None:
    rng = np.random.default_rng(16)
    for source in (dngs[1, True], dngs[8, False]):
        data = source.read_bytes()
        for _ in range(60):
            damaged = bytearray(data)
            for pos in rng.integers(0, min(len(data), 4096), size=int(rng.choice([1, 4, 16]))):
                damaged[pos] = int(rng.integers(256))  # the tags and IFDs live up front
            try:
                got = decode_for_model(bytes(damaged), 32, max_pixels=LIMIT)
            except ImageDecodeError as exc:
                assert str(exc)
            else:
                assert got.pixels.shape == (32, 32, 3)
