"""The daemon's own index at 10k, 100k and 1M photos: search latency, recall, memory,
restart and end-to-end query time.

For each N, a real data dir is made once (cached in --workdir): a store with N photos
(file rows + 1280-d vectors: index_options.py's synthetic descriptors, which look like
EfficientNet-Lite0 + GeM ones) and the index file that `open_index` builds for it, in
the layout the daemon picks (exact up to 50,000 photos, compressed above), so the
index is the one a daemon would have. Then:

  * in this process, through the real `VectorIndex.search` (compressed: re-scored from
    SQLite): single-query k=10 latency p50/p99 over 1,000 queries, and recall@10
    against exact search (index_options.py's 1,000 held-out + 1,000 edited queries);
  * a real `findsimilar daemon run` on that data dir: time from start to the first
    answered ping, VmRSS once idle, and (VmRSS - VmRSS of a daemon on an empty data dir)
    / N = memory per photo;
  * `findsimilar PHOTO` end to end (the console script, a 0.3 MP shared photo not in
    the store, so the model runs): p50/p99 over --runs runs.

    python bench/index_scale.py                      # 10k, 100k, 1M: ~25 min first time
    python bench/index_scale.py --sizes 10000,100000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_options import base_vectors, ground_truth, query_vectors  # noqa: E402

from findsimilar.config import Config  # noqa: E402
from findsimilar.daemon.storage.index_build import open_index  # noqa: E402
from findsimilar.daemon.storage.store import Store  # noqa: E402

DIM = 1280
EXTRACTOR = "efficientnet-lite0-gem/v1"  # the default extractor's id (name/version)
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FINDSIMILAR_SHARED_PHOTOS", REPO.parent / "shared" / "photos"))
QUERY_PHOTO = SHARED / "opencv" / "fruits.jpg"
BLOCK = 50_000


def index_file(data: Path) -> Path:
    return data / f"index-{EXTRACTOR.replace('/', '_')}.faiss"


def log(msg: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def make_data_dir(folder: Path, n: int) -> Path:
    """A data dir holding a store of ``n`` photos and its index file (cached)."""
    data = folder / f"data-{n}"
    if (data / "complete").exists():
        return data
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    t0 = time.perf_counter()
    Store(data / "store.db").close()  # the schema, through the real migrations
    db = sqlite3.connect(data / "store.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("insert or replace into settings values ('extractor', ?)", [EXTRACTOR])
    base = base_vectors(n)
    for start in range(0, n, BLOCK):
        block = np.asarray(base[start:start + BLOCK])
        rows = range(start, start + len(block))
        db.executemany("insert into features (id, content_hash, extractor, vector, created_at) "
                       "values (?, ?, ?, ?, 0)",
                       ((i + 1, f"h{i:08d}", EXTRACTOR, block[i - start].tobytes())
                        for i in rows))
        db.executemany("insert into files (path, size, mtime_ns, content_hash, status, format, "
                       "width, height) values (?, 1, 1, ?, 'ok', 'JPEG', 4000, 3000)",
                       ((f"/synthetic/{i // 1000:04d}/photo{i:07d}.jpg", f"h{i:08d}")
                        for i in rows))
        db.commit()
    db.close()
    log(f"store of {n:,} photos in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    config = Config(data_dir=data)
    store = Store(config.store_path)
    index, _ = open_index(index_file(data), store, EXTRACTOR, DIM,
                          lambda rows: store.vectors(rows, DIM), config.compress_above)
    index.save(index_file(data))
    store.close()
    log(f"{index.layout} index of {n:,} built in {time.perf_counter() - t0:.0f} s")
    (data / "complete").touch()
    return data


def search_figures(data: Path, n: int) -> dict[str, float | str]:
    """Latency and recall of the real VectorIndex on this data dir."""
    store = Store(data / "store.db")
    index, repair = open_index(index_file(data), store, EXTRACTOR, DIM,
                               lambda rows: store.vectors(rows, DIM), 0)
    assert not repair.reason, repair
    q, held = query_vectors(base_vectors(n))
    truth = ground_truth(base_vectors(n), q) + 1  # feature ids are row + 1
    for query in q[:50]:
        index.search(query[None], 10)  # warm the page cache as a running daemon's is
    times, found = [], []
    for query in q:
        t0 = time.perf_counter()
        _, ids = index.search(query[None], 10)
        times.append(time.perf_counter() - t0)
        found.append(ids[0])
    recall = float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth,
                                                                         strict=True)]))
    ms = np.array(times[:1000]) * 1000
    store.close()
    return {"layout": index.layout, "lists": index.lists, "recall10": round(recall, 4),
            "search_p50_ms": round(float(np.percentile(ms, 50)), 2),
            "search_p99_ms": round(float(np.percentile(ms, 99)), 2),
            "index_file_mb": round((index_file(data)).stat().st_size / 1e6, 1)}


def daemon_env(data: Path, sock: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINDSIMILAR_")}
    home = data.parent / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), FINDSIMILAR_DATA_DIR=str(data), FINDSIMILAR_SOCKET=str(sock),
               FINDSIMILAR_PRECHECK_AFTER="0", XDG_DATA_HOME=str(home / "xdg"))
    return env


def vm(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def run_daemon(data: Path, runs: int) -> dict[str, float]:
    """Start a daemon on ``data``; start-up time, idle RSS, `findsimilar PHOTO` latency."""
    sock_dir = Path(tempfile.mkdtemp(prefix="fsb-", dir="/tmp"))
    env = daemon_env(data, sock_dir / "d.sock")
    exe = Path(sys.executable).with_name("findsimilar")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "findsimilar", "daemon", "run"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def status() -> dict:
        out = subprocess.run([str(exe), "status", "--json"], env=env, capture_output=True,
                             text=True)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    try:
        while not status().get("daemon"):  # offline status (read from the store) until then
            time.sleep(0.05)
            assert proc.poll() is None, "the daemon exited"
        ready = time.perf_counter() - t0
        while status()["state"] != "idle":
            time.sleep(0.2)
        times = []
        for _ in range(runs + 3):
            t = time.perf_counter()
            out = subprocess.run([str(exe), str(QUERY_PHOTO), "-k", "10"], env=env,
                                 capture_output=True, text=True)
            times.append(time.perf_counter() - t)
            assert out.returncode == 0 and out.stdout.count("\n") >= 1, out
        time.sleep(1)
        ms = np.array(times[3:]) * 1000
        return {"ready_s": round(ready, 2), "rss_bytes": vm(proc.pid, "VmRSS"),
                "peak_bytes": vm(proc.pid, "VmHWM"),
                "e2e_p50_ms": round(float(np.percentile(ms, 50)), 1),
                "e2e_p99_ms": round(float(np.percentile(ms, 99)), 1)}
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(sock_dir, ignore_errors=True)


def empty_daemon(workdir: Path, runs: int) -> dict[str, float]:
    data = workdir / "data-0"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    store = Store(data / "store.db")
    store.set_setting("extractor", EXTRACTOR)
    with store.transaction():  # one photo, so that a query has something to find
        [fid] = store.add_features(EXTRACTOR, [("h0", base_vectors(1)[0])])
        store.upsert_files([{"path": "/synthetic/one.jpg", "size": 1, "mtime_ns": 1,
                             "content_hash": "h0", "status": "ok"}])
    store.close()
    return run_daemon(data, runs)


def scale_table(scale: dict[str, dict]) -> str:
    """The per-size table (markdown) of main()'s results."""
    lines = ["| photos | index | search p50 / p99 ms | recall@10 | index file MB "
             "| daemon RSS MB | bytes/photo | start to ready s "
             "| `findsimilar PHOTO` p50 / p99 ms |",
             "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n, f in scale.items():
        if n == "0":
            lines.append(f"| 1 (baseline) | exact | | | | {f['rss_bytes'] / 1e6:,.0f} | "
                         f"| {f['ready_s']} | {f['e2e_p50_ms']} / {f['e2e_p99_ms']} |")
            continue
        layout = f["layout"] + (f", {f['lists']:,} lists" if f["lists"] else "")
        lines.append(f"| {int(n):,} | {layout} | {f['search_p50_ms']} / {f['search_p99_ms']} "
                     f"| {f['recall10']:.3f} | {f['index_file_mb']:,} "
                     f"| {f['rss_bytes'] / 1e6:,.0f} | {f['bytes_per_photo']:,} "
                     f"| {f['ready_s']} | {f['e2e_p50_ms']} / {f['e2e_p99_ms']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/findsimilar-bench-scale"))
    ap.add_argument("--runs", type=int, default=30, help="`findsimilar PHOTO` runs per size")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    results: dict[str, dict] = {"0": empty_daemon(args.workdir, args.runs)}
    log(f"empty daemon: {results['0']}")
    for n in (int(s) for s in args.sizes.split(",")):
        data = make_data_dir(args.workdir, n)
        figures: dict = {**search_figures(data, n), **run_daemon(data, args.runs)}
        figures["bytes_per_photo"] = round((figures["rss_bytes"] - results["0"]["rss_bytes"]) / n)
        results[str(n)] = figures
        log(f"{n:,}: {figures}")
    print(scale_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
