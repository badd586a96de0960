"""What the daemon weighs once it is quiet, with 10,000 photos indexed (exact index).

A real `python -m findsimilar daemon run` (its own data dir and socket) indexes the
library of bench/daemon.py (10,000 distinct 320x240 JPEGs, cached in --workdir) with
`findsimilar index`, then nothing happens for --quiet seconds (FINDSIMILAR_MODEL_IDLE is
--model-idle, so the model worker ends meanwhile). Then, from /proc:

  * the daemon's RSS and peak RSS (VmHWM: indexing went through it), and whether any
    libtorch or OpenCV library is mapped in it;
  * the model worker: its pid while indexing, and whether it is gone;
  * the first search by content after the worker ended (a photo not in the library:
    the daemon starts a worker for it), wall time of the `search` call; then the daemon's
    RSS again, and the worker's;
  * after --quiet more seconds: the daemon's RSS, and whether the worker ended again.

Works on a daemon without a model worker too (the figures of the one it replaced: the
model then lives in the daemon).

Usage: python bench/idle_memory.py [--workdir DIR] [--library 10000] [--quiet 15]
                                   [--model-idle 5] [--markdown]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemon import BIN, load, machine, make_library, make_small  # noqa: E402
from findsimilar.cli.client import DaemonClient, DaemonUnavailable  # noqa: E402
from findsimilar.config import Config  # noqa: E402


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes (empty if it is gone)."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) * 1024
    return out


def mapped(pid: int, *names: str) -> int:
    """How many lines of ``pid``'s memory map name a file containing one of ``names``."""
    try:
        text = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if any(n in line for n in names))


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


class Daemon:
    """A real `findsimilar daemon run` in WORKDIR/NAME (a fresh data dir), with ENV on top
    of this process's environment less its FINDSIMILAR_* (also used by bench/selfcheck.py)."""

    def __init__(self, workdir: Path, name: str = "idle-run", **env: str) -> None:
        self.dir = workdir / name
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "data").mkdir(parents=True)
        self.socket = Path(f"/tmp/fsim-{name}-{os.getpid()}.sock")
        self.config = Config(data_dir=(self.dir / "data").absolute(), socket_path=self.socket)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FINDSIMILAR_")}
        self.env.update(FINDSIMILAR_DATA_DIR=str(self.config.data_dir),
                        FINDSIMILAR_SOCKET=str(self.socket), **env)
        self.log = self.dir / "daemon.log"
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(BIN / "python"), "-m", "findsimilar", "daemon",
                                          "run"], env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(DaemonUnavailable):
                self.call("ping")
                return
            time.sleep(0.05)
        raise RuntimeError(f"the daemon did not answer; see {self.log}")

    def call(self, command: str, **args: Any) -> Any:
        with DaemonClient(self.config, timeout=600) as client:
            return client.call(command, **args)

    def worker_pid(self) -> int | None:
        worker = self.call("status").get("worker")
        return worker.get("pid") if isinstance(worker, dict) else None

    def wait_idle(self) -> None:
        while True:
            st = self.call("status")
            if st["state"] == "idle" and st["queued"] == 0:
                return
            time.sleep(0.1)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.socket.unlink()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    library = make_library(args.workdir / "library", args.library)
    query = make_small(args.workdir, 1)[0]  # a 0.3 MP photo the library does not hold
    d = Daemon(args.workdir, FINDSIMILAR_MODEL_IDLE=str(args.model_idle))
    pid = d.proc.pid
    out: dict[str, Any] = {"daemon_start_rss": proc_status(pid).get("VmRSS")}
    try:
        t = time.perf_counter()
        seen: set[int] = set()
        indexing = subprocess.Popen([str(BIN / "findsimilar"), "index", "-q", "--json",
                                     str(args.workdir / "library")], env=d.env,
                                    stdout=subprocess.PIPE, text=True)
        while indexing.poll() is None:  # note the workers that did the indexing
            with contextlib.suppress(DaemonUnavailable):
                if (w := d.worker_pid()) is not None:
                    seen.add(w)
            time.sleep(0.5)
        summary = json.loads(indexing.stdout.read())  # type: ignore[union-attr]
        out["index_seconds"] = time.perf_counter() - t
        out["extracted"] = summary["extracted"]
        d.wait_idle()
        time.sleep(args.quiet)
        st = d.call("status")
        out.update(vectors=st["vectors"], layout=(st.get("index") or {}).get("layout"),
                   workers_seen=sorted(seen), workers_alive=[w for w in seen if alive(w)],
                   worker_now=d.worker_pid(), quiet=proc_status(pid),
                   torch_maps=mapped(pid, "libtorch"), cv2_maps=mapped(pid, "cv2", "opencv"),
                   pil_maps=mapped(pid, "_imaging"))
        t = time.perf_counter()
        [hit] = d.call("search", paths=[str(query)], k=1)
        out["first_search_s"] = time.perf_counter() - t
        assert "error" not in hit, hit
        w = d.worker_pid()
        out.update(after_search=proc_status(pid), worker_after_search=w,
                   worker_rss_after_search=proc_status(w).get("VmRSS") if w else None)
        time.sleep(args.quiet)
        out.update(quiet_again=proc_status(pid), worker_gone_again=not alive(w),
                   torch_maps_again=mapped(pid, "libtorch"))
    finally:
        d.close()
    print(f"# library {len(library)}; daemon log {d.log}", file=sys.stderr)
    return out


