"""What a first duplicate pass costs next to indexing the same library (issue 14, item 4:
the goal is a ratio of at most 1.0).

The library (cached in --workdir): every decodable shared photo and ten edited copies of
each (tests/photo_edits.py: resize, heavy JPEG, crop, mirror, greyscale, brightness, blur,
caption bar, letterbox, PNG), about 1,000 photos, most of them in near groups, so the pass
has thousands of candidate pairs to check. In one run, with a fresh data dir and
`--no-daemon` both times (the model in this process, as a user without the daemon runs
them): `findsimilar index LIB`, then the first `findsimilar dupes LIB --json` (no verdict
cached). Prints both wall times, the ratio, and the pairs checked.

Usage: python bench/dupes_cost.py [--workdir DIR] [--edits 10] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import EDITS, apply_edit, shared_photos  # noqa: E402

from daemon import BIN, load, machine  # noqa: E402

_EDITS = ["resize 30%", "JPEG quality 15", "centre crop 75%", "mirror", "greyscale",
          "brightness +40%", "blur", "caption bar", "letterbox border", "PNG re-encode"]


def make_library(folder: Path, edits: int) -> list[Path]:
    """The originals and ``edits`` edited copies of each (made once, then cached)."""
    names = [e for e in _EDITS if e in EDITS][:edits]
    paths = []
    for n, src in enumerate(shared_photos()):
        if src.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tiff"):
            continue
        original = folder / f"{n:03d}-original{src.suffix.lower()}"
        if not original.exists():
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, original)
        paths.append(original)
        for e, name in enumerate(names):
            stem = folder / f"{n:03d}-edit{e:02d}"
            made = next(iter(folder.glob(stem.name + ".*")), None)
            paths.append(made or apply_edit(name, src, stem))
    return paths


def timed(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run([str(BIN / "findsimilar"), *args], env=env, capture_output=True,
                         text=True, check=True)
    return time.perf_counter() - started, out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fs-bench")
    ap.add_argument("--edits", type=int, default=10)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    lib = args.workdir / "cache" / f"dupes-cost-{args.edits}"
    photos = make_library(lib, args.edits)
    data = Path(tempfile.mkdtemp(prefix="dupes-cost-", dir=args.workdir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINDSIMILAR_")}
    env.update(FINDSIMILAR_DATA_DIR=str(data), FINDSIMILAR_NO_DAEMON="1")
    try:
        start_load = load()
        index_s, summary = timed(["index", "--json", "-q", str(lib)], env)
        dupes_s, listing = timed(["dupes", "--json", "-q", str(lib)], env)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    indexed = json.loads(summary)
    result = json.loads(listing)
    stats = result["stats"]
    pairs = stats.get("candidate_pairs", 0)
    rows = [
        ("photos", f"{len(photos)} ({indexed['new']} indexed, {len(indexed['failed'])} failed)"),
        ("index, --no-daemon", f"{index_s:.1f} s"),
        ("first dupes, --no-daemon", f"{dupes_s:.1f} s ({pairs} candidate pairs, "
                                     f"{stats.get('pairs_checked', pairs)} needed a verdict, "
                                     f"{stats.get('verified_now', 0)} checked)"),
        ("groups", ", ".join(f"{t} {sum(g['tier'] == t for g in result['groups'])}"
                             for t in ("exact", "near"))),
        ("**dupes / index**", f"**{dupes_s / index_s:.2f}** (goal <= 1.0)"),
    ]
    if args.markdown:
        print(f"{machine()}; {start_load} at start; {time.strftime('%Y-%m-%d %H:%M UTC')}")
        print("| measure | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
    else:
        for name, value in rows:
            print(f"{name.strip('*')}: {value.replace('**', '')}")


if __name__ == "__main__":
    main()
