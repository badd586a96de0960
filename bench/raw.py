"""Decoding camera RAW files for the model: embedded preview against half-size demosaic.

Writes DNGs of 12, 16 and 24 MP (tests/raw_files.py: the shared photos upscaled with
sensor-like grain, as a 12-bit RGGB mosaic, uncompressed) with a 1024-pixel JPEG preview
and without one, then decodes each for the model (224x224, as indexing does) in one
thread, the two kinds alternating file by file so that the machine's load falls on both
alike, and prints files/s and the median ms per file. The model's own cost (the same
for any picture) is not in it: see bench/throughput.py.

Usage: python bench/raw.py [--count 6] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from findsimilar.daemon.model.decode import decode_for_model  # noqa: E402
from tests.photo_edits import SHARED  # noqa: E402
from tests.raw_files import write_dng  # noqa: E402

SIZES = {"12 MP": (4000, 3000), "16 MP": (4928, 3264), "24 MP": (6000, 4000)}
MP = 250_000_000


def sources() -> list[Path]:
    seen, out = set(), []
    for p in sorted(SHARED.rglob("*")):
        if p.suffix.lower() in (".jpg", ".png"):
            digest = hashlib.sha256(p.read_bytes()).digest()
            if digest not in seen:
                seen.add(digest)
                out.append(p)
    return out


def make(folder: Path, size: tuple[int, int], count: int, preview: bool) -> list[Path]:
    """``count`` DNGs of ``size`` (cached in ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(16)
    out = []
    for i, src in enumerate(sources()[:count]):
        dest = folder / f"{size[0]}x{size[1]}-{'p' if preview else 'n'}-{i}.dng"
        if not dest.exists():
            with Image.open(src) as im:
                big = np.asarray(im.convert("RGB").resize(size, Image.Resampling.BICUBIC),
                                 np.int16)
            grain = rng.normal(0, 5, big.shape[:2])[..., None].astype(np.int16)
            photo = Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8))
            write_dng(dest, photo, orientation=6 if i % 2 else 1,
                      preview=1024 if preview else None)
        out.append(dest)
    return out


def timed(path: Path) -> float:
    data = path.read_bytes()  # as the daemon sends a file's bytes to the model worker
    t0 = time.perf_counter()
    decode_for_model(data, 224, max_pixels=MP)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=6, help="files per size and kind")
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "findsimilar-bench-raw")
    args = parser.parse_args()
    print("| size | file (MB) | embedded preview: files/s | ms/file | half-size demosaic: "
          "files/s | ms/file |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, size in SIZES.items():
        with_preview = make(args.workdir, size, args.count, True)
        without = make(args.workdir, size, args.count, False)
        timed(with_preview[0]), timed(without[0])  # warm up: imports, LibRaw
        times: dict[bool, list[float]] = {True: [], False: []}
        for n, (a, b) in enumerate(zip(with_preview, without, strict=True)):
            first, second = ((True, a), (False, b)) if n % 2 else ((False, b), (True, a))
            for kind, path in (first, second):
                times[kind].append(timed(path))
        mb = with_preview[0].stat().st_size / 1e6
        cells = []
        for kind in (True, False):
            cells += [f"{len(times[kind]) / sum(times[kind]):.1f}",
                      f"{statistics.median(times[kind]) * 1000:.0f}"]
        print(f"| {label} ({size[0]}x{size[1]}) | {mb:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
