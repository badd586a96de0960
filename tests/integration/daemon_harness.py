"""Run a real `findsimilar daemon run` process for tests, and look at what it left behind.

The daemon is a subprocess with its own data dir and a socket under /tmp (Unix socket
paths are limited to ~107 bytes, and pytest's tmp_path is deep). Tests talk to it with
the real thin client, poll with deadlines instead of sleeping, and inspect the store and
the index files only through read-only handles (or after the daemon has stopped).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from findsimilar.cli.client import DaemonClient, DaemonUnavailable
from findsimilar.config import Config

__all__ = ["DaemonProcess", "TwinLibrary", "daemon_env", "indexed_paths", "make_photos",
           "module_daemon", "saved_index_ids", "store_rows", "top_paths",
           "twin_library_daemon", "wait_until"]

T = TypeVar("T")
D = TypeVar("D", bound="DaemonProcess")

# Settle times for tests: a closed file is taken at once; a file still open and quiet
# is left alone for long enough that "wait ~1 s with the file open" is unambiguous.
FAST_SETTLE = {"FINDSIMILAR_SETTLE_AFTER_CLOSE": "0.05", "FINDSIMILAR_SETTLE_QUIET": "4"}
# No self-check unless a test asks for one (test_selfcheck): a run starts the model
# worker and reads photos, which tests of the worker's life and of memory must not see.
NO_SELFCHECK = {"FINDSIMILAR_SELFCHECK_EVERY": "0"}


def wait_until(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05,
               message: str | Callable[[], str] = "") -> T:
    """Poll ``predicate`` until it returns something truthy; returns that value.

    Raises AssertionError (with ``message``) when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"not true within {timeout} s: {text}")
        time.sleep(interval)


def daemon_env(data_dir: Path, socket_path: Path | None, **extra: str) -> dict[str, str]:
    """The environment of a daemon or CLI process: nothing inherited from FINDSIMILAR_*
    (or a systemd parent), state in ``data_dir``, the socket at ``socket_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINDSIMILAR_", "LISTEN_"))
           and k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    env["FINDSIMILAR_DATA_DIR"] = str(data_dir)
    # A safety net: a daemon that somehow ignored FINDSIMILAR_DATA_DIR must not touch
    # the real user's data.
    env["XDG_DATA_HOME"] = str(data_dir.parent / "xdg-data")
    if socket_path is not None:
        env["FINDSIMILAR_SOCKET"] = str(socket_path)
    env.update(FAST_SETTLE)
    env.update(NO_SELFCHECK)
    env.update(extra)
    return env


class DaemonProcess:
    """One daemon (and its restarts) on one data dir; its output goes to ``log_path``."""

    def __init__(self, data_dir: Path, socket_path: Path, log_path: Path,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.socket_path = socket_path
        self.log_path = log_path
        self.env = env if env is not None else daemon_env(data_dir, socket_path)
        self.proc: subprocess.Popen[bytes] | None = None
        self.config = Config(data_dir=data_dir, socket_path=socket_path)

    # -- lifecycle -----------------------------------------------------------------
    def spawn(self, command: list[str] | None = None, *,
              umask: int = -1) -> subprocess.Popen[bytes]:
        """Start the process (``umask`` -1: inherited) without waiting for it to answer."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = command or [sys.executable, "-m", "findsimilar", "daemon", "run"]
        with open(self.log_path, "ab") as log:
            log.write(f"--- {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=self.env, umask=umask)
        return self.proc

    def start(self, timeout: float = 90.0) -> DaemonProcess:
        """Start the daemon and return once it answers ``ping``."""
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        def answers() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n"
                                     f"{self.log()}")
            with contextlib.suppress(DaemonUnavailable), self.client(timeout=timeout) as c:
                return c.call("ping")
            return None

        return wait_until(answers, timeout, 0.05, self.log)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code (fails the test if it hangs)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the daemon ignored SIGTERM for {timeout} s:\n"
                                 f"{self.log()}") from None

    def kill(self) -> None:
        """SIGKILL (as a crash or the OOM killer would) and reap it."""
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(30)

    def cleanup(self) -> None:
        """Teardown: never leave a daemon behind, whatever the test did."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    # -- talking to it ----------------------------------------------------------------
    def client(self, timeout: float = 60.0) -> DaemonClient:
        return DaemonClient(self.config, timeout=timeout)

    def call(self, command: str, **args: Any) -> Any:
        with self.client() as c:
            return c.call(command, **args)

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def search(self, path: Path | str, k: int = 10) -> list[dict[str, Any]]:
        """The matches for one query path; fails on an error entry."""
        [result] = self.call("search", paths=[str(path)], k=k)
        assert "error" not in result, result
        return result["results"]

    def barrier(self, empty_dir: Path) -> None:
        """Return once every task queued before now has run (tasks run in order):
        indexing an empty folder is queued behind them and changes nothing."""
        empty_dir.mkdir(parents=True, exist_ok=True)
        summary = self.call("index", paths=[str(empty_dir)])
        assert summary["extracted"] == 0, summary

    def wait_idle(self, timeout: float = 60.0) -> dict[str, Any]:
        """Return the status once nothing is queued or in progress."""
        def idle() -> dict[str, Any] | None:
            info = self.status()
            return info if info["state"] == "idle" and info["queued"] == 0 else None

        return wait_until(idle, timeout, 0.1, self.log)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


# -- what is on disk ------------------------------------------------------------------

def store_rows(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Every file row (path -> status, content_hash, error), read-only: safe while the
    daemon writes (WAL). Paths as the files have them (``pathtext``: any name)."""
    from findsimilar.daemon.storage.pathtext import to_path

    path = data_dir / "store.db"
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return {to_path(r["path"]): {**dict(r), "path": to_path(r["path"])} for r in conn.execute(
            "select path, status, content_hash, error from files")}
    finally:
        conn.close()


