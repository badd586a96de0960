"""Daemon latency, measured on a real daemon process over its Unix socket.

Prints, for `python -m findsimilar daemon run` with its own data dir and socket:

  1. watch -> searchable: a distinct photo (12 MP camera JPEG, or a 0.3 MP one) is
     shutil.copy'd into a watched folder; the clock runs from the copy's return until
     `status` counts it as indexed, and until a `search` with a byte-identical copy kept
     outside the folder returns the new path at rank 1 (score ~1.0). Polled every 10 ms,
     the daemon idle between copies; once with an (almost) empty store, once with the
     10,000-photo library indexed, plus 12 MP photos copied by GNU `cp` (which, unlike
     shutil.copy, changes no attribute after closing the file);
  2. `findsimilar PHOTO` end to end (the real console script: process start to results
     printed) with 10,000 photos indexed, timed by hyperfine (else a subprocess loop):
     a 12 MP query not in the index, a 0.3 MP one, and an indexed photo (no model
     call); with, as a breakdown, the client's start-up alone (`findsimilar --version`)
     and the daemon's share alone (connect + one `search` call, from this process);
  3. restart over 10,000 unchanged files in a watched folder: `findsimilar daemon stop`,
     `findsimilar daemon start`, then the time until the reconcile is done (status idle,
     nothing queued, a new 'reconciled' line per watched folder in DATA/daemon.log),
     and `extracted_since_start` must be 0.

The 10,000 library photos (320x240 JPEGs: crops, rotations and colour shifts of the
shared photos, 100 per folder) and the 0.3 MP photos are cached in --workdir; the
12 MP ones are bench/throughput.py's (cached in its folder). The store is new each run.

Usage: python bench/daemon.py [--markdown] [--workdir DIR] [--library 10000]
                              [--repeats 40] [--runs 30] [--restarts 3]
                              [--parts watch,search,restart]
About 15 minutes on 2 cores (indexing the library: 2-3 min; the watch rows: 7 min).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import shared_photos  # noqa: E402
from throughput import make_camera_jpegs  # noqa: E402

from findsimilar.cli.client import DaemonClient, DaemonUnavailable  # noqa: E402
from findsimilar.config import Config  # noqa: E402

POLL = 0.010  # seconds between polls
BIN = Path(sys.executable).parent  # the venv's bin: python and the findsimilar script


# -- photos ---------------------------------------------------------------------------------
def _sources(max_side: int) -> list[Image.Image]:
    """The distinct shared pictures, RGB, at most ``max_side`` pixels wide or high."""
    seen: set[bytes] = set()
    out = []
    for p in shared_photos():
        digest = hashlib.sha256(p.read_bytes()).digest()
        if p.suffix.lower() in (".jpg", ".png") and digest not in seen:
            seen.add(digest)
            with Image.open(p) as im:
                im = im.convert("RGB")
                im.thumbnail((max_side, max_side))
                out.append(im)
    return out


def _variant(src: Image.Image, seed: list[int], size: tuple[int, int],
             rotate: bool) -> Image.Image:
    """A distinct picture: random crop, rotation and per-channel colour shift."""
    rng = np.random.default_rng(seed)
    w, h = src.size
    cw, ch = int(w * rng.uniform(0.55, 1.0)), int(h * rng.uniform(0.55, 1.0))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = src.crop((x, y, x + cw, y + ch))
    if rotate:
        im = im.rotate(float(rng.uniform(-25, 25)), Image.Resampling.BILINEAR)
    im = im.resize(size, Image.Resampling.BILINEAR)
    arr = np.asarray(im, np.float32) * rng.uniform(0.75, 1.25, 3) + rng.uniform(-25, 25, 3)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _make_many(paths: list[Path], make: Callable[[int], Image.Image], quality: int) -> None:
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if not todo:
        return
    print(f"# making {len(todo)} photos in {paths[0].parent.parent} (cached for later runs)",
          file=sys.stderr)

    def one(i: int) -> None:
        paths[i].parent.mkdir(parents=True, exist_ok=True)
        tmp = paths[i].with_suffix(".tmp")
        make(i).save(tmp, "JPEG", quality=quality)
        tmp.rename(paths[i])

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        list(pool.map(one, todo))


def make_library(folder: Path, count: int, per_folder: int = 100) -> list[Path]:
    """``count`` distinct 320x240 JPEGs in folders of ``per_folder`` (cached)."""
    paths = [folder / f"d{i // per_folder:03d}" / f"lib_{i:05d}.jpg" for i in range(count)]
    if not all(p.exists() for p in paths):
        src = _sources(1024)
        _make_many(paths, lambda i: _variant(src[i % len(src)], [7, i], (320, 240), True), 85)
    return paths


def make_small(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 640x480 (0.3 MP) JPEGs (cached)."""
    paths = [folder / "small" / f"small_{i:04d}.jpg" for i in range(count)]
    if not all(p.exists() for p in paths):
        src = _sources(1600)
        _make_many(paths, lambda i: _variant(src[i % len(src)], [11, i], (640, 480), False), 90)
    return paths


