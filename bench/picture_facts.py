"""What learning picture facts while decoding costs (issue 14).

Decodes the same files for the model with the facts (``daemon/model/facts.py``) and
without them, alternating file by file (and which goes first) in one thread so that the
machine's load and warm caches fall on both alike, and prints the median milliseconds
per picture:

  * 12 MP camera JPEGs (bench/throughput.py's): colour, sharpness, EXIF, lossless origin;
  * the same pictures as PNG (lossless: a pixel digest of every pixel on top);
  * a JPEG decoded for its pixel digest (a full decode: only for a group holding a
    lossless candidate conversion of it).

Usage: python bench/picture_facts.py [--count 40] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import make_camera_jpegs  # noqa: E402

from findsimilar.daemon.model import decode, facts  # noqa: E402

MP = 200_000_000


@contextmanager
def without_facts() -> Iterator[None]:
    """Decoding as it was before facts: no facts, no lossless check, no digest."""
    saved = facts.picture_facts, facts.lossless
    facts.picture_facts = lambda **kw: None  # type: ignore[assignment]
    facts.lossless = lambda im, source: None  # type: ignore[assignment]
    try:
        yield
    finally:
        facts.picture_facts, facts.lossless = saved


def timed(path: Path, digest: bool | None = None) -> float:
    data = path.read_bytes()
    t0 = time.perf_counter()
    decode.decode_for_model(data, 224, max_pixels=MP, digest=digest)
    return (time.perf_counter() - t0) * 1000


def facts_step(path: Path) -> float:
    """The facts computed from a decoded picture, timed alone (x100, in ms each)."""
    data = path.read_bytes()
    small = decode.decode_for_model(data, 224, max_pixels=MP).pixels
    with Image.open(path) as im:
        exif = im.getexif()
        t0 = time.perf_counter()
        for _ in range(100):
            facts.picture_facts(width=im.width, height=im.height, fmt="JPEG",
                                content=(1.0, 1.0), small=small, alpha=facts.with_alpha(im),
                                exif=exif, is_lossless=facts.lossless(im, data), digest=None)
    return (time.perf_counter() - t0) * 10


def compare(files: list[Path]) -> tuple[float, float]:
    with_, without = [], []
    for n, f in enumerate(files * 2):  # each file twice, each way first once
        if n % 2:
            with_.append(timed(f))
        with without_facts():
            without.append(timed(f))
        if not n % 2:
            with_.append(timed(f))
    return statistics.median(with_), statistics.median(without)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "findsimilar-bench-12mp")
    args = ap.parse_args()
    jpegs = make_camera_jpegs(args.workdir / "photos", args.count)
    pngs = []
    for j in jpegs[:max(4, args.count // 4)]:
        p = args.workdir / "png" / (j.stem + ".png")
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(j) as im:
                im.save(p, compress_level=1)
        pngs.append(p)
    decode.decode_for_model(jpegs[0].read_bytes(), 224, max_pixels=MP)  # warm up
    rows = [("12 MP JPEG, decoded for the model", *compare(jpegs)),
            ("12 MP PNG (with its pixel digest)", *compare(pngs))]
    full = statistics.median(timed(j, digest=True) for j in jpegs[:8])
    step = statistics.median(facts_step(j) for j in jpegs)
    print(f"# median ms per picture, one thread, {len(jpegs)} JPEGs / {len(pngs)} PNGs")
    for name, with_, without in rows:
        print(f"{name:40s} with facts {with_:7.1f}  without {without:7.1f}  "
              f"(+{with_ - without:.1f} ms, {100 * (with_ / without - 1):+.1f}%)")
    print(f"{'the facts step alone, per JPEG':40s} {step:7.2f} (colour, sharpness, EXIF, origin)")
    print(f"{'12 MP JPEG, full decode for its digest':40s} {full:7.1f} (asked per group only)")


if __name__ == "__main__":
    main()
