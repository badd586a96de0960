"""Index options for 1M photos (issue 6): speed, memory and recall of FAISS candidates.

Synthetic descriptors (no pictures), built to look like the daemon's 1280-d L2-normalised
EfficientNet-Lite0 + GeM vectors rather than like uniform noise:

  * a shared mean direction (weight 0.5): CNN descriptors after ReLU + GeM are all
    positive, so unrelated photos still have cosine ~0.1-0.2;
  * 4,000 "topics" with Zipf-like sizes (p ~ 1/(rank+20)^0.9), whose centres are grouped
    under 200 "themes", in a 512-d latent subspace whose variance decays slowly
    (scale of latent axis j ~ 1/(1+j/48)), so PCA to 256 keeps most but not all of it;
  * within-topic spread 0.6-1.1 (per topic) along the same spectrum (same-topic cosine
    ~0.4-0.7), plus isotropic noise over all 1280 dimensions (norm 0.45);
  * 5% planted near-duplicates (another photo of the same chunk + noise, cosine ~0.96).

Generated in chunks of 50,000 rows with a seed per chunk, so the 100k set is the prefix of
the 1M one; cached in /tmp/findsimilar-bench-index/ (base.npy, 5.1 GB at 1M, memory-mapped).
Queries: 1,000 held-out vectors from the same generator, and 1,000 "edited copies":
indexed vectors (from the first 100k) + noise of norm 0.35 (cosine ~0.94 to the original).
Ground truth: exact top-10 by blocked flat inner-product search (cached per N).

Candidates: Flat IP (today's index), and, on a PCA to 256-d with a random rotation (one
PCA, trained on the first 160k vectors, shared by all; L2 in the reduced space, which
orders like cosine for unit vectors), IVF-Flat, IVF-SQ8, IVF-PQ64 (8-bit), IVF-PQ64x4
fast-scan, each with a coarse quantizer of 4*sqrt(N) lists (4,096 at 1M) trained once by
k-means on the same sample; and HNSW32 + SQ8. SQ8, PQ and HNSW rows also re-ranked: the top R
candidates re-scored with the exact 1280-d vectors read from the memory-mapped base file
(as the daemon could from an mmap'd copy of SQLite's vectors; the cost of reading them
from SQLite instead is printed separately).

Measured per candidate: train and add time (2 threads), serialized size, anonymous RSS
growth, single-query (k=10) latency p50/p99 with 1 and with 2 OpenMP threads, recall@10
against exact search (all queries, held-out, edited copies), and removal of 1,000 ids.

    python bench/index_options.py                 # 100k and 1M, ~25 min on 2 cores
    python bench/index_options.py --n 100000
    python bench/index_options.py --append        # also append the table to BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import gc
import shlex
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

DIM = 1280
LATENT = 512
REDUCED = 256
K = 10
CHUNK = 50_000
TRAIN = 160_000
PQ8_TRAIN = 25_000
CACHE = Path("/tmp/findsimilar-bench-index")
BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
SECTION = "## Index options at 1M photos (issue 6, measurement)"
KEEP: list[object] = []  # Python owners of the C++ parts of the indexes being measured
SearchFn = Callable[[np.ndarray], np.ndarray]


# -- data -----------------------------------------------------------------------------------
class Generator:
    """The clustered-descriptor model described in the module docstring."""

    def __init__(self, seed: int = 6) -> None:
        rng = np.random.default_rng(seed)
        self.seed = seed
        self.spec = (1.0 / (1.0 + np.arange(LATENT) / 48.0)).astype(np.float32)
        self.spec /= np.linalg.norm(self.spec)
        q, _ = np.linalg.qr(rng.standard_normal((DIM, LATENT)))
        self.basis = q.T.astype(np.float32)  # LATENT x DIM, orthonormal rows
        themes = _unit(rng.standard_normal((200, LATENT)) * self.spec)
        ntopics = 4000
        centres = themes[rng.integers(0, 200, ntopics)] * 0.7 + _unit(
            rng.standard_normal((ntopics, LATENT)) * self.spec) * 0.7
        self.centres = _unit(centres).astype(np.float32)
        p = 1.0 / (np.arange(ntopics) + 20.0) ** 0.9
        self.topic_p = p / p.sum()
        self.spread = rng.uniform(0.6, 1.1, ntopics).astype(np.float32)
        self.mean = _unit(np.abs(rng.standard_normal((1, DIM))))[0]

    def chunk(self, index: int, rows: int, dupes: bool = True) -> np.ndarray:
        rng = np.random.default_rng([self.seed, index])
        t = rng.choice(len(self.centres), rows, p=self.topic_p)
        z = self.centres[t] + self.spread[t, None] * (
            rng.standard_normal((rows, LATENT), dtype=np.float32) * self.spec)
        x = z @ self.basis
        x += 0.5 * self.mean
        x += rng.standard_normal((rows, DIM), dtype=np.float32) * np.float32(0.45 / DIM**0.5)
        x = _unit(x)
        if dupes:  # a planted copy of a row that is not itself a copy
            dst = rng.choice(rows, rows // 20, replace=False)
            free = np.setdiff1d(np.arange(rows), dst)
            src = rng.choice(free, len(dst))
            x[dst] = _unit(x[src] + perturb(rng, len(dst), 0.3))
        return x


def perturb(rng: np.random.Generator, rows: int, norm: float) -> np.ndarray:
    return rng.standard_normal((rows, DIM), dtype=np.float32) * np.float32(norm / DIM**0.5)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def base_vectors(n: int) -> np.ndarray:
    """The first ``n`` generated vectors, memory-mapped from the cache (made if missing)."""
    path = CACHE / "base.npy"
    if path.exists():
        base = np.load(path, mmap_mode="r")
        if len(base) >= n:
            return base[:n]
    CACHE.mkdir(parents=True, exist_ok=True)
    rows = -(-n // CHUNK) * CHUNK
    log(f"generating {rows:,} vectors into {path} (cached for later runs)")
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, DIM))
    gen = Generator()
    for c in range(rows // CHUNK):
        out[c * CHUNK:(c + 1) * CHUNK] = gen.chunk(c, CHUNK)
    out.flush()
    del out
    tmp.rename(path)
    return np.load(path, mmap_mode="r")[:n]


def query_vectors(base: np.ndarray) -> tuple[np.ndarray, int]:
    """2,000 queries (held-out first, then edited copies) and the number held out."""
    path = CACHE / "queries.npy"
    if path.exists():
        return np.load(path), 1000
    held_out = Generator().chunk(10_000, 1000, dupes=False)
    rng = np.random.default_rng(60)
    rows = np.sort(rng.choice(min(len(base), 100_000), 1000, replace=False))
    edited = _unit(base[rows] + perturb(rng, 1000, 0.35))
    q = np.ascontiguousarray(np.vstack([held_out, edited]))
    np.save(path, q)
    return q, 1000


def ground_truth(base: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Exact top-K ids per query (blocked flat search, cached per N)."""
    path = CACHE / f"gt_{len(base)}.npy"
    if path.exists():
        return np.load(path)
    t0 = time.perf_counter()
    best_d = np.full((len(q), K), -np.inf, np.float32)
    best_i = np.full((len(q), K), -1, np.int64)
    for start in range(0, len(base), 100_000):
        block = np.ascontiguousarray(base[start:start + 100_000])
        d, i = faiss.knn(q, block, K, metric=faiss.METRIC_INNER_PRODUCT)
        d_all, i_all = np.hstack([best_d, d]), np.hstack([best_i, i + start])
        top = np.argsort(-d_all, axis=1)[:, :K]
        best_d = np.take_along_axis(d_all, top, 1)
        best_i = np.take_along_axis(i_all, top, 1)
    np.save(path, best_i)
    log(f"ground truth for {len(base):,} in {time.perf_counter() - t0:.0f} s")
    return best_i


