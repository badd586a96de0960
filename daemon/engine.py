"""The engine: store + index + model behind a few verbs (index, search, duplicates,
status).

Used by the daemon, and in-process by the CLI (``--no-daemon``); it owns the only
writable handles to the store and the index. The model (``model.api``) runs in a worker
process the engine starts when a picture needs it (the daemon's engine never imports
torch), or in threads of this process for an in-process run.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError, wait
from pathlib import Path

import numpy as np

from findsimilar.config import Config
from findsimilar.daemon.dupes.around import groups_around
from findsimilar.daemon.dupes.grouping import DupesOptions, find_duplicates, mark_not_duplicates
from findsimilar.daemon.dupes.verdicts import OUTSIDE, Verdicts, VerdictWriter
from findsimilar.daemon.indexing.indexer import Indexer, IndexSummary, ProgressFn
from findsimilar.daemon.indexing.roots import identify
from findsimilar.daemon.indexing.scanner import check_index_paths
from findsimilar.daemon.model.api import PRIORITY_QUERY, Model
from findsimilar.daemon.model.spec import ModelSpec, model_spec
from findsimilar.daemon.query import (
    Match,
    SearchResult,
    indexed_content,
    query_source,
    query_stat,
)
from findsimilar.daemon.rerank import rerank
from findsimilar.daemon.serving import (
    Live,
    index_path,
    open_live,
    open_model,
    pending,
    served_spec,
)
from findsimilar.daemon.storage.store import Store
from findsimilar.errors import (
    Cancelled,
    EmptyIndexError,
    ImageDecodeError,
    UsageError,
)
from findsimilar.rawpairs import one_per_photo

__all__ = ["Engine", "Match", "SearchResult"]

log = logging.getLogger(__name__)

StopFn = Callable[[], bool]


def _never() -> bool:
    return False


class Engine:
    """Opens the store and the index of the extractor that answers (``serving``: the
    configured one, or while its vectors are incomplete the one the store served).

    ``model``: the model to use; by default a worker process (``model.client``), or
    with ``in_process`` threads of this process (``model.local``). Raises
    FindSimilarError for an unknown extractor or missing weights.
    """

    def __init__(self, config: Config, model: Model | None = None, *,
                 in_process: bool = False) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.store_path, busy_timeout=config.busy_timeout)
        self.verdicts = VerdictWriter(self.store)  # the pixel verdicts searches reuse
        wanted = model.spec if model is not None else model_spec(config.extractor)
        spec = wanted if model is not None else served_spec(self.store, wanted)
        # The configured extractor, while its vectors are still being extracted.
        self.target: ModelSpec | None = wanted if spec.id != wanted.id else None
        # Back to a model the store served before (a downgrade): its index file went at
        # the swap away from it (``serve``), so building it from the store is no repair.
        served = self.store.get_setting("extractor")
        back = served not in (None, spec.id) and not index_path(config, spec).exists()
        self._live = open_live(config, self.store, spec,
                               model or open_model(config, spec, in_process), self.save,
                               first=back)
        # The daemon's upgrade (``service.upgrade``) tells its progress here.
        self.upgrade_status: Callable[[], dict[str, object] | None] | None = None
        self._retired: list[Model] = []
        self._indexer: Indexer | None = None
        self.store.set_setting("extractor", spec.id)
        if self.target is not None:
            log.info("searches use %s until the vectors of %s are complete", spec.id,
                     wanted.id)
        if self.repair.reason or back:
            try:
                self.save()
            except OSError as exc:  # a read-only data dir: serve from memory meanwhile
                if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                log.error("the repaired index cannot be saved in %s (%s); it is kept in "
                          "memory", config.data_dir, exc.strerror)

    # What answers now, as one: a swap replaces it whole (``serve``). Code that uses the
    # model and the index together takes ``live`` once, so a swap never mixes the two.
    live = property(lambda self: self._live)
    spec = property(lambda self: self._live.spec)
    model = property(lambda self: self._live.model)
    index = property(lambda self: self._live.index)
    index_path = property(lambda self: self._live.path)
    builder = property(lambda self: self._live.builder)
    repair = property(lambda self: self._live.repair)

    def serve(self, model: Model) -> None:
        """Answer from ``model``'s extractor from now on (its vectors are complete): its
        index is opened and saved, then swapped in whole. In the daemon, on the indexing
        thread only (no indexing beside it); searches running meanwhile finish on what
        they began with. The old model's index file is deleted: its vectors stay in the
        store, and going back to it builds its index from them, without the model."""
        old = self._live
        live = open_live(self.config, self.store, model.spec, model, self.save,
                         first=not index_path(self.config, model.spec).exists())
        live.index.save(live.path)
        self.store.set_setting("extractor", model.spec.id)
        self._live, self._indexer = live, None
        if self.target is not None and self.target.id == model.spec.id:
            self.target = None
        old.builder.stop()
        self._retired.append(old.model)  # closed with the engine: a search may use it
        if old.path != live.path:
            with contextlib.suppress(OSError):  # (a read-only data dir: it stays, unused)
                old.path.unlink(missing_ok=True)  # 5 KB a photo with v1
        log.info("searches now use %s (%d vectors); was %s", model.spec.id, len(live.index),
                 old.spec.id)

    def close(self) -> None:
        """Stop the model, save the index and close the store (also when the save fails:
        then raises)."""
        self.builder.stop()
        for model in [*self._retired, self.model]:
            model.close()
        try:
            self.save()
        finally:
            self.verdicts.close()
            self.store.close()

    def reopen_store(self) -> None:
        """Open the writer connection anew: one opened while the store was read-only
        stays read-only after its permissions are fixed."""
        self.store.reopen_writer()

    @property
    def indexer(self) -> Indexer:
        """The one indexer; use it from one thread at a time."""
        if self._indexer is None:
            self._indexer = Indexer(self.store, self.index, self.model, self.config)
        return self._indexer

    def release_reader(self) -> None:
        """Close the calling thread's read connection (a server thread that ends)."""
        self.store.release_reader()

    def reader(self) -> Store:
        """The store, for the calling thread's reads: they use the thread's own read-only
        connection (WAL: never blocked by the writer). ``self.store`` is the same object;
        its writes, from any thread, go through the one writer connection in turn."""
        return self.store

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self) -> None:
        live = self._live
        if live.index.dirty or not live.path.exists():
            live.index.save(live.path)

    def maintain_index(self) -> None:
        """Start moving the index to the layout the library's size calls for, in the
        background (queries keep using the current index until the swap)."""
        self.builder.maybe_start()

    # -- verbs -----------------------------------------------------------------
    def index_paths(self, paths: list[str], progress: ProgressFn | None = None,
                    rehash: bool = False, skip: Sequence[str] = ()) -> IndexSummary:
        """Index files and folders recursively, then persist the index (``rehash``: read
        every file again, however unchanged it looks; ``skip``: globs of what to leave
        out, see ``Indexer.index_paths``)."""
        check_index_paths(paths)
        try:
            return self.indexer.index_paths(paths, progress, rehash=rehash, skip=skip)
        finally:
            self.save()

    def search(self, path: str, k: int = 10, min_score: float | str | None = None, *,
               should_stop: StopFn = _never) -> SearchResult:
        """The ``k`` most similar indexed photos to the photo at ``path`` scoring at least
        ``min_score`` (``"auto"``: the serving extractor's floor, ``ModelSpec.min_score``).

        The query need not be indexed; if it is, it is not returned as its own
        match (byte-identical copies at other paths are). Near-tied first results are
        put in order by the pixel check (``rerank``: an indexed query reuses and fills the
        verdict cache); scores stay cosine scores.
        Raises UsageError for a bad ``min_score``, MissingFileError (NotRegularFileError
        for a FIFO, device, socket or folder), ImageDecodeError (FileAccessError if it
        may not be read), EmptyIndexError, or Cancelled once ``should_stop`` says so.
        """
        query = os.path.abspath(path)
        while True:
            live = self._live  # one model and its index throughout, whatever swaps
            try:
                vector, content = self._query_vector(live, query, should_stop)
                result = self._neighbours(live, query, vector, max(k, live.spec.rerank.most),
                                         min_score)
            except CancelledError:
                if live is self._live:
                    raise
                continue  # its model was closed after a swap: ask the one now answering
            result.results, result.reranked = rerank(
                live.model, self.config.rerank_timeout, (query,), result.results,
                rule=live.spec.rerank, should_stop=should_stop, verdicts=self.verdicts,
                query_content=content)
            result.results, result.indexed = result.results[:k], content is not None
            return result

    def search_bytes(self, data: bytes, k: int = 10, min_score: float | str | None = None,
                     name: str = "<bytes>", *, should_stop: StopFn = _never) -> SearchResult:
        """Search with an image given as bytes (e.g. a file only the client can read).
        Raises UsageError, ImageDecodeError (naming ``name``), EmptyIndexError or Cancelled."""
        live = self._live
        return self._neighbours(live, name, self._embed(live, name, data, should_stop), k,
                                min_score)

    def duplicates(self, options: DupesOptions, progress: ProgressFn | None = None,
                   should_stop: Callable[[], bool] = lambda: False) -> dict[str, object]:
        """Duplicate groups (see ``dupes.find_duplicates``)."""
        live = self._live
        with self._side_store() as store:
            return find_duplicates(store, live.spec, live.index.vectors, options,
                                   model=live.model, progress=progress,
                                   should_stop=should_stop)

    def groups_around(self, paths: list[str], options: DupesOptions | None = None, *,
                      should_stop: StopFn = _never) -> list[dict]:
        """The duplicate groups holding a file at or under ``paths`` (``dupes.around``)."""
        live = self._live
        with self._side_store() as store:
            return groups_around(store, live.index, live.spec, live.model, paths,
                                 options or DupesOptions(), should_stop=should_stop)

    def same_picture(self, query: str, paths: list[str], *,
                     cosines: Sequence[float] | None = None,
                     should_stop: StopFn = _never) -> dict[str, object]:
        """The pixel-check score of ``query`` against each of ``paths`` (None where a file
        cannot be read, or once ``should_stop`` says so), with the near threshold: which
        results are duplicates of it. Indexed files reuse (and fill) the verdict cache;
        others are compared directly. With ``cosines`` (the search's score of each path),
        a path below the serving extractor's candidate cosine is not checked (None), as
        ``dupes`` never checks such a pair."""
        from findsimilar.daemon.model.verify import NEAR_SCORE

        floor = self.spec.candidate_cosine
        if cosines is not None and len(cosines) != len(paths):
            raise UsageError("cosines: one score for each of paths")
        below = {p for p, c in zip(paths, cosines or [], strict=False) if float(c) < floor}
        paths = [p for p in paths if p not in below]
        with self._side_store() as store:
            known = {p: store.file(p) for p in [query, *paths]}

            def key(path: str) -> str:
                rec = known.get(path)
                return rec.content_hash if rec and rec.status == "ok" and rec.content_hash \
                    else OUTSIDE + path

            verdicts = Verdicts(store, lambda k: [k[len(OUTSIDE):]] if k.startswith(OUTSIDE)
                                else [p for p, r in known.items() if r and r.content_hash == k],
                                model=self.model, should_stop=should_stop)
            q = key(query)
            pair_of = {p: (q, key(p)) if q <= key(p) else (key(p), q) for p in paths}
            found = verdicts.many([pr for pr in pair_of.values() if pr[0] != pr[1]])
            # The same content hash: identical bytes. No score: a file could not be read.
            scores = {p: 1.0 if pr[0] == pr[1] else found.get(pr) for p, pr in pair_of.items()}
        scores.update(dict.fromkeys(below - scores.keys()))
        return {"query": query, "threshold": NEAR_SCORE, "scores": scores,
                "candidate_cosine": floor}

    def not_duplicates(self, paths: list[str], forget: bool = False) -> dict[str, object]:
        """Mark the photos at ``paths`` as "not duplicates" of each other (or forget)."""
        with self._side_store() as store:
            return mark_not_duplicates(store, paths, forget=forget)

    @contextlib.contextmanager
    def _side_store(self) -> Iterator[Store]:
        """The store for a verb that reads and also writes (the verdict cache, picture
        facts learnt again, "not duplicates" marks): its reads use the calling thread's
        reader, its writes wait their turn for the one writer connection."""
        yield self.store

    def status(self) -> dict[str, object]:
        counts = self.reader().counts()
        size = sum(f.stat().st_size for f in self.config.data_dir.glob("store.db*"))
        return {
            **counts,
            "vectors": len(self.index),
            "model": self.spec.id,
            "dim": self.spec.dim,
            "data_dir": str(self.config.data_dir),
            "config_file": str(self.config.config_file) if self.config.config_file else None,
            "store_bytes": size,
            "index_bytes": self.index_path.stat().st_size if self.index_path.exists() else 0,
            "index": self.builder.status(),
            "recent_failures": self.reader().failures(20),
            # Where the model runs: the worker process (its pid and memory) if it runs.
            "worker": self.model.status(),
            # The configured extractor's vectors being extracted (None: none pending).
            "upgrade": self.upgrade_status() if self.upgrade_status is not None
            else None if self.target is None else pending(self.store, self.spec, self.target),
        }

    # -- the daemon's façade: what its parts ask of the engine ---------------------------
    def reindex(self, paths: list[str], progress: ProgressFn | None = None, *,
                should_stop: StopFn = _never, exclude: Iterable[str] = (),
                explicit_files: bool = True, rehash: bool = False,
                skip: Sequence[str] = ()) -> IndexSummary:
        """Bring the store and the index in step with ``paths`` (see Indexer.index_paths);
        the daemon's indexing thread only. Unlike ``index_paths`` it does not save."""
        return self.indexer.index_paths(paths, progress, should_stop=should_stop,
                                        exclude=exclude, explicit_files=explicit_files,
                                        rehash=rehash, skip=skip)

    def move(self, src: str, dst: str, *, keep_facts: bool) -> int:
        """A file or folder was renamed: re-point its rows (no model call); with
        ``keep_facts`` a renamed file keeps its stored facts. Returns the rows moved."""
        moved = self.indexer.move_path(src, dst)
        if moved and keep_facts:
            self.indexer.keep_facts_of_renamed(dst)
        return moved

    def forget(self, paths: list[str]) -> int:
        """Files or folders deleted: their rows go; returns how many."""
        return self.indexer.remove_paths(paths)

    @property
    def dirty(self) -> bool:
        """The index has changes not saved yet."""
        return self.index.dirty

    def watched_roots(self) -> list[dict[str, object]]:
        return self.reader().roots()

    def setting(self, key: str) -> str | None:
        return self.reader().get_setting(key)

    def add_root(self, path: str, excludes: list[str]) -> None:
        """Watch ``path`` from now on (persisted with the identity of its folder)."""
        self.store.add_root(path, identify(path), excludes)
        self.store.set_setting("roots_configured", "1")

    def remove_root(self, path: str) -> bool:
        """Stop watching ``path`` (its photos stay indexed); False if it was not."""
        found = self.store.remove_root(path)
        self.store.set_setting("roots_configured", "1")
        return found

    def set_root_identity(self, path: str, identity: tuple[int, int, str]) -> None:
        self.store.set_root_identity(path, identity)

    # -- helpers ---------------------------------------------------------------
    def _query_vector(self, live: Live, query: str,
                      should_stop: StopFn = _never) -> tuple[np.ndarray, str | None]:
        """The query's vector, and its content hash if that vector was the stored one of
        an indexed file (unchanged since: what it holds now); None if it was computed."""
        st = query_stat(query)
        stored = self._stored_vector(live, query, st)
        if stored is not None:
            return stored
        if len(live.index) == 0:
            raise EmptyIndexError("the index is empty: run `findsimilar index FOLDER` first")
        source = query_source(query, self.config.max_in_memory_bytes)
        return self._embed(live, query, source, should_stop), None

    def _embed(self, live: Live, name: str, source: bytes | Path,
               should_stop: StopFn) -> np.ndarray:
        """The model's descriptor of ``source``, ahead of any indexing work; ``should_stop``
        is asked before and while it is computed (a client that hung up is not waited
        for). Raises ImageDecodeError naming ``name``, or Cancelled."""
        if should_stop():
            raise Cancelled(f"the client hung up: {name} was not searched")
        future = live.model.embed(source, name, priority=PRIORITY_QUERY)
        while not wait([future], timeout=0.1).done:
            if should_stop():
                raise Cancelled(f"the client hung up: {name} was not searched")
        try:
            return future.result().vector
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"{name}: {exc}") from None

    def _stored_vector(self, live: Live, query: str,
                       st: os.stat_result) -> tuple[np.ndarray, str] | None:
        """The indexed vector of an unchanged indexed file (no model call needed) and its
        content hash."""
        store = self.reader()
        content = indexed_content(store, query, st)
        if content is None:
            return None  # not indexed, or changed since (or not known as read): read it now
        fid = store.feature_ids([content], live.spec.id).get(content)
        return (store.vector(fid, live.spec.dim), content) if fid is not None else None

    def _neighbours(self, live: Live, query: str, vector: np.ndarray, k: int,
                    asked: float | str | None) -> SearchResult:
        index = live.index
        min_score = live.spec.min_score(asked)
        if len(index) == 0:
            raise EmptyIndexError("the index is empty: run `findsimilar index FOLDER` first")
        result = SearchResult(query)
        fetch = k + 2
        while True:
            scores, ids = index.search(vector[None], fetch)
            hits = [(float(s), int(i)) for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            paths = self.reader().paths_for_features(i for _, i in hits)
            result.results = []
            for score, fid in hits:
                if min_score is not None and score < min_score:
                    break
                for p in paths.get(fid, []):
                    if p != query:
                        result.results.append(Match(p, score))
            result.results = one_per_photo(result.results)
            if len(result.results) >= k or fetch >= len(index) or (
                    hits and min_score is not None and hits[-1][0] < min_score):
                break
            fetch = min(len(index), fetch * 4)
        result.results = result.results[:k]
        return result
