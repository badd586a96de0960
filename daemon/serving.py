"""Which extractor's index answers, and the bundle that answers: its spec, model, index.

The store keeps vectors per (content hash, extractor), and each extractor has an index
file of its own (``index-<id>.faiss``). The configured extractor answers only once its
vectors are complete: a store whose serving extractor (the ``extractor`` setting) is
another one keeps answering from that one while the new one is extracted in the
background (``service.upgrade``), and the engine then swaps in one step
(:class:`Live` is replaced whole, so a search never mixes one model's vector with the
other's index). A configured extractor that is already complete (a downgrade, or an
upgrade finished while the daemon was stopped) answers at once.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from findsimilar.config import Config
from findsimilar.daemon.model.api import Model
from findsimilar.daemon.model.spec import ModelSpec, model_spec
from findsimilar.daemon.storage.index import VectorIndex
from findsimilar.daemon.storage.index_build import IndexBuilder, IndexRepair, open_index
from findsimilar.daemon.storage.store import Store
from findsimilar.errors import FindSimilarError

__all__ = ["Live", "index_path", "open_live", "open_model", "pending", "served_spec"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Live:
    """What answers searches: one extractor's spec, its model, its index (and the
    builder that moves that index between layouts)."""

    spec: ModelSpec
    model: Model
    index: VectorIndex
    path: Path  # the index file
    builder: IndexBuilder
    repair: IndexRepair  # what opening the index had to repair


def index_path(config: Config, spec: ModelSpec) -> Path:
    return config.data_dir / f"index-{re.sub(r'[^A-Za-z0-9._-]+', '_', spec.id)}.faiss"


def open_live(config: Config, store: Store, spec: ModelSpec, model: Model,
              on_swapped: Callable[[], None], *, first: bool = False) -> Live:
    """Open (repairing it against the store) the index of ``spec``'s vectors (``first``:
    built for the first time, see ``open_index``)."""
    path = index_path(config, spec)
    for leftover in config.data_dir.glob(path.name + ".*.tmp"):
        with contextlib.suppress(OSError):  # (a read-only data dir keeps it)
            leftover.unlink()  # a save that was killed half-way
    index, repair = open_index(path, store, spec.id, spec.dim,
                               lambda ids: store.vectors(ids, spec.dim), config.compress_above,
                               first=first)
    # Moves the index between layouts as the library grows; started by the daemon
    # (maintain_index), never by a one-off CLI run.
    builder = IndexBuilder(index, store, config.compress_above, on_swapped=on_swapped)
    return Live(spec, model, index, path, builder, repair)


def served_spec(store: Store, wanted: ModelSpec) -> ModelSpec:
    """The extractor that answers: ``wanted`` if the store serves it already, has all
    its vectors, or serves nothing yet; else the one the store serves now (the upgrade
    to ``wanted`` then runs in the background). A serving extractor this release cannot
    run (another version, its weights gone) gives way to ``wanted`` at once, as before
    (its missing vectors are then extracted by the indexing passes)."""
    current = store.get_setting("extractor")
    if current in (None, wanted.id) or not store.hashes_needing_features(wanted.id):
        return wanted
    try:
        spec = model_spec(current.split("/", 1)[0])
    except FindSimilarError as exc:
        log.warning("the store's index is of %s, which cannot run here (%s): switching "
                    "to %s now", current, exc, wanted.id)
        return wanted
    if spec.id != current:
        log.warning("the store's index is of %s, which this release does not make (it "
                    "makes %s): switching to %s now", current, spec.id, wanted.id)
        return wanted
    return spec


def open_model(config: Config, spec: ModelSpec, in_process: bool, *, nice: int = 0) -> Model:
    """``spec``'s model: a worker process (at ``nice``), or threads of this process."""
    if not in_process:
        from findsimilar.daemon.model.client import WorkerModel

        return WorkerModel(spec, config, nice=nice)
    from findsimilar.daemon.model.local import LocalModel

    return LocalModel(spec, model_threads=config.model_threads,
                      decode_workers=config.decode_workers, batch_size=config.batch_size,
                      max_pixels=config.max_pixels)


def pending(store: Store, serving: ModelSpec, target: ModelSpec) -> dict[str, object]:
    """An upgrade no one runs now (``--no-daemon``): what is done of it, for ``status``."""
    total = store.counts()["unique_images"]
    done = total - len(store.hashes_needing_features(target.id))
    return {"from": serving.id, "to": target.id, "state": "pending", "done": done,
            "total": total, "extracted": 0, "skipped": 0, "failures": 0, "error": None,
            "retry_in_s": None, "worker_pid": None}
