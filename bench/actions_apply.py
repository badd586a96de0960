"""Cost per step of `findsimilar dupes --action ... --apply` and of `dupes undo`.

Each step hashes the file and its keeper again (BLAKE2b-128, the store's content hash)
and journals an fsynced intent before it acts (cli/actions/facts.py and actionlog.py), so
a step costs what the old size-and-mtime check did plus reading both files. Prints, for
N pairs of identical random files of each SIZE, the milliseconds per step of apply and
undo for trash and hardlink (in a temp folder on the filesystem of --workdir), and the
hashing rate alone. Results depend on the disk's fsync latency (ext4 on a VM: 0.1-4 ms).

Usage: python bench/actions_apply.py [--pairs 200] [--sizes 20000,3000000]
                                      [--workdir DIR] [--markdown]
About 15 s for the defaults on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

from findsimilar.cli.actions.actions import apply_plan, plan_actions, undo
from findsimilar.safeio import hash_regular


def _groups(root: Path, pairs: int, size: int) -> list[dict]:
    groups = []
    for i in range(pairs):
        folder = root / "lib" / f"{i:04d}"
        folder.mkdir(parents=True)
        data = os.urandom(size)
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        members = []
        for name, match in (("keep.jpg", "keep"), ("copy.jpg", "exact")):
            (folder / name).write_bytes(data)
            members.append({"path": str(folder / name), "hash": digest, "size": size,
                            "mtime": (folder / name).stat().st_mtime, "match": match})
        groups.append({"tier": "exact", "keep": members[0]["path"], "members": members})
    return groups


def _run(workdir: Path, action: str, pairs: int, size: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        os.environ["XDG_DATA_HOME"] = str(root / "xdg")  # the trash goes there
        groups = _groups(root, pairs, size)
        os.sync()
        start = time.perf_counter()
        done = apply_plan(plan_actions(groups, action), root / "logs")  # type: ignore[arg-type]
        applied = time.perf_counter() - start
        assert done.done == pairs, done.messages[:3]
        start = time.perf_counter()
        back = undo(root / "logs")
        undone = time.perf_counter() - start
        assert back.undone == pairs, back.messages[:3]
    return applied * 1000 / pairs, undone * 1000 / pairs


def _hash_rate(workdir: Path) -> float:
    with tempfile.NamedTemporaryFile(dir=workdir) as f:
        f.write(os.urandom(64 * 2**20))
        f.flush()
        hash_regular(f.name)  # into the page cache
        start = time.perf_counter()
        hash_regular(f.name)
        return (time.perf_counter() - start) * 1000 / 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--sizes", default="20000,3000000")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = [("action", "file size", "apply ms/step", "undo ms/step")]
    for size in (int(s) for s in args.sizes.split(",")):
        for action in ("trash", "hardlink"):
            applied, undone = _run(args.workdir, action, args.pairs, size)
            rows.append((action, f"{size / 1e6:.2f} MB", f"{applied:.2f}", f"{undone:.2f}"))
    for n, row in enumerate(rows):
        print(("| " + " | ".join(row) + " |") if args.markdown else "  ".join(
            f"{c:>14}" for c in row))
        if args.markdown and n == 0:
            print("|---|---|---:|---:|")
    print(f"hashing (BLAKE2b-128, page cache): {_hash_rate(args.workdir):.2f} ms/MB")


if __name__ == "__main__":
    main()