# -- measuring ------------------------------------------------------------------------------
@dataclass
class Row:
    name: str
    setting: str
    train_s: float
    add_s: float
    bytes_: int
    rss_mb: float
    n: int
    lat1: tuple[float, float] = (0.0, 0.0)
    lat2: tuple[float, float] = (0.0, 0.0)
    recall: tuple[float, float, float] = (0.0, 0.0, 0.0)
    remove: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def timed_queries(search: SearchFn, q: np.ndarray, threads: int,
                  count: int) -> tuple[tuple[float, float], np.ndarray]:
    faiss.omp_set_num_threads(threads)
    search(q[:1])  # warm-up
    times, out = [], []
    for i in range(count):
        t0 = time.perf_counter()
        ids = search(q[i:i + 1])
        times.append(time.perf_counter() - t0)
        out.append(ids[:K])
    faiss.omp_set_num_threads(2)
    ms = np.array(times) * 1000
    return (float(np.percentile(ms, 50)), float(np.percentile(ms, 99))), np.array(out)


def recall(found: np.ndarray, gt: np.ndarray, held: int) -> tuple[float, float, float]:
    hits = np.array([len(np.intersect1d(f, g)) / K for f, g in zip(found, gt, strict=True)])
    return float(hits.mean()), float(hits[:held].mean()), float(hits[held:].mean())


