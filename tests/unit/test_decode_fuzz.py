"""The decode path against hostile bytes: every file becomes pixels or an ImageDecodeError
with a reason, quickly and within bounded memory, never a crash, a hang or another error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from findsimilar.daemon.model.decode import DecodedImage, decode_for_model, decode_preview
from findsimilar.errors import ImageDecodeError
from tests.conftest import REPO, shared
from tests.hostile_corpus import INDEXED, encode, hostile_files, pixel_flood_png

LIMIT = 250_000_000  # the configured default
# The same 1000 examples on every run; FINDSIMILAR_FUZZ_RANDOM=1 and more examples
# (FINDSIMILAR_FUZZ_EXAMPLES) for a longer hunt.
FUZZ_EXAMPLES = int(os.environ.get("FINDSIMILAR_FUZZ_EXAMPLES", "1000"))
FUZZ_RANDOM = bool(os.environ.get("FINDSIMILAR_FUZZ_RANDOM"))


CASES = {h.name: h for h in hostile_files(shared("opencv/fruits.jpg"))}


def outcome(data: bytes) -> str:
    """"" when ``data`` decodes, else the reason it does not."""
    try:
        decoded = decode_for_model(data, 32, max_pixels=LIMIT)
    except ImageDecodeError as exc:
        return str(exc)
    assert decoded.pixels.shape == (32, 32, 3)
    return ""


@pytest.mark.parametrize("name", CASES)
def test_each_hostile_file_decodes_or_fails_with_its_reason_within_seconds(name):
    case = CASES[name]

    started = time.perf_counter()
    reason = outcome(case.data)

    assert time.perf_counter() - started < 10
    if case.reason == INDEXED:
        assert reason == "", reason
    else:
        assert re.search(case.reason, reason), reason


def test_the_corpus_has_at_least_25_cases_of_both_outcomes():
    cases = list(CASES.values())
    assert len(cases) >= 25
    assert sum(c.reason == INDEXED for c in cases) >= 5
    assert sum(c.reason != INDEXED for c in cases) >= 15


@pytest.mark.timeout(10)
def test_a_fifo_or_device_path_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "photo.jpg")

    with pytest.raises(ImageDecodeError, match=r"not a regular file but a FIFO"):
        decode_for_model(tmp_path / "photo.jpg", 32, max_pixels=LIMIT)
    with pytest.raises(ImageDecodeError, match=r"not a regular file but a character device"):
        decode_preview(Path("/dev/zero"), 32, max_pixels=LIMIT)
    with pytest.raises(ImageDecodeError, match=r"not a regular file but a folder"):
        decode_for_model(tmp_path, 32, max_pixels=LIMIT)


# -- memory --------------------------------------------------------------------------------

PEAK_CODE = """
import json, sys, threading
from pathlib import Path
from findsimilar.daemon.model.decode import decode_for_model

def hwm_mb():  # VmHWM, not ru_maxrss: that one keeps the parent's peak across exec
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

before = hwm_mb()
threads = [threading.Thread(target=decode_for_model, args=(Path(p), 224),
                            kwargs={"max_pixels": 250_000_000}) for p in sys.argv[1:]]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps({"before_mb": before, "peak_mb": hwm_mb()}))
"""


def decode_peak_mb(*files: Path) -> float:
    """Peak RSS growth (MB) of a fresh process decoding ``files`` in parallel threads."""
    result = subprocess.run([sys.executable, "-c", PEAK_CODE, *map(str, files)], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=True)
    assert "Traceback" not in result.stderr, result.stderr
    figures = json.loads(result.stdout)
    return figures["peak_mb"] - figures["before_mb"]


@pytest.mark.slow
@pytest.mark.parametrize(("colour_type", "bit_depth", "bound_mb"), [
    (0, 16, 700),   # 16-bit grey: 2 B/pixel decoded; needed ~5 GB before band shrinking
    (6, 8, 1100),   # RGBA: 4 B/pixel decoded; a full-size white backing doubled it
    (0, 8, 450),    # 8-bit grey: 1 B/pixel; a full-size RGB copy made it 5
])
def test_a_225_mp_pixel_flood_decodes_within_a_few_bytes_per_pixel(
        tmp_path, colour_type, bit_depth, bound_mb):
    flood = tmp_path / "flood.png"
    flood.write_bytes(pixel_flood_png(15_000, 15_000, colour_type=colour_type,
                                      bit_depth=bit_depth))

    peak = decode_peak_mb(flood)

    print(f"225 MP flood, colour type {colour_type}, {bit_depth}-bit: +{peak:.0f} MB")
    assert peak < bound_mb


@pytest.mark.slow
def test_two_big_pictures_decoded_at_once_share_one_budget_not_twice_the_memory(tmp_path):
    floods = []
    for seed in (1, 2):  # RGB, 144 MP each: ~580 MB decoded; together over the budget
        floods.append(tmp_path / f"flood-{seed}.png")
        floods[-1].write_bytes(pixel_flood_png(12_000, 12_000, seed=seed))

    peak = decode_peak_mb(*floods)

    print(f"two 144 MP RGB floods in two threads: +{peak:.0f} MB")
    assert peak < 900


# -- fuzzing ---------------------------------------------------------------------------------

def _seed_files() -> list[bytes]:
    """Small valid files of every format we decode, and a real camera JPEG with EXIF."""
    rng = np.random.default_rng(11)
    picture = Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8))
    alpha = picture.convert("RGBA")
    seeds = [encode(picture, fmt) for fmt in ("JPEG", "PNG", "WEBP", "TIFF", "GIF", "BMP",
                                              "PPM", "HEIF", "AVIF")]
    seeds += [encode(alpha, "PNG"), encode(picture.convert("P"), "PNG", transparency=3),
              encode(Image.fromarray(rng.integers(0, 65535, (24, 32), np.uint16)), "TIFF"),
              encode(picture, "JPEG", progressive=True, quality=80)]
    camera = Image.open(shared("imagededup/base/ukbench09268.jpg"))  # EXIF orientation 6
    seeds.append(encode(camera.resize((80, 60)), "JPEG", exif=camera.info["exif"]))
    return seeds


SEEDS = _seed_files()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A seed file with a few byte-level mutations: flips, cuts, insertions, repeats."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "repeat", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 256))] * draw(st.integers(1, 8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


@pytest.mark.timeout(300)
@pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # truncated/corrupt EXIF notes
@settings(max_examples=FUZZ_EXAMPLES, deadline=5000, derandomize=not FUZZ_RANDOM, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=mutated_images(), preview=st.booleans())
def test_mutated_image_bytes_decode_or_raise_image_decode_error_only(data, preview):
    try:
        if preview:
            grey = decode_preview(data, 64, max_pixels=50_000_000)
            assert grey.ndim == 2 and max(grey.shape) <= 64
        else:
            decoded = decode_for_model(data, 32, max_pixels=50_000_000)
            assert isinstance(decoded, DecodedImage)
            assert decoded.pixels.shape == (32, 32, 3)
    except ImageDecodeError as exc:
        assert str(exc)  # a reason, never an empty message