# -- statistics and rows ----------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


@dataclass
class Row:
    measure: str
    values: list[float]  # seconds
    unit: str  # "s" or "ms"
    goal: str = ""
    ok: bool | None = None
    note: str = ""

    def cells(self) -> tuple[str, str, str, str]:
        scale = 1000.0 if self.unit == "ms" else 1.0
        fmt = "{:.0f}" if self.unit == "ms" else "{:.2f}"
        if len(self.values) == 1:
            return "1", fmt.format(self.values[0] * scale) + " " + self.unit, "", ""
        return (str(len(self.values)),
                fmt.format(pct(self.values, 50) * scale) + " " + self.unit,
                fmt.format(pct(self.values, 95) * scale) + " " + self.unit,
                fmt.format(max(self.values) * scale) + " " + self.unit)

    def verdict(self) -> str:
        if self.ok is None:
            return self.goal
        return f"{self.goal}: {'met' if self.ok else 'MISSED'}"


def print_table(rows: list[Row], markdown: bool) -> None:
    if markdown:
        print("| measure | n | p50 | p95 | max | goal |")
        print("|---|---:|---:|---:|---:|---|")
        for r in rows:
            n, p50, p95, mx = r.cells()
            name = f"**{r.measure}**" if r.ok is not None else r.measure
            goal = r.verdict() + (f" ({r.note})" if r.note else "")
            print(f"| {name} | {n} | {p50} | {p95} | {mx} | {goal} |")
        return
    print(f"{'measure':62s} {'n':>4s} {'p50':>9s} {'p95':>9s} {'max':>9s}  goal")
    for r in rows:
        n, p50, p95, mx = r.cells()
        note = f" ({r.note})" if r.note else ""
        print(f"{r.measure:62s} {n:>4s} {p50:>9s} {p95:>9s} {mx:>9s}  {r.verdict()}{note}")


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    flags = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        text = fh.read()
        flags = " (AVX-512 BF16)" if "avx512_bf16" in text else ""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{len(os.sched_getaffinity(0))} cores of {model}{flags}, {mem:.0f} GiB, "
            f"Python {platform.python_version()}")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


