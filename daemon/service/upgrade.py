"""Upgrading to a new extractor without a gap: the library is re-extracted in the
background while the old index answers, then the engine swaps in one step.

When the configured extractor is not the one the store serves and its vectors are not
complete (``serving.served_spec``), the engine keeps answering from the old index and
the daemon runs this upgrade in thread ``fs-upgrade``:

* **It yields to user work.** The target model runs in a worker process of its own at
  niceness 19, so searches and indexing (the serving model's worker, at normal
  priority) take the CPU first; and a chunk (``batch_size`` pictures) is sent only while
  the indexing thread has nothing queued or running, so new photos are indexed (with the
  serving model: searches find them at once) before the upgrade goes on.
* **It loops until nothing is missing**: content that arrived meanwhile has no vector of
  the target yet and is picked up by the next pass. Then the swap runs on the indexing
  thread (task :class:`SwapIndex`, so no indexing runs beside it): it checks again that
  nothing is missing, opens the new index and saves it, records the new extractor in
  the store, and replaces the engine's serving bundle whole (``engine.serve``). A search
  uses one bundle from start to end: never an empty or partial index, never one
  model's vector in the other's index.
* **A failure leaves the old index answering**: a model that cannot be loaded, a worker
  that keeps dying, a full disk or a locked store ends the pass; ``status`` shows the
  error (``upgrade.error``, ``failures``), the log says it, and the upgrade is tried
  again after ``config.upgrade_retry`` seconds (after a full disk, once space is freed:
  ``diskspace`` pauses it as it pauses indexing). A picture the new model cannot read is
  left out (``skipped``): the indexer reads its files again after the swap, and a file
  that still fails is recorded as failed with the reason, as any file.
* **It resumes**: every chunk is committed to the store as it is done, so a daemon
  stopped or killed mid-upgrade goes on from there at its next start. Those vectors are
  its only writes; they take their turn on the store's one writer connection (as the
  verdict cache's do), beside the indexing thread, and touch nothing it reads or writes.

``findsimilar index --no-daemon`` runs the same work in the foreground
(:func:`upgrade_in_foreground`): with no daemon, nothing else would finish it.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from findsimilar.config import Config
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.indexing.reextract import Reextractor, chunks
from findsimilar.daemon.model.api import Model
from findsimilar.daemon.service.scheduler import IndexPaths, Scheduler, Task
from findsimilar.daemon.serving import open_model, pending
from findsimilar.daemon.storage.diskspace import DiskFull

if TYPE_CHECKING:
    from findsimilar.daemon.indexing.indexer import ProgressFn
    from findsimilar.daemon.service.work import Work

__all__ = ["NICE", "SwapIndex", "Upgrade", "upgrade_in_foreground"]

log = logging.getLogger(__name__)

NICE = 19  # the upgrade's model worker: the CPU goes to searches and indexing first
_POLL = 0.2  # seconds between looks at the indexing thread while the upgrade waits


@dataclass(eq=False)
class SwapIndex(Task):
    """Swap the engine to the upgrade's extractor, if nothing is missing any more."""

    upgrade: Upgrade | None = None
    name: ClassVar[str] = "upgrade"
    doing: ClassVar[str] = "switching searches to the new model's index"
    while_paused: ClassVar[str] = "run"  # (a full disk: the save fails, and is retried)

    def run(self, work: Work) -> Any:
        assert self.upgrade is not None
        return self.upgrade.swap()