def indexed_paths(data_dir: Path) -> set[str]:
    return {p for p, r in store_rows(data_dir).items() if r["status"] == "ok"}


def saved_index_ids(data_dir: Path) -> tuple[list[int], list[int], str]:
    """For a stopped daemon's data dir: (ids in the saved FAISS file as it is, unrepaired;
    feature ids the store says belong in it; the store's PRAGMA integrity_check)."""
    from findsimilar.daemon.storage.index import VectorIndex
    from findsimilar.daemon.storage.store import Store

    [index_file] = data_dir.glob("index-*.faiss")
    store = Store(data_dir / "store.db")
    try:
        extractor_id = store.get_setting("extractor")
        assert extractor_id, "the store names no extractor"
        wanted = sorted(int(i) for i in store.indexed_feature_ids(extractor_id))
        integrity = store.db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        store.close()
    have = sorted(int(i) for i in VectorIndex.load(index_file, vector_dim(extractor_id)).ids())
    return have, wanted, integrity


def vector_dim(extractor_id: str) -> int:
    """The vector size of the extractor stored as ``extractor_id`` ("name/version")."""
    from findsimilar.daemon.model.spec import model_spec

    return model_spec(extractor_id.split("/")[0]).dim


def top_paths(matches: list[dict[str, Any]], min_score: float = 0.99) -> set[str]:
    """Paths of the matches that are the same picture (cosine close to 1)."""
    return {m["path"] for m in matches if m["score"] >= min_score}


def make_photos(folder: Path, count: int, *, seed: int = 0, size: tuple[int, int] = (800, 600),
                prefix: str = "gen") -> list[Path]:
    """``count`` distinct JPEGs (random shapes on a random gradient) in ``folder``."""
    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    paths = []
    for i in range(count):
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        row = (a * (1 - t) + b * t).astype(np.uint8)
        image = Image.fromarray(np.repeat(row, h, axis=0))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            x1, y1 = x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1),
                                                                    fill=colour)
        path = folder / f"{prefix}-{seed}-{i:04d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


class TwinLibrary(DaemonProcess):
    """A daemon serving ``photos``: every photo of the set next to a byte-identical
    ``twin-`` copy (so a query has one right answer), plus copies in ``outside``, which
    is not indexed (queries there go through the model)."""

    photos: Path
    outside: Path


@contextlib.contextmanager
def module_daemon(base: Path, command: list[str] | None = None, *,
                  cls: type[D] = DaemonProcess, **env: str) -> Iterator[D]:  # type: ignore[assignment]
    """A daemon (a ``cls``) for a whole test module, started with ``command`` (default:
    `findsimilar daemon run`): data dir and log under ``base``, socket under /tmp (Unix
    socket paths are short). Stopped, its log printed, at the end."""
    sock_dir = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    sock = sock_dir / "d.sock"
    daemon = cls(base / "data", sock, base / "daemon.log",
                 env=daemon_env(base / "data", sock, **env))
    try:
        daemon.spawn(command)
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.cleanup()
        print(f"--- daemon log\n{daemon.log()}")
        shutil.rmtree(sock_dir, ignore_errors=True)


@contextlib.contextmanager
def twin_library_daemon(base: Path, sources: list[Path], **env: str) -> Iterator[TwinLibrary]:
    """Start a :class:`TwinLibrary` daemon under ``base`` (socket under /tmp) with
    ``sources`` indexed; stopped, its log printed, at the end."""
    photos, outside = base / "photos", base / "outside"
    photos.mkdir()
    outside.mkdir()
    for src in sources:
        for dest in (photos / src.name, photos / f"twin-{src.name}", outside / src.name):
            shutil.copyfile(src, dest)
    with module_daemon(base, cls=TwinLibrary, **env) as daemon:
        daemon.photos, daemon.outside = photos, outside
        assert daemon.call("index", paths=[str(photos)])["new"] == 2 * len(sources)
        yield daemon
