"""Search latency with and without re-ranking near ties (daemon/rerank.py), on a real daemon.

bench/daemon.py's method (its ``Bench``: `python -m findsimilar daemon run` with its own
data dir and socket; "socket connect + search call alone", timed from this process), on
one store: the 93 photos of ../shared/photos plus bench/daemon.py's library of 320x240
variants (``--library``, 0 for none; cached in --workdir), indexed once. The daemon is
then run twice on that store, first with ``FINDSIMILAR_RERANK_TIMEOUT=0`` (no pixel check:
the search as it was), then with the default (1 s), and each time asked:

* "edited copies": ``--queries`` edited copies of the shared photos (``MATCH_EDITS``,
  kinds and photos drawn by seed 17; not indexed: decoded and run through the model);
* "indexed photos": each shared photo itself (its vector read from the store);
* "indexed photos, again": the same a second time (their pixel verdicts now cached).

With a library, a third run (``FINDSIMILAR_MODEL_IDLE=1``) searches ``--cold`` library
variants none of the others searched (indexed: their near ties are checks alone), each
once the model worker has ended: what the first search after an idle spell waits for.

Printed per run and kind: p50 / p99 ms, of all searches and apart for those whose near
tie was checked and the others (the daemon's ``status`` metrics, ``search.reranked``,
read between searches, outside the timing), the shares checked and reordered, and rank-1
right (the original or a file showing its picture first) for the edited copies.

Usage: python bench/rerank_latency.py [--library 10000] [--queries 300] [--cold 10]
       [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import SHARED, shared_photos  # noqa: E402
from quality import equivalents  # noqa: E402

from daemon import Bench, load, machine, make_library, pct  # noqa: E402
from findsimilar.cli.client import DaemonClient  # noqa: E402
from tests.photo_edits import MATCH_EDITS, apply_match_edit  # noqa: E402

SEED = 17


def edited_queries(folder: Path, count: int) -> list[tuple[Path, Path]]:
    """(original, edited copy) pairs: ``count`` copies, kinds and photos drawn by SEED."""
    rng = random.Random(SEED)
    photos = shared_photos()
    out = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo, kind = rng.choice(photos), rng.choice(list(MATCH_EDITS))
        out.append((photo, apply_match_edit(kind, photo, folder / f"q{i:04d}", SEED)))
    return out


def timed_searches(b: Bench, paths: list[Path]
                   ) -> tuple[list[float], list[str | None], list[bool]]:
    """Seconds per search (connect + one call, as the CLI does), each first result, and
    whether its near tie was checked (the daemon's count, read between searches)."""
    times, firsts, checked = [], [], []
    for path in paths:
        before = reranked(b)["checked"]
        t = time.perf_counter()
        with DaemonClient(b.config, timeout=60) as client:
            answer = client.call("search", paths=[str(path)], k=10)[0]
        times.append(time.perf_counter() - t)
        checked.append(reranked(b)["checked"] > before)
        results = answer.get("results") or []
        firsts.append(results[0]["path"] if results else None)
    return times, firsts, checked


def reranked(b: Bench) -> dict[str, int]:
    return dict(b.call("status")["metrics"]["search"].get("reranked")
                or {"checked": 0, "reordered": 0})


def _ms(times: list[float], q: float) -> str:
    return f"{1000 * pct(times, q):.0f}" if times else "–"


def run(b: Bench, timeout: str, queries: list[tuple[Path, Path]]) -> list[str]:
    """Restart the daemon with ``FINDSIMILAR_RERANK_TIMEOUT=timeout`` and time the
    searches; rows for the table."""
    b.env["FINDSIMILAR_RERANK_TIMEOUT"] = timeout
    b.start_run()
    same = equivalents()
    timed_searches(b, [q for _, q in queries[:5]])  # warm up: the worker, its model
    rows = []
    for kind, paths in (("edited copies", [q for _, q in queries]),
                        ("indexed photos", shared_photos()),
                        ("indexed photos, again", shared_photos())):
        before = reranked(b)
        times, firsts, checked = timed_searches(b, paths)
        reordered = reranked(b)["reordered"] - before["reordered"]
        right = ""
        if kind == "edited copies":
            ok = [f is not None and f in same.get(str(o), {str(o)})
                  for (o, _), f in zip(queries, firsts, strict=True)]
            right = f"{sum(ok) / len(ok):.3f}"
        plain = [t for t, c in zip(times, checked, strict=True) if not c]
        tied = [t for t, c in zip(times, checked, strict=True) if c]
        rows.append(f"| {timeout} s | {kind} | {len(paths)} | {_ms(times, 50)} | "
                    f"{_ms(times, 99)} | {_ms(plain, 50)} / {_ms(plain, 99)} | "
                    f"{_ms(tied, 50)} / {_ms(tied, 99)} | "
                    f"{100 * sum(checked) / len(paths):.1f} % | "
                    f"{100 * reordered / len(paths):.1f} % | {right} |")
        print(rows[-1], file=sys.stderr)
    b.cli("daemon", "stop")
    b.forget_stopped()
    return rows


def cold_worker(b: Bench, paths: list[Path]) -> list[str]:
    """Each of ``paths`` searched once its daemon's model worker has ended; a row."""
    b.env.update(FINDSIMILAR_RERANK_TIMEOUT="1", FINDSIMILAR_MODEL_IDLE="1")
    b.start_run()
    times, checked = [], []
    for path in paths:
        while b.call("status")["worker"]["running"]:
            time.sleep(0.1)
        t, _, c = timed_searches(b, [path])
        times += t
        checked += c
    b.cli("daemon", "stop")
    b.forget_stopped()
    del b.env["FINDSIMILAR_MODEL_IDLE"]
    tied = [t for t, c in zip(times, checked, strict=True) if c]
    row = (f"| 1 s | library variants, worker cold | {len(paths)} | {_ms(times, 50)} | "
           f"{_ms(times, 99)} | – | {_ms(tied, 50)} / {_ms(tied, 99)} | "
           f"{100 * sum(checked) / len(paths):.1f} % | | |")
    print(row, file=sys.stderr)
    return [row]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "findsimilar-bench-daemon")
    ap.add_argument("--library", type=int, default=10_000, help="320x240 variants indexed")
    ap.add_argument("--queries", type=int, default=300, help="edited copies searched")
    ap.add_argument("--cold", type=int, default=10,
                    help="library variants searched with the model worker cold")
    args = ap.parse_args()
    workdir = args.workdir.absolute()
    library = make_library(workdir / "library", args.library) if args.library else []
    queries = edited_queries(workdir / "rerank-queries", args.queries)
    print(f"# {datetime.date.today()}, {machine()}; {load()}", file=sys.stderr)
    b = Bench(workdir)
    try:
        b.start_run()
        folders = [str(SHARED)] + ([str(workdir / "library")] if library else [])
        t = time.perf_counter()
        summary = json.loads(b.cli("index", "-q", "--json", *folders).stdout)
        print(f"# indexed {summary.get('extracted')} photos in {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
        b.cli("daemon", "stop")
        b.forget_stopped()
        rows = [r for timeout in ("0", "1") for r in run(b, timeout, queries)]
        if library and args.cold:
            rows += cold_worker(b, library[::max(1, len(library) // args.cold)][:args.cold])
    finally:
        b.close()
    print(f"# {datetime.date.today()}, {machine()}; end {load()}; "
          f"{len(shared_photos()) + len(library)} photos indexed")
    print("| re-rank timeout | queries | n | p50 ms | p99 ms | not checked: p50 / p99 ms "
          "| checked: p50 / p99 ms | near tie checked | reordered | rank 1 right |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
