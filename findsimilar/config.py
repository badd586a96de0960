"""One place for every location and tunable, with XDG defaults and env overrides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Config", "DEFAULT_EXTRACTOR", "load_config"]

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


def default_data_dir() -> Path:
    override = os.environ.get("FINDSIMILAR_DATA_DIR")
    if override:
        return Path(override).expanduser().absolute()
    return _xdg("XDG_DATA_HOME", ".local/share") / "findsimilar"


def load_config() -> Config:
    """Build the configuration from the environment.

    ``FINDSIMILAR_DATA_DIR`` moves all state; ``FINDSIMILAR_EXTRACTOR`` picks the
    feature extractor (default ``efficientnet-lite0-gem``).
    """
    kwargs: dict[str, object] = {"data_dir": default_data_dir()}
    extractor = os.environ.get("FINDSIMILAR_EXTRACTOR")
    if extractor:
        kwargs["extractor"] = extractor
    return Config(**kwargs)  # type: ignore[arg-type]
