"""What one self-check costs: a real daemon indexes --count camera-sized (12 MP) JPEGs
(those of bench/throughput.py, cached in --workdir), then runs one self-check of
--photos photos on request (`FINDSIMILAR_SELFCHECK_EVERY=0`: none by itself). Printed,
from the run's record and /proc:

  * wall time of the run, and CPU time (user + system) of the daemon and of the model
    worker over it (the worker decodes nothing but the small edited copies);
  * the daemon's RSS before, just after and 5 s after, and whether Pillow is mapped in
    it (the daemon imports it only for a self-check);
  * what the run found: copies at rank 1 and in the top k, by edit kind.

Usage: python bench/selfcheck.py [--workdir DIR] [--count 200] [--photos 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from idle_memory import Daemon, mapped, proc_status  # noqa: E402
from throughput import make_camera_jpegs  # noqa: E402

from daemon import load, machine  # noqa: E402


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` so far (0 if it is gone)."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    photos = make_camera_jpegs(args.workdir / "camera", args.count)
    d = Daemon(args.workdir, "selfcheck-run", FINDSIMILAR_SELFCHECK_EVERY="0",
               FINDSIMILAR_SELFCHECK_PHOTOS=str(args.photos))
    pid = d.proc.pid
    try:
        summary = d.call("index", paths=[str(photos[0].parent)])
        assert summary["extracted"] == len(photos), summary
        time.sleep(2)
        worker = d.call("status")["worker"].get("pid")
        before = {"daemon": cpu_seconds(pid), "worker": cpu_seconds(worker),
                  "rss": proc_status(pid).get("VmRSS"), "pil": mapped(pid, "_imaging")}
        d.call("self_check")
        while (check := d.call("status")["self_check"])["requested"]:
            time.sleep(0.2)
        worker_after = d.call("status")["worker"].get("pid")
        after = {"daemon": cpu_seconds(pid), "worker": cpu_seconds(worker_after),
                 "rss": proc_status(pid).get("VmRSS"), "pil": mapped(pid, "_imaging")}
        if worker_after != worker:
            before["worker"] = 0.0  # a worker started for the check: all its CPU counts
        time.sleep(5)  # (memory is given back after a quiet second)
        after["rss_later"] = proc_status(pid).get("VmRSS")
    finally:
        d.close()
    return {"run": check["last"], "before": before, "after": after}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "findsimilar-bench-daemon")
    ap.add_argument("--count", type=int, default=200, help="12 MP JPEGs in the library")
    ap.add_argument("--photos", type=int, default=200, help="photos a self-check samples")
    args = ap.parse_args()
    args.workdir = args.workdir.absolute()
    started = f"{time.strftime('%Y-%m-%d %H:%M')}, {machine()}; {load()}"
    r = measure(args)
    run, before, after = r["run"], r["before"], r["after"]
    daemon_cpu = after["daemon"] - before["daemon"]
    worker_cpu = after["worker"] - before["worker"]
    print(f"# {started}; end: {load()}")
    print(f"# library: {args.count} 12 MP JPEGs; self-check of up to {args.photos} photos")
    print("| measure | value |\n|---|---:|")
    print(f"| copies checked (skipped) | {run['checked']} ({run['skipped']}) |")
    print(f"| found at rank 1 / in the top {run['k']} | {run['rank1']} / {run['top_k']} |")
    print(f"| wall time of the run | {run['seconds']:.1f} s |")
    print(f"| CPU: daemon (its self-check thread) | {daemon_cpu:.1f} s "
          f"({run['daemon_cpu_s']:.1f} s) |")
    print(f"| CPU: model worker | {worker_cpu:.1f} s |")
    total = daemon_cpu + worker_cpu
    print(f"| CPU in all, per photo checked | {total:.1f} s, "
          f"{1000 * total / max(1, run['checked']):.0f} ms |")
    print(f"| daemon RSS before / just after / 5 s after | {(before['rss'] or 0) / 2**20:.0f}"
          f" MB / {(after['rss'] or 0) / 2**20:.0f} MB / "
          f"{(after['rss_later'] or 0) / 2**20:.0f} MB |")
    print(f"| Pillow mappings in the daemon before / after | {before['pil']} / {after['pil']} |")
    print("# by kind: " + json.dumps(run["kinds"]))


if __name__ == "__main__":
    main()
