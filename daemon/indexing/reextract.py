"""Vectors of another extractor for the content the store already holds: the work of
an upgrade to a new descriptor (``service.upgrade``).

For each content hash of an indexed file that has no vector of the target extractor, one
of its files is read again (through ``safeio``, never a FIFO or a device, symlinks not
followed) and its hash checked: a file changed since it was indexed is left to the
indexer, which reads it as it is now. The target's model embeds the chunk, and its
vectors are committed together. Nothing else is written: the file rows, the serving
index and the ``extractor`` setting are untouched, so a run stopped or killed half-way
keeps every chunk it committed and the next run goes on from there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from findsimilar.config import Config
from findsimilar.daemon.indexing.pipeline import hash_file
from findsimilar.daemon.model.api import PRIORITY_INDEX, Model
from findsimilar.daemon.storage.store import Store
from findsimilar.errors import ImageDecodeError
from findsimilar.safeio import open_regular

__all__ = ["Chunk", "Reextractor", "chunks"]


@dataclass
class Chunk:
    """What one chunk did: vectors committed, and the hashes left out with the reason."""

    extracted: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


class Reextractor:
    """Fills in ``model``'s vectors for the content hashes given (see above)."""

    def __init__(self, store: Store, model: Model, config: Config) -> None:
        self.store, self.model, self.config = store, model, config

    def missing(self) -> list[str]:
        """Hashes of indexed content with no vector of the target extractor yet."""
        return self.store.hashes_needing_features(self.model.spec.id)

    def run(self, hashes: list[str]) -> Chunk:
        """Embed and commit ``hashes`` (all sent to the model at once: it batches them).

        A picture the model cannot read is skipped with the reason. Raises the model's
        FindSimilarError when it cannot run at all (it cannot be loaded, its worker keeps
        dying), CancelledError once it is closed, and the store's errors (a full disk);
        nothing of the chunk is committed then."""
        done = Chunk()
        futures = []
        for content_hash in hashes:
            found = self._source(content_hash)
            if isinstance(found, str):
                done.skipped[content_hash] = found
                continue
            name, source = found
            futures.append((content_hash, name,
                            self.model.embed(source, name, priority=PRIORITY_INDEX)))
        vectors = []
        for content_hash, name, future in futures:
            try:
                vectors.append((content_hash, future.result().vector))
            except ImageDecodeError as exc:
                done.skipped[content_hash] = f"{name}: {exc}"
        if vectors:
            self.store.add_features(self.model.spec.id, vectors, half=self.model.spec.half)
        done.extracted = len(vectors)
        return done

    def _source(self, content_hash: str) -> tuple[str, bytes | Path] | str:
        """(path, its bytes or, too big to hold, its path) of a file that still holds
        ``content_hash``; else why none does."""
        why = "no indexed file holds it any more"
        for path in self.store.paths_for_hash(content_hash):
            try:
                fd = open_regular(path, follow_symlinks=False)
            except OSError as exc:
                why = f"{path}: cannot be read ({exc.strerror or exc})"
                continue
            try:
                digest, data = hash_file(fd, os.fstat(fd).st_size,
                                         self.config.max_in_memory_bytes)
            except OSError as exc:
                why = f"{path}: cannot be read ({exc.strerror or exc})"
                continue
            finally:
                os.close(fd)
            if digest != content_hash:
                why = f"{path}: changed since it was indexed (the indexer reads it again)"
                continue
            return path, data if data is not None else Path(path)
        return why


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start:start + size]
