"""One place for every location and tunable, with XDG defaults and env overrides."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Config", "DEFAULT_EXTRACTOR", "default_pictures_dir", "default_socket_path",
           "load_config", "runtime_dir", "standard_data_dir"]

DEFAULT_EXTRACTOR = "efficientnet-lite0-gem"


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


@dataclass(frozen=True)
class Config:
    """Where findsimilar keeps its state and how it behaves.

    ``data_dir`` holds the SQLite store, the FAISS index and ``config.json``.
    """

    data_dir: Path
    extractor: str = DEFAULT_EXTRACTOR
    # Pictures larger than this many pixels are refused as decompression bombs.
    max_pixels: int = 250_000_000
    # Files above this size are hashed and decoded by streaming, not in memory.
    max_in_memory_bytes: int = 64 * 1024 * 1024
    # Measured on 2 cores (BENCHMARKS.md): one model thread plus two decoding
    # threads beat two of each by ~30% (oversubscription), and batches of 8 beat 16.
    batch_size: int = 8
    model_threads: int = field(default_factory=lambda: max(1, _cpus() // 2))
    decode_workers: int = field(default_factory=lambda: max(1, min(8, _cpus() - _cpus() // 2 + 1)))

    socket_path: Path = None  # type: ignore[assignment]  # set in __post_init__
    # Watching: a file is indexed once it has been quiet this long after a
    # close-write event, or this long without any event at all (writers that never
    # close, e.g. a slow download that stalls).
    settle_after_close: float = 0.2
    settle_quiet: float = 2.0
    # Roots whose inotify watches could not be set up are rescanned this often.
    rescan_interval: float = 300.0
    # After this long idle with the library changed, the daemon runs the pixel checks
    # of new duplicate candidates, so `dupes` answers from the cache (0 = never).
    precheck_after: float = 60.0
    # Past this many photos the index is compressed (PCA + IVF + 8-bit codes, ~270 bytes
    # a photo instead of 5 KB, results re-scored exactly); 0 = always exact.
    compress_above: int = 50_000
    # Seconds a store write waits for another program's lock before the task waits
    # (and retries) instead; SQLite's own wait.
    busy_timeout: float = 30.0
    # The model runs in a worker process that ends after this many seconds without work
    # (0 = never): the daemon that stays up all day does not hold torch.
    model_idle: float = 300.0
    # A picture the worker has been reading for this long (or a worker silent this long
    # with work given) is taken as a hang: the worker is killed and replaced, and the
    # file recorded as failed (0 = no limit).
    model_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.socket_path is None:
            object.__setattr__(self, "socket_path", default_socket_path(Path(self.data_dir)))

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store.db"

    @property
    def index_path(self) -> Path:
        return self.data_dir / "index.faiss"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def standard_data_dir() -> Path:
    """The XDG data dir for findsimilar, whatever FINDSIMILAR_DATA_DIR says (symlinks
    resolved, as for every data dir)."""
    return Path(os.path.realpath(_xdg("XDG_DATA_HOME", ".local/share") / "findsimilar"))


def default_data_dir() -> Path:
    """``FINDSIMILAR_DATA_DIR``, else the standard one; with symlinks resolved, so that
    every spelling of one folder finds the same daemon (its socket name derives from it)."""
    override = os.environ.get("FINDSIMILAR_DATA_DIR")
    if override:
        return Path(os.path.realpath(Path(override).expanduser()))
    return standard_data_dir()


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/findsimilar``, or ``/tmp/findsimilar-UID`` without a session."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return Path(base) / "findsimilar"
    return Path(f"/tmp/findsimilar-{os.getuid()}")


def default_socket_path(data_dir: Path | None = None) -> Path:
    """``FINDSIMILAR_SOCKET``, else one socket per data dir in the runtime dir.

    The default data dir gets ``daemon.sock`` (what the systemd socket unit
    listens on); another data dir gets ``daemon-<hash>.sock`` so that two stores
    never talk to each other's daemon.
    """
    override = os.environ.get("FINDSIMILAR_SOCKET")
    if override:
        return Path(override).expanduser().absolute()
    data_dir = data_dir or default_data_dir()
    if data_dir == standard_data_dir():
        return runtime_dir() / "daemon.sock"
    # crc32, not hashlib: importing OpenSSL costs the thin client milliseconds, and a
    # clash is harmless (the daemon refuses requests for another data dir).
    digest = f"{zlib.crc32(str(data_dir).encode('utf-8', 'surrogateescape')):08x}"
    return runtime_dir() / f"daemon-{digest}.sock"


def default_pictures_dir() -> Path:
    """The XDG pictures folder (``XDG_PICTURES_DIR`` or user-dirs.dirs), else ~/Pictures."""
    value = os.environ.get("XDG_PICTURES_DIR")
    if not value:
        dirs = _xdg("XDG_CONFIG_HOME", ".config") / "user-dirs.dirs"
        try:
            for line in dirs.read_text().splitlines():
                if line.startswith("XDG_PICTURES_DIR="):
                    value = line.split("=", 1)[1].strip().strip('"')
        except OSError:
            pass
    if value:
        return Path(value.replace("$HOME", str(Path.home()))).expanduser()
    return Path.home() / "Pictures"


def load_config() -> Config:
    """Build the configuration from the environment.

    ``FINDSIMILAR_DATA_DIR`` moves all state; ``FINDSIMILAR_EXTRACTOR`` picks the
    feature extractor (default ``efficientnet-lite0-gem``);
    ``FINDSIMILAR_SETTLE_AFTER_CLOSE`` and ``FINDSIMILAR_SETTLE_QUIET`` (seconds)
    tune how long the watcher waits for a file to settle (tests shorten them);
    ``FINDSIMILAR_PRECHECK_AFTER`` (seconds idle, 0 = never) when the daemon checks
    new duplicate candidates in the background; ``FINDSIMILAR_COMPRESS_ABOVE`` (photos,
    0 = never) when the index moves to its compressed layout; ``FINDSIMILAR_BUSY_TIMEOUT``
    (seconds) how long a store write waits for another program's lock before the task
    waits and retries; ``FINDSIMILAR_MODEL_IDLE`` (seconds without work, 0 = never) when
    the model worker ends and ``FINDSIMILAR_MODEL_TIMEOUT`` (seconds, 0 = no limit) how
    long it may read one picture. A value that is not a non-negative number is ignored.
    """
    data_dir = default_data_dir()
    kwargs: dict[str, object] = {"data_dir": data_dir,
                                 "socket_path": default_socket_path(data_dir)}
    extractor = os.environ.get("FINDSIMILAR_EXTRACTOR")
    if extractor:
        kwargs["extractor"] = extractor
    for var, name in (("FINDSIMILAR_SETTLE_AFTER_CLOSE", "settle_after_close"),
                      ("FINDSIMILAR_SETTLE_QUIET", "settle_quiet"),
                      ("FINDSIMILAR_PRECHECK_AFTER", "precheck_after"),
                      ("FINDSIMILAR_BUSY_TIMEOUT", "busy_timeout"),
                      ("FINDSIMILAR_MODEL_IDLE", "model_idle"),
                      ("FINDSIMILAR_MODEL_TIMEOUT", "model_timeout")):
        seconds = _seconds(os.environ.get(var, ""))
        if seconds is not None:
            kwargs[name] = seconds
    count = os.environ.get("FINDSIMILAR_COMPRESS_ABOVE", "")
    if count.isdigit():
        kwargs["compress_above"] = int(count)
    return Config(**kwargs)  # type: ignore[arg-type]


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None  # also refuses NaN
