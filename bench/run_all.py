"""The benchmark suite: every performance goal of issue 6 in one run.

    python bench/run_all.py            # ~40 min on 2 cores the first time (caches data)
    python bench/run_all.py --quick    # 10k and 100k only, fewer runs (~10 min)

Runs, on this machine, one after another (nothing else should be running):

 1. indexing throughput on 12 MP camera JPEGs (bench/throughput.py's files and code),
    next to what the machine can do in the same run: decoding alone on both cores, the
    model alone, and the two together (both cores busy: the real limit, since every
    image needs both);
 2. the daemon's index at 10k, 100k and 1M photos (bench/index_scale.py): search
    p50/p99, recall@10 against exact search, daemon RSS and bytes per photo, start to
    ready, `findsimilar PHOTO` end to end;
 3. with a real 10,000-photo watched library (bench/daemon.py --parts search,restart):
    `findsimilar PHOTO` end to end and restart/reconcile time.

Prints a table against the goals and appends it, with the details, to BENCHMARKS.md
(use --no-append to only print).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))


def log(msg: str) -> None:
    print(f"# {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def throughput(count: int) -> dict[str, float]:
    from throughput import (
        bench_decode_only,
        bench_findsimilar,
        bench_model_only,
        make_camera_jpegs,
    )

    from findsimilar.config import Config

    workdir = Path(tempfile.gettempdir()) / "findsimilar-bench-12mp"
    files = make_camera_jpegs(workdir / "photos", count)
    end_to_end = bench_findsimilar(files, workdir)
    decode = bench_decode_only(files)  # both cores
    threads = Config(data_dir=workdir).model_threads
    model = bench_model_only()  # the daemon's model threads (one per two cores)
    cores = max(1, threads * 2)
    # Core-seconds per image: decoding takes cores/decode, the model threads/model.
    both = cores / (cores / decode + threads / model)
    return {"end_to_end": end_to_end, "decode_only": decode, "model_only": model,
            "decode_and_model": both}


def run_json(args: list[str], out: Path) -> dict:
    log(" ".join(args))
    subprocess.run([sys.executable, *args, "--json", str(out)], check=True, cwd=REPO)
    return json.loads(out.read_text())


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                  if ln.startswith("Model name")), platform.machine())
    import faiss
    import torch

    cpus = len(os.sched_getaffinity(0))
    return (f"{model}, {cpus} cores, Python {platform.python_version()}, torch "
            f"{torch.__version__}, faiss {faiss.__version__}")


def load() -> str:
    """The 1-minute load average: > ~0.5 means something else ran beside the benchmark."""
    return f"{os.getloadavg()[0]:.2f}"


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=REPO)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, cwd=REPO).stdout.strip()
    return out.stdout.strip() + (" + uncommitted changes" if dirty else "")


def goals_table(t: dict[str, float], scale: dict[str, dict], largest: str) -> str:
    big = scale[largest]
    rows = [
        ("indexing, 12 MP JPEGs", f"{t['end_to_end']:.1f} images/s", ">= 35 images/s",
         t["end_to_end"] >= 35),
        ("  decode-only ceiling (same run, both cores)", f"{t['decode_only']:.1f} images/s",
         "", None),
        ("  end to end / decode-only", f"{t['end_to_end'] / t['decode_only']:.2f}", "", None),
        ("  decode + model ceiling (both cores busy)", f"{t['decode_and_model']:.1f} images/s",
         "", None),
        ("  end to end / decode + model", f"{t['end_to_end'] / t['decode_and_model']:.2f}",
         "", None),
    ]
    for n, f in scale.items():
        if n == "0":
            continue
        label = f"{int(n):,} photos"
        rows.append((f"search p50 / p99, {label} ({f['layout']})",
                     f"{f['search_p50_ms']} / {f['search_p99_ms']} ms",
                     "p99 <= 50 ms at 1M" if n == largest else "", None if n != largest
                     else f["search_p99_ms"] <= 50))
        rows.append((f"recall@10 vs exact, {label}", f"{f['recall10']:.3f}", ">= 0.95",
                     f["recall10"] >= 0.95))
    rows += [
        (f"daemon memory per photo, {int(largest):,} photos",
         f"{big['bytes_per_photo']:,} bytes (RSS {big['rss_bytes'] / 1e6:,.0f} MB)",
         "<= 1 KB at 1M", big["bytes_per_photo"] <= 1024),
        (f"`findsimilar PHOTO` end to end, {int(largest):,} photos",
         f"{big['e2e_p50_ms']} / {big['e2e_p99_ms']} ms (p50 / p99)", "", None),
        (f"daemon start to ready, {int(largest):,} photos", f"{big['ready_s']} s", "", None),
    ]
    lines = ["| measure | result | goal | met |", "|---|---:|---|---|"]
    for name, value, goal, met in rows:
        mark = "" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {name} | {value} | {goal} | {mark} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="10k and 100k photos, fewer runs, no 10k-library daemon part")
    ap.add_argument("--no-append", action="store_true", help="do not touch BENCHMARKS.md")
    args = ap.parse_args()
    started = time.perf_counter()
    head = (f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {commit()}; "
            f"{machine()}; load average at start {load()}")
    log(head)
    t = throughput(200)  # the cached set: bench_findsimilar indexes the whole folder
    log(f"throughput {t}")
    sizes = "10000,100000" if args.quick else "10000,100000,1000000"
    with tempfile.TemporaryDirectory() as tmp:
        scale = run_json(["bench/index_scale.py", "--sizes", sizes,
                          "--runs", "10" if args.quick else "30"], Path(tmp) / "scale.json")
    largest = sizes.split(",")[-1]
    daemon_rows = ""
    if not args.quick:
        log("bench/daemon.py --parts search,restart")
        daemon_rows = subprocess.run(
            [sys.executable, "bench/daemon.py", "--parts", "search,restart", "--markdown"],
            check=True, cwd=REPO, capture_output=True, text=True).stdout
    table = goals_table(t, scale, largest)
    from index_scale import scale_table as per_size

    scale_table = per_size(scale)
    took = (time.perf_counter() - started) / 60
    section = (f"\n## Benchmark suite: {head}\n\n`python bench/run_all.py"
               f"{' --quick' if args.quick else ''}` ({took:.0f} min; load average at the "
               f"end {load()})\n\n{table}\n\n"
               f"Per size (bench/index_scale.py; synthetic descriptors, real store, index "
               f"and daemon):\n\n{scale_table}\n")
    if daemon_rows:
        section += f"\nA real 10,000-photo watched library (bench/daemon.py):\n\n{daemon_rows}\n"
    print(section)
    if not args.no_append:
        with open(REPO / "BENCHMARKS.md", "a") as fh:
            fh.write(section)
        log("appended to BENCHMARKS.md")


if __name__ == "__main__":
    main()
