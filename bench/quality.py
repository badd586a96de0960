"""Rank-1 retrieval of edited copies: does an edited photo find its original?

Indexes every decodable photo of ../shared/photos with the real pipeline, then
queries with 13 edits of each (resize 30%, JPEG q15, crop 75%, mirror,
greyscale, brightness, blur, caption bar, letterbox, PNG/WebP/HEIC re-encode,
EXIF-rotated). A query counts as right when its top result is the original
or a file that shows the same picture: the `near_duplicate` groups of
GROUPS.json plus two pairs GROUPS.json does not list but which are the same
picture (checked by eye): `formats/alpha_channel_image.png` is
`base/ukbench00120.jpg` with an opaque alpha channel, and `formats/baboon.pgm`
is the greyscale of `opencv/baboon.jpg`.

Usage: python bench/quality.py [--precision auto|fp32|bf16] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import EDITS, SHARED, apply_edit, shared_groups, shared_photos  # noqa: E402

from findsimilar.config import Config  # noqa: E402
from findsimilar.daemon.engine import Engine  # noqa: E402

UNDECLARED_SAME_PICTURE = [
    ["imagededup/formats/alpha_channel_image.png", "imagededup/base/ukbench00120.jpg"],
    ["imagededup/formats/baboon.pgm", "opencv/baboon.jpg"],
]


def equivalents() -> dict[str, set[str]]:
    """Absolute path -> every absolute path that shows the same picture."""
    groups = [*shared_groups()["near_duplicate"], *UNDECLARED_SAME_PICTURE]  # type: ignore[misc]
    same: dict[str, set[str]] = {}
    for group in groups:
        members = {str(SHARED / g) for g in group}
        merged = set(members)
        for m in members:
            merged |= same.get(m, set())
        for m in merged:
            same[m] = merged
    return same


def run(workdir: Path) -> tuple[dict[str, list[bool]], dict[str, list[str]]]:
    photos = shared_photos()
    same = equivalents()
    hits: dict[str, list[bool]] = {e: [] for e in EDITS}
    misses: dict[str, list[str]] = {e: [] for e in EDITS}
    with Engine(Config(data_dir=workdir / "data")) as engine:
        engine.index_paths([str(SHARED)])
        for i, photo in enumerate(photos):
            for name in EDITS:
                stem = workdir / "edits" / f"{i:03d}-{EDITS[name].__name__}"
                stem.parent.mkdir(parents=True, exist_ok=True)
                query = apply_edit(name, photo, stem)
                top = engine.search(str(query), k=1).results
                ok = bool(top) and top[0].path in same.get(str(photo), {str(photo)})
                hits[name].append(ok)
                if not ok:
                    misses[name].append(f"{photo.relative_to(SHARED)} -> "
                                        f"{Path(top[0].path).relative_to(SHARED) if top else '-'}")
    return hits, misses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--misses", action="store_true", help="list every miss")
    args = ap.parse_args()
    os.environ["FINDSIMILAR_PRECISION"] = args.precision
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fs-quality-") as tmp:
        hits, misses = run(Path(tmp))
    total = sum(len(v) for v in hits.values())
    right = sum(sum(v) for v in hits.values())
    print(f"# precision={args.precision}, {len(shared_photos())} photos, "
          f"{time.time() - started:.0f} s")
    print("| edit | queries | original at rank 1 | rate |")
    print("|---|---:|---:|---:|")
    for name, v in hits.items():
        print(f"| {name} | {len(v)} | {sum(v)} | {100 * sum(v) / len(v):.1f}% |")
    print(f"| **all** | {total} | {right} | **{100 * right / total:.1f}%** |")
    if args.misses:
        for name, items in misses.items():
            for item in items:
                print(f"miss [{name}] {item}")


if __name__ == "__main__":
    main()