def measure(row: Row, search: SearchFn, q: np.ndarray, gt: np.ndarray, held: int,
            count: int) -> Row:
    # Alternate held-out and edited queries so a reduced count keeps both kinds.
    order = np.ravel(np.column_stack([np.arange(held), np.arange(held, len(q))]))[:count]
    row.lat1, found = timed_queries(search, q[order], 1, count)
    row.lat2, _ = timed_queries(search, q[order], 2, count)
    row.recall = recall(found, gt[order], int(np.sum(order < held)))
    log(f"  {row.name} {row.setting}: p99 {row.lat1[1]:.2f} ms, recall {row.recall[0]:.3f}")
    return row


def time_remove(index: faiss.Index, n: int) -> str:
    ids = np.random.default_rng(1).choice(n, 1000, replace=False).astype(np.int64)
    t0 = time.perf_counter()
    try:
        removed = index.remove_ids(faiss.IDSelectorBatch(ids))
    except RuntimeError:
        return "no (tombstones + rebuild)"
    return f"yes: {removed} in {(time.perf_counter() - t0) * 1000:.0f} ms"


def reranked(search_many: Callable[[np.ndarray, int], np.ndarray], base: np.ndarray,
             r: int) -> SearchFn:
    """Top-K after re-scoring the index's top ``r`` with the exact vectors."""
    def search(q: np.ndarray) -> np.ndarray:
        cand = search_many(q, r)[0]
        cand = np.sort(cand[cand >= 0])
        scores = base[cand] @ q[0]
        return cand[np.argsort(-scores)[:K]]
    return search


# -- candidates -----------------------------------------------------------------------------
def run_flat(base: np.ndarray, q: np.ndarray, gt: np.ndarray, held: int) -> list[Row]:
    n = len(base)
    rss0 = rss_anon_mb()
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        block = np.ascontiguousarray(base[start:start + CHUNK])
        index.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
    add_s = time.perf_counter() - t0
    size = n * (DIM * 4 + 8)  # what serialize_index writes (vectors + id map), not copied
    row = Row("Flat IP (today)", "exact", 0.0, add_s, size, rss_anon_mb() - rss0, n)
    count = 1000 if n <= 200_000 else 200
    row.extra["queries"] = str(count)
    measure(row, lambda x: index.search(x, K)[1][0], q, gt, held, count)
    row.remove = time_remove(index, n)
    return [row]


@dataclass
class Shared:
    pca: faiss.PCAMatrix
    reduced: np.ndarray
    centroids: np.ndarray
    pca_s: float
    kmeans_s: float
    reduce_s: float
    kept: float


def train_shared(base: np.ndarray) -> Shared:
    n = len(base)
    sample = np.ascontiguousarray(base[:min(n, TRAIN)])
    t0 = time.perf_counter()
    pca = faiss.PCAMatrix(DIM, REDUCED, 0, True)  # random rotation spreads PQ variance
    pca.train(sample)
    pca_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    reduced = np.empty((n, REDUCED), np.float32)
    for start in range(0, n, CHUNK):
        reduced[start:start + CHUNK] = pca.apply(np.ascontiguousarray(base[start:start + CHUNK]))
    reduce_s = time.perf_counter() - t0
    nlist = nlist_for(n)
    t0 = time.perf_counter()
    km = faiss.Kmeans(REDUCED, nlist, niter=15, seed=1234, max_points_per_centroid=256)
    km.train(reduced[:len(sample)])
    kmeans_s = time.perf_counter() - t0
    log(f"PCA {pca_s:.1f} s, reduce all {reduce_s:.1f} s, k-means {nlist} {kmeans_s:.1f} s")
    ev = faiss.vector_to_array(pca.eigenvalues)
    log(f"PCA keeps {ev[:REDUCED].sum() / ev.sum():.3f} of the variance")
    return Shared(pca, reduced, km.centroids, pca_s, kmeans_s, reduce_s,
                  float(ev[:REDUCED].sum() / ev.sum()))


def nlist_for(n: int) -> int:
    return int(2 ** round(np.log2(4 * n**0.5)))


