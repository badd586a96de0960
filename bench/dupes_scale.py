"""Duplicate grouping at library scale: time and memory of `dupes` over N photos.

Synthetic library (no pictures): N clustered 1280-d unit vectors, as if 2,000
"topics" were photographed, with 5% of the photos given a planted near-duplicate
(vector + noise, cosine ~0.97) and 1% an identical-bytes copy (same content hash).
The store, the FAISS index and the verdict cache are the real ones. Pixel checks
cannot run without pictures, so the verdict cache is filled first as the daemon
leaves it in steady state (planted pairs "same picture", other candidates not);
the pixel check's own cost per pair is measured on real photos by
bench/dupes_quality.py. What is timed is everything else `dupes` does: reading
the scope, neighbour search, verdict lookup, grouping and the result.

    python bench/dupes_scale.py            # 100k
    python bench/dupes_scale.py --n 20000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 1280


def build(workdir: Path, n: int) -> tuple[int, int]:
    from findsimilar.daemon.dupes.neighbours import neighbour_pairs
    from findsimilar.daemon.model.verify import VERIFIER_ID
    from findsimilar.daemon.storage.index import VectorIndex
    from findsimilar.daemon.storage.store import Store

    rng = np.random.default_rng(7)
    topics = rng.standard_normal((2000, DIM)).astype(np.float32)
    x = topics[rng.integers(0, 2000, n)] * 0.6 + rng.standard_normal((n, DIM)).astype(np.float32)
    planted_dst = rng.choice(n, n // 20, replace=False)
    planted_src = (planted_dst + 1) % n
    x[planted_dst] = x[planted_src] + 0.25 * rng.standard_normal((len(planted_dst), DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    hashes = [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(n)]
    store = Store(workdir / "store.db")
    extractor = "efficientnet-lite0-gem/v1"
    rows = [{"path": f"/photos/{i // 1000:03d}/img{i:07d}.jpg", "size": 3_000_000 + i,
             "mtime_ns": i, "inode": i, "content_hash": hashes[i], "status": "ok",
             "format": "JPEG", "width": 4032, "height": 3024} for i in range(n)]
    copies = rng.choice(n, n // 100, replace=False)
    rows += [{**rows[i], "path": f"/photos/copies/img{i:07d}.jpg", "inode": n + i}
             for i in copies]
    store.upsert_files(rows)
    # Picture facts as indexing leaves them (no keeper is chosen on unknown facts).
    store.save_picture_facts({h: {"width": 4032, "height": 3024, "format": "JPEG",
                                  "colour": True, "alpha": False, "lossless": False,
                                  "sharpness": 100.0} for h in hashes})
    ids = []
    for start in range(0, n, 5000):
        ids += store.add_features(extractor, list(zip(hashes[start:start + 5000],
                                                      x[start:start + 5000], strict=True)))
    index = VectorIndex(DIM)
    index.add(np.asarray(ids, np.int64), x)
    index.save(workdir / f"index-{extractor.replace('/', '_')}.faiss")
    # The verdict cache as the daemon leaves it: every candidate pair checked once.
    order = np.argsort(hashes)
    i, j, _ = neighbour_pairs(n, lambda r: x[order[r]], k=16, min_score=0.6)
    planted = {frozenset(p) for p in zip(planted_dst.tolist(), planted_src.tolist(),
                                          strict=True)}
    verdicts = {}
    for a, b in zip(order[i].tolist(), order[j].tolist(), strict=True):
        ha, hb = sorted((hashes[a], hashes[b]))
        verdicts[(ha, hb)] = 0.97 if frozenset((a, b)) in planted else 0.2
    store.save_pair_scores(VERIFIER_ID, verdicts)
    store.close()
    return len(rows), len(verdicts)


def measure(workdir: Path, tiers: list[str]) -> dict[str, float]:
    """Run in a fresh process so that peak memory is this run's own."""
    from findsimilar.config import load_config
    from findsimilar.daemon.dupes.grouping import options_from
    from findsimilar.daemon.engine import Engine

    os.environ["FINDSIMILAR_DATA_DIR"] = str(workdir)
    base = _rss_kb("VmRSS")
    engine = Engine(load_config())
    opened = _rss_kb("VmRSS")
    _reset_peak()
    t0 = time.perf_counter()
    result = engine.duplicates(options_from(tiers=tiers))
    seconds = time.perf_counter() - t0
    peak = _rss_kb("VmHWM")
    groups = result["groups"]
    return {"seconds": round(seconds, 1), "groups": len(groups),
            "near": sum(g["tier"] == "near" for g in groups),
            "exact": sum(g["tier"] == "exact" for g in groups),
            "verified_now": result["stats"]["verified_now"],
            "rss_engine_mb": round((opened - base) / 1024), "rss_dupes_extra_mb":
            round((peak - opened) / 1024), "rss_peak_mb": round(peak / 1024)}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), ["exact", "near"])))
        return
    with tempfile.TemporaryDirectory(prefix="findsimilar-dupes-scale-") as tmp:
        t0 = time.perf_counter()
        files, pairs = build(Path(tmp), args.n)
        print(f"built {files} files, {pairs} cached verdicts in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
        out = subprocess.run([sys.executable, __file__, "--measure", tmp], check=True,
                             capture_output=True, text=True).stdout
    r = json.loads(out)
    nxn_gb = args.n * args.n * 4 / 1e9
    cpu = platform.processor() or "?"
    print(f"| photos | dupes time | groups (exact/near) | extra RSS for dupes | "
          f"N×N float32 would be |\n|---|---|---|---|---|\n"
          f"| {files:,} | {r['seconds']} s | {r['groups']} ({r['exact']}/{r['near']}) | "
          f"{r['rss_dupes_extra_mb']} MB (engine with index: {r['rss_engine_mb']} MB) | "
          f"{nxn_gb:,.0f} GB |")
    print(f"(cpu: {cpu}, {os.cpu_count()} cores; verified_now={r['verified_now']})")


if __name__ == "__main__":
    main()