class Upgrade:
    """The background upgrade of one daemon run (see the module docstring)."""

    def __init__(self, engine: Engine, config: Config, scheduler: Scheduler,
                 stopping: threading.Event, disk: DiskFull | None = None) -> None:
        self.engine, self.config = engine, config
        self.scheduler, self.stopping = scheduler, stopping
        self.disk = disk  # a full disk pauses the upgrade as it pauses indexing
        self.target = engine.target
        self.source = engine.spec.id
        self._model: Model | None = None
        self._skipped: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self.state = "pending"
        self.done = self.total = self.extracted = self.failures = 0
        self.error: str | None = None
        self._retry_at: float | None = None
        if self.target is not None:  # what earlier runs did (``status`` before a pass)
            self.done, self.total = (int(pending(engine.store, engine.spec, self.target)[k])
                                     for k in ("done", "total"))

    def start(self) -> None:
        """Start the upgrade's thread, if the engine serves another extractor than the
        configured one."""
        if self.target is None:
            return
        log.info("upgrading to %s in the background; searches use %s until it is "
                 "complete", self.target.id, self.source)
        self._thread = threading.Thread(target=self._run, name="fs-upgrade", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """It has work under way (not while it waits to try a failed run again): the
        daemon is not idle meanwhile."""
        return self._thread is not None and self._thread.is_alive() and self.state != "failed"

    def stop(self) -> None:
        """End the upgrade (the chunk in flight is dropped; what was committed stays)."""
        if self._model is not None:
            self._model.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def status(self) -> dict[str, Any] | None:
        """``status``'s ``upgrade``: None when the configured extractor answered from
        the start; else where the upgrade is (``state``: waiting for indexing,
        extracting, swapping, failed, done)."""
        if self.target is None:
            return None
        retry = None if self._retry_at is None or self.state != "failed" else round(
            max(0.0, self._retry_at - time.monotonic()), 1)
        model = self._model
        return {"from": self.source, "to": self.target.id, "state": self.state,
                "done": self.done, "total": self.total, "extracted": self.extracted,
                "skipped": len(self._skipped), "failures": self.failures,
                "error": self.error, "retry_in_s": retry,
                # The new model's worker process (at niceness 19), while it runs.
                "worker_pid": model.status()["pid"] if model is not None else None}

    # -- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    if self._pass():
                        return
                except CancelledError:  # its model was closed: the daemon stops
                    return
                except Exception as exc:
                    self._failed(exc)
                    self.stopping.wait(self.config.upgrade_retry)
        finally:
            self.engine.store.release_reader()

    def _pass(self) -> bool:
        """Extract what is missing, chunk by chunk; True once swapped (or stopping)."""
        assert self.target is not None
        if self._model is None:
            self._model = open_model(self.config, self.target, False, nice=NICE)
        work = Reextractor(self.engine.store, self._model, self.config)
        missing = [h for h in work.missing() if h not in self._skipped]
        self.total = self.engine.store.counts()["unique_images"]
        self.done = max(0, self.total - len(missing))
        if not missing:
            return self._swap_on_the_indexing_thread()
        for chunk in chunks(missing, self.config.batch_size):
            if not self._wait_for_quiet():
                return True
            self.state = "extracting"
            result = work.run(chunk)
            for content_hash, why in result.skipped.items():
                log.warning("upgrade to %s: left out %s: %s", self.target.id,
                            content_hash, why)
            self._skipped.update(result.skipped)
            self.extracted += result.extracted
            self.done += len(chunk)
            self.error = None
        return False  # another pass: content that arrived meanwhile, then the swap

    def _wait_for_quiet(self) -> bool:
        """Wait while the indexing thread has work, or the disk is full; False if the
        daemon stops meanwhile."""
        while not self.scheduler.idle or (self.disk is not None and self.disk.problem):
            self.state = "waiting"
            if self.stopping.wait(_POLL):
                return False
        return not self.stopping.is_set()

    def _swap_on_the_indexing_thread(self) -> bool:
        self.state = "swapping"
        task = self.scheduler.put(SwapIndex(upgrade=self))
        while not task.done.done():
            if self.stopping.wait(_POLL):
                return True
        if task.done.cancelled():
            return True
        return bool(task.done.result())  # (its error: this pass failed)

    def swap(self) -> bool:
        """On the indexing thread: serve the target if none of its vectors is missing
        (content arrived since the last pass: False, another pass runs first)."""
        assert self.target is not None
        left = [h for h in self.engine.store.hashes_needing_features(self.target.id)
                if h not in self._skipped]
        if left:
            return False
        model = open_model(self.config, self.target, False)  # at normal priority
        try:
            self.engine.serve(model)
        except BaseException:
            model.close()
            raise
        self.state, self.error = "done", None
        if self._model is not None:
            self._model.close()
        if self._skipped:  # read again by the indexer: a vector, or failed for good
            paths = [p for h in self._skipped for p in self.engine.store.paths_for_hash(h)]
            self.scheduler.put(IndexPaths(paths))
        log.info("upgrade to %s done: %d pictures extracted by this run, %d left out",
                 self.target.id, self.extracted, len(self._skipped))
        return True

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.state, self.error = "failed", f"{exc}"
        if self.disk is not None and self.disk.caused(exc):  # (in status: ``problem``)
            self.disk.report(f"upgrading to {self.engine.config.extractor}")
        self._retry_at = time.monotonic() + self.config.upgrade_retry
        assert self.target is not None
        log.error("the upgrade to %s failed (%s): searches keep using %s; it is tried "
                  "again in %.0f s", self.target.id, exc, self.source,
                  self.config.upgrade_retry)
        if self._model is not None:  # a fresh worker next time
            self._model.close()
            self._model = None


def upgrade_in_foreground(engine: Engine, progress: ProgressFn | None = None) -> int:
    """`index --no-daemon`: extract the configured extractor's missing vectors here and
    swap to it (see the module docstring); returns the pictures extracted."""
    target = engine.target
    if target is None:
        return 0
    model = open_model(engine.config, target, True)
    try:
        work = Reextractor(engine.store, model, engine.config)
        missing, extracted = work.missing(), 0
        for done, chunk in enumerate(chunks(missing, engine.config.batch_size)):
            result = work.run(chunk)
            extracted += result.extracted
            for content_hash, why in result.skipped.items():
                log.warning("left out %s: %s", content_hash, why)
            if progress is not None:
                progress(min(len(missing), (done + 1) * engine.config.batch_size),
                         len(missing))
        engine.serve(model)
    except BaseException:
        model.close()
        raise
    return extracted