def build_ivf(sh: Shared, codec: str) -> tuple[faiss.Index, faiss.IndexIVF, float, float, float]:
    """A trained, filled PCA+IVF index; returns (index, ivf, train s, add s, RSS growth MB)."""
    n = len(sh.reduced)
    rss0 = rss_anon_mb()
    quantizer = faiss.IndexFlatL2(REDUCED)
    quantizer.add(sh.centroids)
    nlist = len(sh.centroids)
    ivf = faiss.index_factory(REDUCED, f"IVF{nlist},{codec}", faiss.METRIC_L2)
    ivf.quantizer = quantizer  # already trained: train() then fits only the codec
    ivf.own_fields = False
    t0 = time.perf_counter()
    # 8-bit PQ with 4-d sub-vectors trains ~40x slower than the rest: a smaller sample
    ivf.train(sh.reduced[:min(n, PQ8_TRAIN if codec == "PQ64" else TRAIN)])
    train_s = time.perf_counter() - t0 + sh.pca_s + sh.kmeans_s
    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        ivf.add_with_ids(sh.reduced[start:start + CHUNK],
                         np.arange(start, min(n, start + CHUNK), dtype=np.int64))
    add_s = time.perf_counter() - t0 + sh.reduce_s
    index = faiss.IndexPreTransform(sh.pca, ivf)
    KEEP.append((quantizer, ivf))  # the C++ index does not own them
    return index, ivf, train_s, add_s, rss_anon_mb() - rss0


def run_ivf(sh: Shared, base: np.ndarray, q: np.ndarray, gt: np.ndarray, held: int,
            codec: str, label: str, nprobes: list[int], reranks: list[int]) -> list[Row]:
    index, ivf, train_s, add_s, rss = build_ivf(sh, codec)
    size = len(faiss.serialize_index(index))
    n = len(base)
    rows = []
    for nprobe in nprobes:
        ivf.nprobe = nprobe
        row = Row(label, f"nprobe {nprobe}", train_s, add_s, size, rss, n)
        rows.append(measure(row, lambda x: index.search(x, K)[1][0], q, gt, held, 2000))
        for r in reranks:
            row = Row(label, f"nprobe {nprobe}, re-rank {r}", train_s, add_s, size, rss, n)
            fn = reranked(lambda x, k: index.search(x, k)[1], base, r)
            rows.append(measure(row, fn, q, gt, held, 2000))
    remove = time_remove(index, n)
    for row in rows:
        row.remove = remove
    return rows


def run_hnsw(sh: Shared, base: np.ndarray, q: np.ndarray, gt: np.ndarray, held: int,
             efs: list[int], reranks: list[int]) -> list[Row]:
    n = len(base)
    rss0 = rss_anon_mb()
    hnsw = faiss.IndexHNSWSQ(REDUCED, faiss.ScalarQuantizer.QT_8bit, 32)
    hnsw.hnsw.efConstruction = 40
    t0 = time.perf_counter()
    hnsw.train(sh.reduced[:min(n, TRAIN)])
    train_s = time.perf_counter() - t0 + sh.pca_s
    t0 = time.perf_counter()
    idmap = faiss.IndexIDMap2(hnsw)  # HNSW has no ids of its own
    for start in range(0, n, CHUNK):
        idmap.add_with_ids(sh.reduced[start:start + CHUNK],
                           np.arange(start, min(n, start + CHUNK), dtype=np.int64))
    add_s = time.perf_counter() - t0 + sh.reduce_s
    index = faiss.IndexPreTransform(sh.pca, idmap)
    KEEP.append((hnsw, idmap))
    rss = rss_anon_mb() - rss0
    size = len(faiss.serialize_index(index))
    log(f"  HNSW built in {add_s:.0f} s")
    rows = []
    for ef in efs:
        hnsw.hnsw.efSearch = ef
        row = Row("PCA256 + HNSW32,SQ8", f"efSearch {ef}", train_s, add_s, size, rss, n)
        rows.append(measure(row, lambda x: index.search(x, K)[1][0], q, gt, held, 2000))
        for r in reranks:
            if r > ef:
                continue
            row = Row("PCA256 + HNSW32,SQ8", f"efSearch {ef}, re-rank {r}", train_s, add_s,
                      size, rss, n)
            fn = reranked(lambda x, k: index.search(x, k)[1], base, r)
            rows.append(measure(row, fn, q, gt, held, 2000))
    remove = time_remove(index, n)
    for row in rows:
        row.remove = remove
    return rows


def sqlite_fetch_ms(base: np.ndarray, r: int) -> tuple[float, float, int]:
    """p50/p99 ms to read ``r`` random vectors by id from a SQLite table like the store's."""
    rows = min(len(base), 200_000)
    path = CACHE / f"vectors_{rows}.db"
    if not path.exists():
        db = sqlite3.connect(path.with_suffix(".tmp"))
        db.execute("create table features (id integer primary key, vector blob not null)")
        for start in range(0, rows, CHUNK):
            block = base[start:min(rows, start + CHUNK)]
            db.executemany("insert into features values (?, ?)",
                           ((start + i, v.tobytes()) for i, v in enumerate(block)))
        db.commit()
        db.close()
        path.with_suffix(".tmp").rename(path)
    db = sqlite3.connect(path)
    rng = np.random.default_rng(2)
    times = []
    for _ in range(1000):
        ids = rng.choice(rows, r, replace=False).tolist()
        t0 = time.perf_counter()
        got = db.execute(f"select id, vector from features where id in "
                         f"({','.join('?' * r)})", ids).fetchall()
        np.stack([np.frombuffer(v, np.float32) for _, v in got])
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), rows