# -- the daemon -----------------------------------------------------------------------------
class Bench:
    def __init__(self, workdir: Path) -> None:
        self.run_dir = workdir / "run"
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.data = self.run_dir / "data"
        self.data.mkdir(parents=True)
        self.log = self.data / "daemon.log"
        # Unix socket paths are limited to ~107 bytes: a short one in /tmp.
        self.socket = Path(f"/tmp/fsbd-{os.getpid()}.sock")
        self.config = Config(data_dir=self.data.absolute(), socket_path=self.socket)
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("FINDSIMILAR_NO_DAEMON", "FINDSIMILAR_EXTRACTOR",
                                 "PYTHONDONTWRITEBYTECODE")}
        # Bytecode cached (in our workdir, not the repo) as in an installed copy: without
        # it every `findsimilar` run compiles the CLI modules again (~15 ms).
        self.env.update(FINDSIMILAR_DATA_DIR=str(self.config.data_dir),
                        FINDSIMILAR_SOCKET=str(self.socket),
                        PYTHONPYCACHEPREFIX=str(workdir / "pycache"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: set[int] = set()  # every daemon we started (killed in close())
        self._client: DaemonClient | None = None

    # the socket, with one reconnect (the server drops connections idle for 60 s)
    def call(self, command: str, **args: Any) -> Any:
        for attempt in (0, 1):
            if self._client is None:
                self._client = DaemonClient(self.config, timeout=120).connect()
            try:
                return self._client.call(command, **args)
            except DaemonUnavailable:
                self._client = None
                if attempt:
                    raise
        raise AssertionError

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "findsimilar"), *args], env=self.env, text=True,
                              capture_output=True, check=check, stdin=subprocess.DEVNULL)

    def start_run(self) -> float:
        """`python -m findsimilar daemon run` in the background; seconds until it answers."""
        t = time.perf_counter()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "python"), "-m", "findsimilar", "daemon", "run"], env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.pids.add(self.proc.pid)
        self._wait_answer(self.proc)
        return time.perf_counter() - t

    def _wait_answer(self, proc: subprocess.Popen[bytes] | None, wait: float = 120) -> int:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the daemon exited ({proc.returncode}); see {self.log}")
            with contextlib.suppress(DaemonUnavailable):
                pid = int(self.call("ping")["pid"])
                self.pids.add(pid)
                return pid
            time.sleep(POLL)
        raise RuntimeError(f"the daemon did not answer in {wait:.0f} s; see {self.log}")

    def reconciled_lines(self, root: Path) -> int:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return 0
        return text.count(f"reconciled {root}:")

    def wait_idle(self, timeout: float = 600, logs: dict[Path, int] | None = None,
                  ) -> dict[str, Any]:
        """Poll until status is idle with nothing queued (and, if given, until each root
        has more 'reconciled' log lines than counted before)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.call("status")
            if st["state"] == "idle" and st["queued"] == 0 and all(
                    self.reconciled_lines(r) > n for r, n in (logs or {}).items()):
                return st
            time.sleep(POLL)
        raise RuntimeError(f"the daemon was not idle within {timeout:.0f} s")

    def forget_stopped(self) -> None:
        """Drop daemons that have exited (so close() never signals a reused pid)."""
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        for pid in list(self.pids):
            if not _alive(pid):
                self.pids.discard(pid)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        for pid in sorted(self.pids):
            _terminate(pid, self.proc if self.proc and self.proc.pid == pid else None)
        with contextlib.suppress(OSError):
            self.socket.unlink()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def _terminate(pid: int, proc: subprocess.Popen[bytes] | None) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if not _alive(pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=1)


def memory_note(b: Bench, status: dict[str, Any]) -> str:
    """The RSS of the daemon and of its model worker (which holds torch and the decoders)."""
    def rss(pid: int | None) -> str:
        with contextlib.suppress(OSError, StopIteration):
            line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if x.startswith("VmRSS:"))
            return f"{int(line.split()[1]) / 1024:.0f} MB"
        return "-"

    worker = status.get("worker") or {}
    return (f"RSS after indexing: daemon {rss(status['daemon']['pid'])}, model worker "
            f"{rss(worker.get('pid')) if worker.get('pid') else 'not running'}")


# -- 1. watch -> searchable -------------------------------------------------------------------
def cp(src: Path, dest: Path) -> None:
    """GNU cp: open, write, close, and no attribute change after the close."""
    subprocess.run(["cp", str(src), str(dest)], check=True)


def watch_latency(b: Bench, inbox: Path, photos: list[Path], timeout: float = 30.0,
                  copy: Callable[[Path, Path], object] = shutil.copy,
                  ) -> tuple[list[float], list[float], float]:
    """Per photo: seconds from the copy's return to (status counts it, search finds it);
    also the lowest rank-1 score seen."""
    to_status, to_search, low = [], [], 1.0
    for src in photos:
        b.wait_idle()
        time.sleep(0.5)  # the daemon idle between copies
        before = b.call("status")["indexed"]
        dest = inbox / src.name
        copy(src, dest)
        t0 = time.perf_counter()
        deadline = t0 + timeout
        while b.call("status")["indexed"] <= before:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{dest} not indexed within {timeout:.0f} s")
            time.sleep(POLL)
        to_status.append(time.perf_counter() - t0)
        while True:  # the outside copy is not indexed: the daemon runs the model on it
            hits = b.call("search", paths=[str(src)], k=1)[0].get("results") or []
            if hits and hits[0]["path"] == str(dest):
                to_search.append(time.perf_counter() - t0)
                low = min(low, float(hits[0]["score"]))
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{dest} not found by search within {timeout:.0f} s: {hits}")
            time.sleep(POLL)
    return to_status, to_search, low


def watch_rows(b: Bench, inbox: Path, sets: list[tuple[str, list[Path]]], store: str,
               copy: Callable[[Path, Path], object] = shutil.copy) -> list[Row]:
    rows = []
    for label, photos in sets:
        print(f"# watch -> searchable, {label}, {store} ({load()})", file=sys.stderr)
        st, se, low = watch_latency(b, inbox, photos, copy=copy)
        rows.append(Row(f"watch -> indexed (status), {label}, {store}", st, "s"))
        rows.append(Row(f"watch -> searchable (rank 1), {label}, {store}", se, "s",
                        "p95 <= 2 s", pct(se, 95) <= 2.0, f"min score {low:.4f}"))
    return rows


# -- 2. findsimilar PHOTO ---------------------------------------------------------------------
def time_commands(commands: dict[str, list[str]], runs: int, warmup: int, env: dict[str, str],
                  out: Path) -> dict[str, list[float]]:
    """Wall-clock seconds per run of each command: hyperfine if installed, else a loop."""
    hf = shutil.which("hyperfine")
    if hf:
        cmd = [hf, "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(runs),
               "--export-json", str(out)]
        for name, argv in commands.items():
            cmd += ["-n", name, shlex.join(argv)]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(out.read_text())["results"]
        return {r["command"]: r["times"] for r in results}
    times: dict[str, list[float]] = {}
    for name, argv in commands.items():
        for i in range(warmup + runs):
            t = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
            if i >= warmup:
                times.setdefault(name, []).append(time.perf_counter() - t)
    return times


def search_rows(b: Bench, queries: dict[str, Path], runs: int, warmup: int) -> list[Row]:
    script = str(BIN / "findsimilar")
    for path in queries.values():  # each answers, with results
        out = b.cli(str(path)).stdout.splitlines()
        assert out and out[0][:1].isdigit(), out
    commands = {f"findsimilar PHOTO, {label}": [script, str(p)] for label, p in queries.items()}
    commands["findsimilar --version (client start-up only)"] = [script, "--version"]
    print(f"# findsimilar PHOTO x {runs} ({'hyperfine' if shutil.which('hyperfine') else 'loop'}"
          f", {load()})", file=sys.stderr)
    times = time_commands(commands, runs, warmup, b.env, b.run_dir / "hyperfine.json")
    rows = []
    for name, values in times.items():
        goal = ("p50 <= 150 ms", pct(values, 50) <= 0.150) if "12 MP" in name else ("", None)
        rows.append(Row(name, values, "ms", *goal))
    for label, path in queries.items():  # the daemon's share: connect + one call, as the CLI
        calls = []
        for i in range(warmup + runs):
            t = time.perf_counter()
            with DaemonClient(b.config, timeout=60) as client:
                client.call("search", paths=[os.path.abspath(path)], k=10)
            if i >= warmup:
                calls.append(time.perf_counter() - t)
        rows.append(Row(f"  socket connect + search call alone, {label}", calls, "ms"))
    return rows


# -- 3. restart -------------------------------------------------------------------------------
def restart_rows(b: Bench, roots: list[Path], restarts: int) -> list[Row]:
    stops, answers, done = [], [], []
    extracted = []
    for i in range(restarts):
        print(f"# restart {i + 1}/{restarts} ({load()})", file=sys.stderr)
        t = time.perf_counter()
        b.cli("daemon", "stop")
        stops.append(time.perf_counter() - t)
        b.forget_stopped()
        time.sleep(1.0)
        counts = {r: b.reconciled_lines(r) for r in roots}
        t0 = time.perf_counter()
        b.cli("daemon", "start")  # returns once the daemon answers a ping
        answers.append(time.perf_counter() - t0)
        b._wait_answer(None)  # note its pid, to kill it at the end whatever happens
        st = b.wait_idle(timeout=300, logs=counts)
        done.append(time.perf_counter() - t0)
        extracted.append(st["extracted_since_start"])
    return [
        Row("daemon stop (saves the index, waits for exit)", stops, "s"),
        Row("daemon start -> answers", answers, "s"),
        Row(f"daemon start -> reconciled ({len(roots)} roots, all unchanged)",
            done, "s", "<= 5 s, nothing extracted", max(done) <= 5.0 and not any(extracted),
            f"extracted_since_start {extracted}"),
    ]


# -- main -------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "findsimilar-bench-daemon")
    ap.add_argument("--cam-dir", type=Path,
                    default=Path(tempfile.gettempdir()) / "findsimilar-bench-12mp" / "photos",
                    help="cache of 12 MP JPEGs (shared with bench/throughput.py)")
    ap.add_argument("--library", type=int, default=10_000, help="photos indexed")
    ap.add_argument("--repeats", type=int, default=40, help="copies per watch measurement")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per query")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--parts", default="watch,search,restart",
                    help="which measurements (comma-separated; the library is always indexed)")
    ap.add_argument("--markdown", action="store_true", help="print rows for BENCHMARKS.md")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if parts - {"watch", "search", "restart"}:
        ap.error(f"unknown parts: {', '.join(sorted(parts - {'watch', 'search', 'restart'}))}")

    workdir = args.workdir.absolute()
    n = args.repeats
    n_cp = max(1, n // 2)
    cam = make_camera_jpegs(args.cam_dir, 2 * n + n_cp + 1)  # 2 watch sets, 1 cp set, 1 query
    small = make_small(workdir, 2 * n + 1)
    library = make_library(workdir / "library", args.library)
    header = (f"# {datetime.date.today()}, {machine()}; {load()}\n"
              f"# {args.library} library photos 320x240; 12 MP JPEGs avg "
              f"{np.mean([p.stat().st_size for p in cam]) / 1e6:.1f} MB; 0.3 MP avg "
              f"{np.mean([p.stat().st_size for p in small]) / 1e3:.0f} KB")
    print(header, file=sys.stderr)

    b = Bench(workdir)
    rows: list[Row] = []
    notes: list[str] = []
    try:
        inbox = b.run_dir / "inbox"
        inbox.mkdir()
        first_start = b.start_run()
        notes.append(f"daemon run -> answers: {first_start:.2f} s (first start, empty store)")
        b.cli("watch", "add", str(inbox))
        b.wait_idle(logs={inbox: 0})

        # 1a. watch -> searchable with an (almost) empty store
        if "watch" in parts:
            rows += watch_rows(b, inbox, [("12 MP", cam[:n]), ("0.3 MP", small[:n])],
                               "empty store")

        # the library, through the daemon
        print(f"# indexing {len(library)} photos ({load()})", file=sys.stderr)
        t = time.perf_counter()
        summary = json.loads(b.cli("index", "-q", "--json", str(workdir / "library")).stdout)
        took = time.perf_counter() - t
        st = b.call("status")
        notes.append(f"findsimilar index {len(library)} photos: {took:.1f} s = "
                     f"{len(library) / took:.0f} images/s ({summary['extracted']} through the "
                     f"model, {len(summary['failed'])} failed; {st['unique_images']} unique "
                     f"images, index {st['index_bytes'] / 2**20:.0f} MiB)")
        print("# " + notes[-1], file=sys.stderr)
        notes.append(memory_note(b, st))

        # 1b. watch -> searchable with the library indexed
        store = f"{len(library):,} indexed"
        if "watch" in parts:
            rows += watch_rows(b, inbox, [("12 MP", cam[n:2 * n]), ("0.3 MP", small[n:2 * n])],
                               store)
            # the same through `cp`, which changes no attribute after closing the file
            rows += watch_rows(b, inbox, [("12 MP by cp", cam[2 * n:2 * n + n_cp])], store,
                               copy=cp)

        # 2. findsimilar PHOTO
        queries = {"12 MP, not indexed": cam[-1], "0.3 MP, not indexed": small[2 * n],
                   "indexed photo (no model call)": library[len(library) // 2]}
        if "search" in parts:
            rows += search_rows(b, queries, args.runs, args.warmup)

        # 3. the library becomes a watched folder; then restarts
        if "restart" in parts:
            lib_root = workdir / "library"
            before = b.reconciled_lines(lib_root)
            t = time.perf_counter()
            b.cli("watch", "add", str(lib_root))
            st = b.wait_idle(logs={lib_root: before})
            rows.append(Row(f"watch add of the {len(library):,}-photo folder -> reconciled",
                            [time.perf_counter() - t], "s"))
            notes.append(f"extracted_since_start before the restarts: "
                         f"{st['extracted_since_start']}")
            rows += restart_rows(b, [inbox, lib_root], args.restarts)
    finally:
        b.close()
    print(header)
    for note in notes:
        print("# " + note)
    print(f"# end: {load()}")
    print_table(rows, args.markdown)


if __name__ == "__main__":
    main()
