"""The model in this process: decode threads feeding one thread that batches the network.

Work waits in one queue by priority (``api``); ``decode_workers`` threads take it: an
embedding is decoded (``decode``; Pillow releases the GIL, so decoding overlaps the
network) and queued for the network, a pixel check or a facts-only decode is run there
and then (OpenCV releases the GIL too). The network thread runs a batch once
``batch_size`` pictures are decoded, or as soon as no more are on their way, or at once
for a search someone waits for.

Used by the model worker (``worker``), and directly by an engine run with
``--no-daemon``. torch is imported by the network thread, started by the first embedding
(pixel checks and facts need only the decode threads), and OpenCV by
the first pixel check, so an engine that never needs the model never loads either.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from findsimilar.daemon.model.api import (
    PRIORITY_CHECK,
    PRIORITY_INDEX,
    PRIORITY_QUERY,
    Embedded,
    Picture,
    PictureFacts,
)
from findsimilar.daemon.model.decode import DecodedImage, decode_for_model
from findsimilar.daemon.model.spec import ModelSpec
from findsimilar.errors import FindSimilarError, ImageDecodeError

__all__ = ["LocalModel"]

log = logging.getLogger(__name__)

# Told "started" when a decode thread takes a job, "decoded" when a picture waits for
# the network (the worker passes these on: the daemon times decoding alone).
NotifyFn = Callable[[str], None]
# Seconds the network waits for a batch to fill while pictures are still being decoded.
# Batches of 1-8 cost about the same per picture here (bfloat16, 2 cores: 7.8-9 ms), so
# this only saves a little where they do not (float32).
LINGER = 0.02


@dataclass(eq=False)
class _Job:
    future: Future
    priority: int
    name: str
    notify: NotifyFn | None = None
    source: bytes | Path | None = None  # an embedding: what to decode
    pair: tuple[Picture, Picture] | None = None  # a pixel check
    facts_of: Picture | None = None  # facts only (``digest``: with the pixel digest)
    digest: bool = False
    decoded: DecodedImage | None = None

    @property
    def embeds(self) -> bool:
        return self.pair is None and self.facts_of is None


class LocalModel:
    """Decoding and the network in threads of this process (started on first use)."""

    def __init__(self, spec: ModelSpec, *, model_threads: int, decode_workers: int,
                 batch_size: int, max_pixels: int) -> None:
        self.spec = spec
        self.model_threads, self.decode_workers = model_threads, max(1, decode_workers)
        self.batch_size, self.max_pixels = max(1, batch_size), max_pixels
        self._cv = threading.Condition()
        self._queue: list[tuple[int, int, _Job]] = []  # waiting for a decode thread
        self._ready: list[tuple[int, int, _Job]] = []  # decoded, waiting for the network
        self._embeds_due = 0  # embeddings queued or being decoded: pictures on their way
        self._busy = 0  # jobs taken by a decode thread and not yet decoded or checked
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._network: threading.Thread | None = None  # started by the first embedding
        self._closed = False
        self._broken: FindSimilarError | None = None  # the network could not be loaded
        self._previews = _Previews(max_pixels)

    # -- the interface (api.Model) ----------------------------------------------------
    def embed(self, source: bytes | Path, name: str, *, priority: int = PRIORITY_INDEX,
              notify: NotifyFn | None = None) -> Future[Embedded]:
        """See ``api.Model.embed``; ``notify`` is told how the work goes (above)."""
        return self._put(_Job(Future(), priority, name, notify, source=source))

    def compare(self, a: Picture, b: Picture, *, priority: int = PRIORITY_CHECK,
                notify: NotifyFn | None = None) -> Future[float | None]:
        return self._put(_Job(Future(), priority, f"{a.key} / {b.key}", notify,
                              pair=(a, b)))

    def facts(self, picture: Picture, *, digest: bool = False, priority: int = PRIORITY_CHECK,
              notify: NotifyFn | None = None) -> Future[PictureFacts | None]:
        return self._put(_Job(Future(), priority, picture.key, notify, facts_of=picture,
                              digest=digest))

    def status(self) -> dict[str, object]:
        with self._cv:
            running = self._network is not None and not self._closed and self._broken is None
            return {"running": running, "in_process": True,
                    "pid": os.getpid() if running else None,
                    "busy": len(self._queue) + self._busy + len(self._ready)}

    def start(self, *, network: bool = True) -> None:
        """Start the threads now rather than on first use: the decode threads, and with
        ``network`` the network's (it loads the model at once). A pixel check or a
        facts-only decode needs no network: those start the decode threads alone, so a
        listing never loads torch."""
        with self._cv:
            if self._closed:
                return
            new = [] if self._threads else [
                threading.Thread(target=self._decode_loop, name=f"fs-decode-{i}", daemon=True)
                for i in range(self.decode_workers)]
            if network and self._network is None:
                self._network = threading.Thread(target=self._network_loop, name="fs-model",
                                                 daemon=True)
                new.append(self._network)
            self._threads += new
        for thread in new:
            thread.start()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            dropped = [job for _, _, job in self._queue + self._ready]
            self._queue.clear()
            self._ready.clear()
            self._cv.notify_all()
        for job in dropped:  # (one a decode thread took can no longer be cancelled)
            if not job.future.cancel():
                _settle(job.future, error=FindSimilarError("the model was stopped"))
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    # -- queueing -----------------------------------------------------------------------
    def _put(self, job: _Job) -> Future:
        with self._cv:
            if self._closed:
                job.future.cancel()
                return job.future
            if self._broken is not None and job.embeds:
                _settle(job.future, error=self._broken)
                return job.future
            heapq.heappush(self._queue, (job.priority, next(self._seq), job))
            self._embeds_due += job.embeds
            self._cv.notify_all()
        self.start(network=job.embeds)
        return job.future

    def _next(self) -> _Job | None:
        with self._cv:
            self._cv.wait_for(lambda: self._queue or self._closed)
            if self._closed:
                return None
            self._busy += 1
            return heapq.heappop(self._queue)[2]

    # -- decode threads -----------------------------------------------------------------
    def _decode_loop(self) -> None:
        while (job := self._next()) is not None:
            try:
                if not job.future.set_running_or_notify_cancel():
                    continue
                if job.notify is not None:
                    job.notify("started")
                if job.pair is not None:
                    _settle(job.future, self._check(*job.pair))
                elif job.facts_of is not None:
                    _settle(job.future, self._facts(job.facts_of, job.digest))
                else:
                    self._decode(job)
            finally:
                with self._cv:
                    self._busy -= 1
                    self._embeds_due -= job.embeds
                    self._cv.notify_all()

    def _decode(self, job: _Job) -> None:
        assert job.source is not None
        try:
            job.decoded = decode_for_model(job.source, self.spec.input_size,
                                           max_pixels=self.max_pixels)
        except ImageDecodeError as exc:
            _settle(job.future, error=ImageDecodeError(str(exc)))
            return
        except Exception as exc:  # a decoder bug must cost one file, not the run
            log.exception("unexpected error decoding %s", job.name)
            _settle(job.future, error=ImageDecodeError(
                f"unexpected decoder error: {type(exc).__name__}: {exc}"))
            return
        finally:
            job.source = None  # the file's bytes are not needed any more
        if job.notify is not None:
            job.notify("decoded")
        with self._cv:
            if self._broken is not None:
                _settle(job.future, error=self._broken)
                return
            heapq.heappush(self._ready, (job.priority, next(self._seq), job))

    def _check(self, a: Picture, b: Picture) -> float | None:
        from findsimilar.daemon.model.verify import compare

        try:
            pa, pb = self._previews.get(a), self._previews.get(b)
            return None if pa is None or pb is None else round(compare(pa, pb), 4)
        except Exception:  # an OpenCV surprise on one odd picture must not end the listing
            log.exception("pixel check failed for %s / %s", a.key, b.key)
            return None

    def _facts(self, picture: Picture, digest: bool) -> PictureFacts | None:
        for path in picture.paths:  # any copy will do; one may be gone
            try:
                return decode_for_model(Path(path), self.spec.input_size,
                                        max_pixels=self.max_pixels, digest=digest or None).facts
            except (ImageDecodeError, OSError) as exc:
                log.info("cannot read the facts of %s: %s", path, exc)
            except Exception:  # a decoder bug must cost one picture's facts, not the listing
                log.exception("unexpected error reading the facts of %s", path)
        return None

    # -- the network thread ---------------------------------------------------------------
    def _network_loop(self) -> None:
        try:
            extractor = self._load()
        except Exception as exc:
            self._break(exc)
            return
        while (batch := self._take_batch()) is not None:
            pixels = np.stack([job.decoded.pixels for job in batch])  # type: ignore[union-attr]
            try:
                vectors = extractor.embed(pixels)
            except Exception as exc:
                log.exception("the model failed on a batch of %d pictures", len(batch))
                for job in batch:
                    _settle(job.future, error=ImageDecodeError(
                        f"the model could not run on it: {type(exc).__name__}: {exc}"))
                continue
            for job, vector in zip(batch, vectors, strict=True):
                d = job.decoded
                assert d is not None
                _settle(job.future, Embedded(vector, d.width, d.height, d.format, d.content,
                                             d.facts))

    def _load(self):  # noqa: ANN202 - a FeatureExtractor (torch is imported here)
        from findsimilar.daemon.model.features import create_extractor

        extractor = create_extractor(self.spec.name, self.model_threads)
        if extractor.id != self.spec.id:
            raise FindSimilarError(f"the model loaded is {extractor.id}, not {self.spec.id}")
        size = extractor.input_size
        extractor.embed(np.zeros((1, size, size, 3), np.uint8))  # builds the network now
        return extractor

    def _break(self, exc: Exception) -> None:
        """The network cannot be loaded: every embedding fails with the reason."""
        error = exc if isinstance(exc, FindSimilarError) else FindSimilarError(
            f"the model could not be loaded: {type(exc).__name__}: {exc}")
        log.error("%s", error)
        with self._cv:
            self._broken = error
            queued = [job for _, _, job in self._queue if job.embeds]
            failed = [job for _, _, job in self._ready] + queued
            self._ready.clear()
            self._queue[:] = [entry for entry in self._queue if not entry[2].embeds]
            heapq.heapify(self._queue)
            self._embeds_due -= len(queued)
            self._cv.notify_all()
        for job in failed:
            _settle(job.future, error=error)

    def _take_batch(self) -> list[_Job] | None:
        """The next batch: ``batch_size`` pictures, or fewer once no more are on their way,
        a search waits, or the first has waited :data:`LINGER` seconds (a slow picture
        must not hold up the others); None once closed."""
        deadline = None
        with self._cv:
            while not self._closed:
                if not self._ready:
                    deadline = None
                    self._cv.wait()
                    continue
                now = time.monotonic()
                deadline = deadline or now + LINGER
                if (len(self._ready) >= self.batch_size or self._embeds_due == 0
                        or self._ready[0][0] == PRIORITY_QUERY or now >= deadline):
                    count = min(self.batch_size, len(self._ready))
                    return [heapq.heappop(self._ready)[2] for _ in range(count)]
                self._cv.wait(deadline - now)
            return None


def _settle(future: Future, result: object = None, *,
            error: BaseException | None = None) -> None:
    """Give ``future`` its result or error, unless close() has already (a job a thread was
    still working on when the model stopped)."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class _Previews:
    """A small LRU of decoded previews: a picture is decoded once while its pairs run."""

    def __init__(self, max_pixels: int, size: int = 256) -> None:
        self.max_pixels, self.size = max_pixels, size
        self._cache: OrderedDict[str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, picture: Picture):  # noqa: ANN201 - a verify.Preview or None
        with self._lock:
            if picture.key in self._cache:
                self._cache.move_to_end(picture.key)
                return self._cache[picture.key]
        preview = self._load(picture)
        with self._lock:
            self._cache[picture.key] = preview
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return preview

    def _load(self, picture: Picture):  # noqa: ANN202
        from findsimilar.daemon.model.verify import load_preview

        for path in picture.paths:  # any copy will do; one may be gone
            try:
                return load_preview(path, max_pixels=self.max_pixels)
            except (ImageDecodeError, OSError) as exc:
                log.info("cannot compare %s: %s", path, exc)
        return None