# -- output ---------------------------------------------------------------------------------
def table(rows: list[Row]) -> str:
    out = ["| N | index | setting | train s | add s | index MB | bytes/photo | RSS growth MB "
           "| p50 / p99 ms, 1 thread | p50 / p99 ms, 2 threads | recall@10 (held-out / "
           "edited) | remove 1,000 ids |",
           "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        note = f" ({r.extra['queries']} queries)" if "queries" in r.extra else ""
        out.append(
            f"| {r.n:,} | {r.name} | {r.setting}{note} | {r.train_s:.1f} | {r.add_s:.1f} "
            f"| {r.bytes_ / 1e6:,.0f} | {r.bytes_ / r.n:,.0f} | {r.rss_mb:,.0f} "
            f"| {r.lat1[0]:.2f} / {r.lat1[1]:.2f} | {r.lat2[0]:.2f} / {r.lat2[1]:.2f} "
            f"| **{r.recall[0]:.3f}** ({r.recall[1]:.3f} / {r.recall[2]:.3f}) | {r.remove} |")
    return "\n".join(out)


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                  if ln.startswith("Model name")), "?")
    cpus = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                 if ln.startswith("CPU(s)")), "?")
    return f"{model}, {cpus} cores, faiss {faiss.__version__}, numpy {np.__version__}"


def log(msg: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def run(n: int) -> tuple[list[Row], str]:
    t_start = time.perf_counter()
    base = base_vectors(n)
    q, held = query_vectors(base)
    gt = ground_truth(base, q)
    rows = run_flat(base, q, gt, held)
    gc.collect()
    sh = train_shared(base)
    kept = sh.kept
    rows += run_ivf(sh, base, q, gt, held, "Flat", "PCA256 + IVF,Flat", [16, 32, 64], [])
    rows += run_ivf(sh, base, q, gt, held, "SQ8", "PCA256 + IVF,SQ8", [32, 64], [100])
    if n <= 200_000:  # 8-bit PQ64 took 2.5 min to build at 100k: past that, too slow here
        rows += run_ivf(sh, base, q, gt, held, "PQ64", "PCA256 + IVF,PQ64", [32, 64], [100])
    rows += run_ivf(sh, base, q, gt, held, "PQ64x4fs", "PCA256 + IVF,PQ64x4fs",
                    [16, 32, 64], [50, 100])
    gc.collect()
    rows += run_hnsw(sh, base, q, gt, held, [64, 128, 256], [100])
    KEEP.clear()
    s50, s99, srows = sqlite_fetch_ms(base, 100)
    notes = (f"- N = {n:,}, IVF lists = {nlist_for(n)}, training sample = {min(n, TRAIN):,} "
             f"({min(n, PQ8_TRAIN):,} for PQ64's codec), PCA keeps {kept:.1%} of the variance, "
             f"queries = 1,000 held-out + 1,000 edited copies, k = {K}\n"
             f"- reading 100 vectors by id from SQLite ({srows:,}-row table, warm page "
             f"cache): p50 {s50:.2f} ms, p99 {s99:.2f} ms\n"
             f"- this N took {time.perf_counter() - t_start:.0f} s")
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append",
                        help="library size (repeatable); default 100000 and 1000000")
    parser.add_argument("--append", action="store_true", help="append to BENCHMARKS.md")
    args = parser.parse_args()
    faiss.omp_set_num_threads(2)
    started = datetime.datetime.now(datetime.UTC)
    parts = []
    for n in args.n or [100_000, 1_000_000]:
        rows, notes = run(n)
        parts.append(table(rows) + "\n\n" + notes)
        print(parts[-1] + "\n", flush=True)
    if args.append:
        command = "python bench/index_options.py " + shlex.join(sys.argv[1:])
        text = BENCHMARKS.read_text()
        block = (f"\n{started:%Y-%m-%d %H:%M} UTC, {machine()}; `{command.strip()}`\n\n"
                 + "\n\n".join(parts) + "\n")
        if SECTION not in text:
            block = f"\n{SECTION}\n" + block
        BENCHMARKS.write_text(text.rstrip("\n") + "\n" + block)


if __name__ == "__main__":
    main()
