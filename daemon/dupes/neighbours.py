"""Candidate pairs for duplicate finding: each picture's nearest neighbours above a
cosine threshold, never an N×N matrix.

Small collections are searched exactly. Past ``EXACT_LIMIT`` vectors, an exact
all-neighbours search costs N² × 1280 multiply-adds (100k: ~4 minutes on two
cores), so the vectors are PCA-reduced to ``REDUCED_DIM`` dimensions and searched
with an inverted-file index; the pairs found are then scored again with the full
vectors, so only *which* pairs are looked at is approximate, never their score.
Memory: the reduced vectors as 8-bit codes (N × 128 bytes) plus k pairs per picture.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np

__all__ = ["EXACT_LIMIT", "neighbour_pairs"]

EXACT_LIMIT = 10_000
REDUCED_DIM = 128
_QUERY_BLOCK = 4096
_TRAIN_SAMPLE = 50_000
_PCA_SAMPLE = 20_000
# Reduced cosines run a little off the full ones: the search asks this much lower. On
# 10,093 real pictures every exact candidate pair stays connected from 0.05 with v1 and
# the margin moves nothing with gem512 (bench/reduced_margin.py, BENCHMARKS.md).
_REDUCED_MARGIN = 0.10

VectorsFn = Callable[[np.ndarray], np.ndarray]  # row numbers -> (len, dim) float32


def neighbour_pairs(n: int, vectors: VectorsFn, *, k: int, min_score: float,
                    should_stop: Callable[[], bool] = lambda: False,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i, j), i < j, of rows 0..n-1 where j is among i's ``k`` nearest neighbours
    (or i among j's) and their cosine is at least ``min_score``.

    Returns three arrays (i, j, cosine), sorted by (i, j), cosines from the full vectors.
    """
    if n < 2:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, np.float32)
    k = min(k, n - 1)
    if n <= EXACT_LIMIT:
        index = faiss.IndexFlatIP(vectors(np.arange(0, 1)).shape[1])
        _add_in_blocks(index, n, vectors)
        i, j = _search(index, n, vectors, k, min_score, should_stop)
    else:
        index, reduce = _reduced_ivf(n, vectors)
        i, j = _search(index, n, lambda rows: reduce(vectors(rows)), k,
                          min_score - _REDUCED_MARGIN, should_stop)
    i, j = _unique_pairs(i, j, n)
    scores = _exact_scores(i, j, vectors)
    keep = scores >= min_score
    return i[keep], j[keep], scores[keep]


def _add_in_blocks(index: faiss.Index, n: int, vectors: VectorsFn) -> None:
    for start in range(0, n, _QUERY_BLOCK):
        index.add(np.ascontiguousarray(vectors(np.arange(start, min(n, start + _QUERY_BLOCK)))))


def _search(index: faiss.Index, n: int, vectors: VectorsFn, k: int, min_score: float,
            should_stop: Callable[[], bool]) -> tuple[np.ndarray, np.ndarray]:
    """Rows i and their neighbours j scoring at least ``min_score`` in ``index`` (the
    scores are computed again from the full vectors afterwards)."""
    found_i, found_j = [], []
    for start in range(0, n, _QUERY_BLOCK):
        if should_stop():
            break
        rows = np.arange(start, min(n, start + _QUERY_BLOCK))
        scores, neighbours = index.search(np.ascontiguousarray(vectors(rows)), k + 1)
        hit = (neighbours >= 0) & (neighbours != rows[:, None]) & (scores >= min_score)
        found_i.append(np.broadcast_to(rows[:, None], hit.shape)[hit])
        found_j.append(neighbours[hit])
    if not found_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_i), np.concatenate(found_j)


def _unique_pairs(i: np.ndarray, j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.minimum(i, j).astype(np.int64), np.maximum(i, j).astype(np.int64)
    keys = np.unique(lo * n + hi)
    return keys // n, keys % n


def _exact_scores(i: np.ndarray, j: np.ndarray, vectors: VectorsFn) -> np.ndarray:
    """Full-vector cosines of the pairs, a block of first rows at a time."""
    out = np.empty(len(i), np.float32)
    step = 4096  # pairs per block: two (step, dim) copies, ~40 MB at 1280-d
    for start in range(0, len(i), step):
        a, b = i[start:start + step], j[start:start + step]
        rows, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
        block = vectors(rows)
        va, vb = block[inverse[:len(a)]], block[inverse[len(a):]]
        out[start:start + len(a)] = np.einsum("ij,ij->i", va, vb)
    return out


def _reduced_ivf(n: int, vectors: VectorsFn) -> tuple[faiss.Index, Callable]:
    """A PCA to REDUCED_DIM plus an IVF index of 8-bit codes of all n reduced vectors."""
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(n, size=min(n, _TRAIN_SAMPLE), replace=False))
    # PCA from a 20k subsample (100 MB of full vectors at most); the IVF is trained
    # on the whole sample, reduced block by block.
    first = np.ascontiguousarray(vectors(sample[::max(1, len(sample) // _PCA_SAMPLE)]))
    pca = faiss.PCAMatrix(first.shape[1], REDUCED_DIM)
    pca.train(first)
    del first

    def reduce(x: np.ndarray) -> np.ndarray:
        y = pca.apply(np.ascontiguousarray(x, dtype=np.float32))
        faiss.normalize_L2(y)
        return y

    # 4·√N lists, but never fewer than 39 training points each (faiss's own floor).
    nlist = max(1, min(int(4 * np.sqrt(n)), len(sample) // 39))
    quantizer = faiss.IndexFlatIP(REDUCED_DIM)
    # 8-bit codes: 128 bytes a picture instead of 512 (the candidates' scores only pick
    # pairs; they are computed again from the full vectors).
    index = faiss.IndexIVFScalarQuantizer(quantizer, REDUCED_DIM, nlist,
                                          faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT)
    index.train(np.concatenate([reduce(vectors(sample[b:b + _QUERY_BLOCK]))
                                for b in range(0, len(sample), _QUERY_BLOCK)]))
    index.nprobe = 16
    for start in range(0, n, _QUERY_BLOCK):
        index.add(reduce(vectors(np.arange(start, min(n, start + _QUERY_BLOCK)))))
    return index, reduce
