"""Recall of the compressed index on real descriptors (the scale benchmarks use synthetic
ones): a store's vectors, the compressed layout built by the daemon's own code, and
1,000 of the stored vectors as queries, against exact search over the same store.

    python bench/index_recall_real.py STORE.db     # e.g. bench/daemon.py's 10,000-photo store
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from findsimilar.daemon.storage.index import COMPRESSED, VectorIndex
from findsimilar.daemon.storage.index_build import Plan, build_index, lists_for
from findsimilar.daemon.storage.store import Store

K = 10


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth,
                                                                           strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", help="a findsimilar store.db")
    ap.add_argument("--extractor", default="efficientnet-lite0-gem/v1")
    args = ap.parse_args()
    store = Store(args.store)
    ids = store.indexed_feature_ids(args.extractor)
    vectors = store.vectors(ids, 1280)
    queries = np.random.default_rng(1).choice(len(ids), min(1000, len(ids)), replace=False)
    # k + 1: a stored vector finds itself first, in both searches
    truth = ids[np.argsort(-(vectors[queries] @ vectors.T), axis=1)[:, :K + 1]]
    print(f"| photos | lists | recall@{K} re-ranked | recall@{K}, codes alone | build s |")
    print("|---:|---:|---:|---:|---:|")
    for lists in sorted({lists_for(len(ids)), 64}, reverse=True):
        t0 = time.perf_counter()
        index = VectorIndex(1280, build_index(Plan(COMPRESSED, lists, ""), ids, 1280,
                                              lambda rows: store.vectors(rows, 1280)),
                            lambda rows: store.vectors(rows, 1280))
        built = time.perf_counter() - t0
        _, found = index.search(vectors[queries], K + 1)
        codes = index._index.search(np.ascontiguousarray(vectors[queries]), K + 1)[1]
        print(f"| {len(ids):,} | {index.lists} | {recall(found, truth):.4f} "
              f"| {recall(codes, truth):.4f} | {built:.1f} |")


if __name__ == "__main__":
    main()
