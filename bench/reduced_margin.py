"""The reduced search of `dupes` past 10,000 pictures, on real descriptors: which candidate
pairs it finds against an exact search, per extractor and margin.

Past ``neighbours.EXACT_LIMIT`` pictures `dupes` looks for each picture's ``NEIGHBOURS``
nearest neighbours in a PCA-reduced (128-d), 8-bit IVF index, asking down to the
extractor's candidate cosine minus ``_REDUCED_MARGIN`` (reduced cosines run off the full
ones), then scores the pairs found again with the full vectors and keeps those at the
candidate cosine or more. The margin was set on v1's vectors; this measures it for each
extractor on bench/daemon.py's 10,000-picture library (crops, turns and colour shifts of
the shared photos, 100 of each: most pictures have many near-identical neighbours, the
hard case for a neighbour search) plus the shared photos themselves.

Printed per extractor and margin: the pairs the exact search finds (cosine ≥ candidate,
among each picture's k nearest), the share of them the reduced search finds (recall),
and the share whose two pictures its pairs still connect (what grouping needs: with
100 near-identical variants of a picture, which 16 of them are "nearest" is a toss-up,
but they must end up in one group), and the exact pairs at 0.05 over the candidate
cosine or more whose pictures it leaves unconnected.

Usage: python bench/reduced_margin.py [--workdir DIR] [--count 10000]
       [--extractors efficientnet-lite0-gem,efficientnet-lite0-gem512]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import shared_photos  # noqa: E402

from daemon import make_library  # noqa: E402
from findsimilar.daemon.dupes import neighbours  # noqa: E402
from findsimilar.daemon.dupes.grouping import NEIGHBOURS  # noqa: E402
from findsimilar.daemon.model.decode import decode_for_model  # noqa: E402
from findsimilar.daemon.model.features import create_extractor  # noqa: E402
from findsimilar.daemon.model.spec import model_spec  # noqa: E402

MARGINS = (0.0, 0.05, 0.10, 0.15)


def embed(name: str, files: list[Path], workdir: Path) -> np.ndarray:
    """Descriptors of ``files`` by extractor ``name`` (cached in ``workdir``)."""
    cache = workdir / f"vectors-{name}-{len(files)}.npy"
    if cache.exists():
        return np.load(cache)
    extractor = create_extractor(name, 2)
    size = extractor.input_size
    out = []
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, len(files), 64):
            pixels = list(pool.map(lambda f: decode_for_model(f, size,
                                                              max_pixels=250_000_000).pixels,
                                   files[start:start + 64]))
            out.append(extractor.embed(np.stack(pixels)))
    vectors = np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
    np.save(cache, vectors)
    return vectors


def pair_keys(i: np.ndarray, j: np.ndarray, n: int) -> set[int]:
    lo, hi = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    return set((lo * n + hi).tolist())


def exact_pairs(vectors: np.ndarray, floor: float) -> tuple[set[int], dict[int, float]]:
    n = len(vectors)
    fetch = lambda rows: vectors[rows]  # noqa: E731
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    i, j = neighbours._search(index, n, fetch, NEIGHBOURS, floor, lambda: False)
    i, j = neighbours._unique_pairs(i, j, n)
    scores = np.einsum("ij,ij->i", vectors[i], vectors[j])
    keys = (i * n + j).tolist()
    return set(keys), dict(zip(keys, scores.tolist(), strict=True))


def reduced_pairs(vectors: np.ndarray, floor: float, margin: float) -> set[int]:
    """What ``neighbour_pairs`` keeps past EXACT_LIMIT, with ``margin``."""
    n = len(vectors)
    fetch = lambda rows: vectors[rows]  # noqa: E731
    index, reduce = neighbours._reduced_ivf(n, fetch)
    i, j = neighbours._search(index, n, lambda rows: reduce(fetch(rows)), NEIGHBOURS,
                              floor - margin, lambda: False)
    i, j = neighbours._unique_pairs(i, j, n)
    keep = np.einsum("ij,ij->i", vectors[i], vectors[j]) >= floor
    return pair_keys(i[keep], j[keep], n)


def connected(found: set[int], pairs: set[int], n: int) -> set[int]:
    """The keys of ``pairs`` whose two rows the ``found`` pairs connect (union-find)."""
    parent = np.arange(n)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for key in found:
        a, b = root(key // n), root(key % n)
        if a != b:
            parent[a] = b
    return {k for k in pairs if root(k // n) == root(k % n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/benchwd"))
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--extractors", default="efficientnet-lite0-gem,efficientnet-lite0-gem512")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    files = [*make_library(args.workdir / "library", args.count), *shared_photos()]
    print(f"# {len(files)} pictures (bench/daemon.py's library + the shared photos); "
          f"k = {NEIGHBOURS}; EXACT_LIMIT {neighbours.EXACT_LIMIT}, reduced to "
          f"{neighbours.REDUCED_DIM}-d; the engine's margin "
          f"{neighbours._REDUCED_MARGIN}")
    print("| extractor | candidate cosine | margin | exact pairs | found by the reduced "
          "search | recall | connected | unconnected at candidate + 0.05 or more |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.extractors.split(","):
        started = time.perf_counter()
        vectors = embed(name, files, args.workdir)
        floor = model_spec(name).candidate_cosine
        truth, scores = exact_pairs(vectors, floor)
        print(f"# {name}: {len(vectors)} vectors in {time.perf_counter() - started:.0f} s",
              flush=True)
        for margin in MARGINS:
            found = reduced_pairs(vectors, floor, margin)
            hit = len(truth & found)
            joined = connected(found, truth, len(vectors))
            clear = [k for k in truth - joined if scores[k] >= floor + 0.05]
            print(f"| {name} | {floor:.2f} | {margin:.2f} | {len(truth)} | {hit} | "
                  f"{hit / max(1, len(truth)):.4f} | {len(joined) / max(1, len(truth)):.4f} "
                  f"| {len(clear)} |", flush=True)


if __name__ == "__main__":
    main()
