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
from idle_memory import mapped, proc_status  # noqa: E402
from throughput import make_camera_jpegs  # noqa: E402

from daemon import BIN, load, machine  # noqa: E402
from findsimilar.cli.client import DaemonClient, DaemonUnavailable  # noqa: E402
from findsimilar.config import Config  # noqa: E402


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of ``pid`` so far (0 if it is gone)."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    def __init__(self, workdir: Path, photos: int) -> None:
        self.dir = workdir / "selfcheck-run"
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "data").mkdir(parents=True)
        self.socket = Path(f"/tmp/fsim-sc-{os.getpid()}.sock")
        self.config = Config(data_dir=(self.dir / "data").absolute(), socket_path=self.socket)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FINDSIMILAR_")}
        self.env.update(FINDSIMILAR_DATA_DIR=str(self.config.data_dir),
                        FINDSIMILAR_SOCKET=str(self.socket), FINDSIMILAR_SELFCHECK_EVERY="0",
                        FINDSIMILAR_SELFCHECK_PHOTOS=str(photos))
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

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        with contextlib.suppress(OSError):
            self.socket.unlink()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    photos = make_camera_jpegs(args.workdir / "camera", args.count)
    d = Daemon(args.workdir, args.photos)
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
