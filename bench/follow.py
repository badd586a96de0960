"""How soon `findsimilar dupes --follow` reports a copy dropped into a watched folder.

A real daemon (its own data dir and socket) watches a library of --library distinct
photos (the 320x240 JPEGs of bench/daemon.py, cached in --workdir) plus the shared photos;
a real `findsimilar dupes --follow` reads its lines. Then, one at a time, --copies times
each: an exact copy of a shared photo (written in place, as cp does), and a near copy
(the photo at half size, JPEG q80, saved in place) are written into the watched folder,
and the time from the file's close to its JSON line is taken. (The watcher waits 0.2 s
after a close; a file renamed in, or whose mode changes after its close, as `cp -p` does,
waits FINDSIMILAR_SETTLE_QUIET, 2 s.) The model worker stays warm (default idle time), as
on a desktop in use.

Usage: python bench/follow.py [--workdir DIR] [--library 1000] [--copies 10] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import shared_photos  # noqa: E402
from PIL import Image  # noqa: E402

from daemon import BIN, load, machine, make_library  # noqa: E402
from findsimilar.cli.client import DaemonClient, DaemonUnavailable  # noqa: E402
from findsimilar.config import Config  # noqa: E402


def wait_for(predicate, timeout: float) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s")
        time.sleep(0.05)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "fs-bench")
    ap.add_argument("--library", type=int, default=1000)
    ap.add_argument("--copies", type=int, default=10)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    cache = args.workdir / "cache"
    lib_src = make_library(cache / "library", args.library)
    run = Path(tempfile.mkdtemp(prefix="follow-", dir=args.workdir))
    sock_dir = Path(tempfile.mkdtemp(prefix="fsb-", dir="/tmp"))
    lib = run / "lib"
    (lib / "library").mkdir(parents=True)
    for p in lib_src:
        os.link(p, lib / "library" / p.name)
    originals = [p for p in shared_photos() if p.suffix.lower() in (".jpg", ".png")]
    originals = originals[:args.copies]
    (lib / "shared").mkdir()
    for i, p in enumerate(originals):
        shutil.copy(p, lib / "shared" / f"{i:02d}{p.suffix}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINDSIMILAR_")}
    env.update(FINDSIMILAR_DATA_DIR=str(run / "data"), FINDSIMILAR_SOCKET=str(sock_dir / "s"),
               FINDSIMILAR_PRECHECK_AFTER="0")
    config = Config(data_dir=run / "data", socket_path=sock_dir / "s")
    daemon = subprocess.Popen([str(BIN / "python"), "-m", "findsimilar", "daemon", "run"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    follower = None
    try:
        def answers() -> bool:
            try:
                with DaemonClient(config) as c:
                    return bool(c.call("ping"))
            except DaemonUnavailable:
                return False

        wait_for(answers, 120)
        with DaemonClient(config) as c:
            c.call("watch_add", path=str(lib), excludes=[])

        def status() -> dict:
            with DaemonClient(config) as c:
                return c.call("status")

        wait_for(lambda: (s := status())["state"] == "idle" and not s["queued"]
                 and s["indexed"] >= args.library + len(originals), 600)
        follower = subprocess.Popen([str(BIN / "findsimilar"), "dupes", "--follow"], env=env,
                                    stdout=subprocess.PIPE, text=True)
        seen: dict[str, float] = {}

        def read() -> None:
            assert follower is not None and follower.stdout is not None
            for line in follower.stdout:
                for path in json.loads(line)["new"]:
                    seen.setdefault(path, time.monotonic())

        threading.Thread(target=read, daemon=True).start()
        wait_for(lambda: status().get("followed"), 30)
        times: dict[str, list[float]] = {"exact": [], "near": []}
        for i, p in enumerate(sorted((lib / "shared").iterdir())):
            for kind in ("exact", "near"):
                dst = lib / (f"copy-{kind}-{i:02d}" + (p.suffix if kind == "exact" else ".jpg"))
                if kind == "exact":
                    shutil.copyfile(p, dst)  # as cp does: written in place, then closed
                else:
                    with Image.open(p) as im:
                        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(
                            dst, quality=80)
                start = time.monotonic()  # closed: its time starts here
                wait_for(lambda d=str(dst): d in seen, 120)
                times[kind].append(seen[str(dst)] - start)
        rows = [(kind, statistics.median(v), max(v), len(v)) for kind, v in times.items()]
        if args.markdown:
            print(f"{machine()}; {load()}; library {args.library + len(originals)} photos")
            print("| copy dropped in | p50 | max | n |\n|---|---:|---:|---:|")
            for kind, p50, most, n in rows:
                print(f"| {kind} | {p50:.2f} s | {most:.2f} s | {n} |")
        else:
            for kind, p50, most, n in rows:
                print(f"{kind}: p50 {p50:.2f} s, max {most:.2f} s over {n}")
    finally:
        if follower is not None:
            follower.terminate()
        daemon.terminate()
        daemon.wait(30)
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(sock_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