def mb(value: int | None) -> str:
    return f"{value / 2**20:,.0f} MB" if value else "—"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "findsimilar-bench-daemon")
    ap.add_argument("--library", type=int, default=10_000)
    ap.add_argument("--quiet", type=float, default=15.0, help="seconds of quiet")
    ap.add_argument("--model-idle", type=float, default=5.0,
                    help="FINDSIMILAR_MODEL_IDLE for the daemon")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    args.workdir = args.workdir.absolute()
    started = f"{time.strftime('%Y-%m-%d %H:%M')}, {machine()}; {load()}"
    r = measure(args)
    print(f"# {started}; end: {load()}")
    print(f"# indexed {args.library} photos in {r['index_seconds']:.1f} s "
          f"({r['extracted']} through the model); {r['vectors']} vectors, {r['layout']} "
          f"index; model workers while indexing: {r['workers_seen'] or 'none'}")
    rows = [
        ("daemon RSS once quiet", mb(r["quiet"].get("VmRSS")), "<= 150 MB"),
        ("daemon peak RSS (VmHWM, indexing included)", mb(r["quiet"].get("VmHWM")), ""),
        ("libtorch / OpenCV / Pillow mappings in the daemon",
         f"{r['torch_maps']} / {r['cv2_maps']} / {r['pil_maps']}", "0 libtorch"),
        ("model worker once quiet", "gone" if not r["workers_alive"] and not r["worker_now"]
         else f"running ({r['worker_now']})", f"ends after {args.model_idle:g} s idle"),
        ("first search by content after the worker ended", f"{r['first_search_s']:.2f} s",
         "<= 3 s"),
        ("daemon RSS after that search", mb(r["after_search"].get("VmRSS")), ""),
        ("model worker RSS after that search", mb(r["worker_rss_after_search"]), ""),
        (f"daemon RSS {args.quiet:g} s later", mb(r["quiet_again"].get("VmRSS")),
         "worker gone: " + ("yes" if r["worker_gone_again"] else "no")
         + f", libtorch mappings {r['torch_maps_again']}"),
    ]
    if args.markdown:
        print("| measure | value | goal |\n|---|---:|---|")
        for name, value, goal in rows:
            print(f"| {name} | {value} | {goal} |")
    else:
        for name, value, goal in rows:
            print(f"{name:52s} {value:>14s}  {goal}")


if __name__ == "__main__":
    main()
