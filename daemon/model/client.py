"""The model in a worker process, as the daemon sees it (``api.Model``).

The daemon that stays up all day holds the store, the index and the socket; torch,
Pillow's decoders and OpenCV live in a worker process (``worker``) started when a
picture first needs them and ended after ``config.model_idle`` seconds without work (0:
never). An embedding carries the very bytes the daemon hashed (or the path of a file too
big to hold in memory); a pixel check carries the paths of two pictures.

Two threads: ``fs-model`` starts the worker (it must be that thread: PR_SET_PDEATHSIG
follows the thread that forks), reads its answers and watches it; ``fs-model-send``
sends queued work in priority order, so a send blocked by a stopped worker holds up no
caller.

A worker that dies (a decoder's segfault, the OOM killer) or hangs (decoding one picture
for more than ``config.model_timeout`` seconds, or silent that long — it says ``alive``
every second — while it has work) is killed and replaced; the daemon goes on. The work
it had not begun, or had decoded already, is sent again. What it was decoding when a
signal killed it (or it hung) is suspect (a worker that exits, or is told to stop by
SIGTERM, SIGINT or SIGHUP, says nothing about its pictures: they are sent again): a
single suspect fails with the reason (``ImageDecodeError``: the file is recorded as
failed); several are run again one at a time, each alone in the worker, so that only a
picture that brings a worker down by itself is failed.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from findsimilar.config import Config
from findsimilar.daemon.model.api import (
    PRIORITY_CHECK,
    PRIORITY_INDEX,
    Embedded,
    Picture,
    PictureFacts,
)
from findsimilar.daemon.model.memory import one_arena
from findsimilar.daemon.model.process import death, kill, reap, rss_bytes
from findsimilar.daemon.model.spec import ModelSpec
from findsimilar.daemon.model.wire import FrameReader, WireError, send_frame
from findsimilar.errors import FindSimilarError, ImageDecodeError

__all__ = ["WorkerModel"]

log = logging.getLogger(__name__)

# Deaths in a row that no picture explains, with no answer in between, after which the
# work waiting fails instead of waiting for yet another worker (one that cannot start).
_DEATHS_IN_A_ROW = 3
_POLL = 0.25  # seconds between checks of a running worker
# Signals that stop a process on purpose: no picture is to blame.
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


@dataclass(eq=False)
class _Job:
    id: int
    priority: int
    name: str
    header: dict[str, Any]
    blob: bytes
    future: Future
    started: float | None = None  # since when the worker decodes it (monotonic)
    solo: bool = False  # a suspect of a crash: run alone


class _Worker:
    """One worker process and our end of its socket."""

    def __init__(self, proc: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self.proc, self.sock = proc, sock
        self.reader = FrameReader(sock)
        self.killed_for: str | None = None  # why we killed it, if we did


class WorkerModel:
    """Hands decoding, embedding and pixel checks to a worker process (see above)."""

    def __init__(self, spec: ModelSpec, config: Config, *, nice: int = 0) -> None:
        """``nice``: the worker's niceness (background work that must yield the CPU)."""
        one_arena()  # this process decodes nothing: its threads allocate little at a time
        self.spec = spec
        self.idle_after, self.timeout = config.model_idle, config.model_timeout
        self._options = {"spec": asdict(spec), "parent": os.getpid(), "nice": nice, "local": {
            "model_threads": config.model_threads, "decode_workers": config.decode_workers,
            "batch_size": config.batch_size, "max_pixels": config.max_pixels}}
        self._cv = threading.Condition()
        self._outbox: list[tuple[int, int, _Job]] = []  # not sent yet, by priority
        self._solo: deque[_Job] = deque()  # suspects, each to run alone
        self._jobs: dict[int, _Job] = {}  # sent to the current worker, not answered
        self._cancels: list[int] = []  # ids of sent jobs given up on: the worker is told
        self._ids = itertools.count(1)
        self._worker: _Worker | None = None
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._last_work = self._last_heard = self._busy_since = time.monotonic()
        self._deaths_in_a_row = 0
        self._counts = {"starts": 0, "replaced": 0}
        self._last_death: str | None = None

    # -- the interface (api.Model) ----------------------------------------------------
    def embed(self, source: bytes | Path, name: str, *,
              priority: int = PRIORITY_INDEX) -> Future[Embedded]:
        header: dict[str, Any] = {"op": "embed", "name": name, "priority": priority}
        if isinstance(source, Path):
            header["path"] = str(source)
            return self._submit(priority, name, header, b"")
        return self._submit(priority, name, header, source)

    def compare(self, a: Picture, b: Picture, *,
                priority: int = PRIORITY_CHECK) -> Future[float | None]:
        header = {"op": "compare", "a": {"key": a.key, "paths": list(a.paths)},
                  "b": {"key": b.key, "paths": list(b.paths)}, "priority": priority}
        name = " / ".join(p.paths[0] if p.paths else p.key for p in (a, b))
        return self._submit(priority, name, header, b"")

    def facts(self, picture: Picture, *, digest: bool = False,
              priority: int = PRIORITY_CHECK) -> Future[PictureFacts | None]:
        header = {"op": "facts", "picture": {"key": picture.key, "paths": list(picture.paths)},
                  "digest": digest, "priority": priority}
        return self._submit(priority, picture.paths[0] if picture.paths else picture.key,
                            header, b"")

    def status(self) -> dict[str, object]:
        with self._cv:
            worker = self._worker
            pid = worker.proc.pid if worker is not None else None
            return {"running": worker is not None, "in_process": False, "pid": pid,
                    "rss_bytes": rss_bytes(pid) if pid else None,
                    "busy": len(self._jobs) + len(self._outbox) + len(self._solo),
                    "working_on": sorted({j.name for j in self._jobs.values() if j.started}),
                    "starts": self._counts["starts"], "replaced": self._counts["replaced"],
                    "last_failure": self._last_death, "idle_exit": self.idle_after}

    def close(self) -> None:
        """Stop the worker; work not answered yet is cancelled."""
        with self._cv:
            self._closed = True
            worker, self._worker = self._worker, None
            dropped = [*self._jobs.values(), *self._solo, *(j for _, _, j in self._outbox)]
            self._jobs.clear()
            self._solo.clear()
            self._outbox.clear()
            self._cv.notify_all()
        for job in dropped:  # (a check the worker had begun can no longer be cancelled)
            if not job.future.cancel():
                _fail(job.future, FindSimilarError("the model was stopped"))
        if worker is not None:
            _stop(worker)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)

    # -- queueing ---------------------------------------------------------------------
    def _submit(self, priority: int, name: str, header: dict[str, Any],
                blob: bytes) -> Future:
        job = _Job(next(self._ids), priority, name, header, blob, Future())
        job.header["id"] = job.id
        with self._cv:
            if self._closed:
                job.future.cancel()
                return job.future
            heapq.heappush(self._outbox, (priority, job.id, job))
            job.future.add_done_callback(lambda f: f.cancelled() and self._given_up(job))
            if not self._threads:
                self._threads = [
                    threading.Thread(target=self._supervise, name="fs-model", daemon=True),
                    threading.Thread(target=self._send_loop, name="fs-model-send", daemon=True)]
                for thread in self._threads:
                    thread.start()
            self._cv.notify_all()
        return job.future

    def _given_up(self, job: _Job) -> None:
        """``job``'s future was cancelled: if the worker has it, it is told to drop it
        (unless begun: a check or facts the worker has begun can no longer be cancelled,
        its future says so; it answers "cancelled" for one it dropped)."""
        with self._cv:
            if job.id in self._jobs:
                self._cancels.append(job.id)
                self._cv.notify_all()

    def _next_to_send(self) -> tuple[_Job, _Worker] | None:
        """The next job for the running worker (a suspect only once it has nothing else
        to do), or None once closed."""
        with self._cv:
            while not self._closed:
                worker = self._worker
                job = None
                if worker is not None and worker.killed_for is None:
                    if self._cancels:  # (not a job: no answer is waited for)
                        cancel = {"op": "cancel", "id": self._cancels.pop()}
                        return _Job(0, 0, "", cancel, b"", Future()), worker
                    if self._solo:
                        job = self._solo.popleft() if not self._jobs else None
                    elif self._outbox:
                        job = heapq.heappop(self._outbox)[2]
                if job is not None and job.future.cancelled():
                    continue  # (a pixel check started ahead and not needed after all)
                if job is not None:
                    if not self._jobs:
                        self._busy_since = time.monotonic()
                    self._jobs[job.id] = job
                    return job, worker  # type: ignore[return-value]
                self._cv.wait()
            return None

    def _send_loop(self) -> None:
        while (taken := self._next_to_send()) is not None:
            job, worker = taken
            with contextlib.suppress(OSError):  # it died: fs-model sends it again, or fails it
                send_frame(worker.sock, job.header, job.blob)

    # -- the worker's life --------------------------------------------------------------
    def _supervise(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._closed or self._worker is not None
                                  or bool(self._outbox or self._solo))
                if self._closed:
                    return
                worker = self._worker
            if worker is None:
                self._spawn()
                continue
            self._read(worker)
            if self._worker is worker:
                self._watch(worker)

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "findsimilar.daemon.model.worker",
                 str(theirs.fileno()), json.dumps(self._options)],
                stdin=subprocess.DEVNULL, stdout=2,  # a stray print must not reach us
                pass_fds=(theirs.fileno(),))
        except OSError as exc:
            ours.close()
            self._fail_all(FindSimilarError(f"the model worker cannot be started: {exc}"))
            time.sleep(1.0)
            return
        finally:
            theirs.close()
        with self._cv:
            self._worker = _Worker(proc, ours)
            self._counts["starts"] += 1
            self._last_work = self._last_heard = self._busy_since = time.monotonic()
            self._cv.notify_all()
        log.info("model worker started (pid %d)", proc.pid)

    def _read(self, worker: _Worker) -> None:
        try:
            frames = worker.reader.read(timeout=_POLL)
        except (OSError, WireError) as exc:
            if self._closed:  # close() closed the socket under us
                return
            log.error("the model worker's answers cannot be read: %s", exc)
            kill(worker.proc)
            frames = None
        if frames is None:
            if not self._closed:
                self._died(worker)
            return
        for header, blob in frames:
            try:
                self._answered(worker, header, blob)
            except Exception:  # a malformed answer must not end the thread every answer needs
                log.exception("an answer of the model worker could not be taken: %.200r",
                              header)

    def _answered(self, worker: _Worker, header: dict[str, Any], blob: bytes) -> None:
        now = time.monotonic()
        if "fatal" in header:
            self._fatal(worker, str(header["fatal"]))
            return
        with self._cv:
            self._last_heard = now
            job = self._jobs.get(header.get("id", -1))
            if job is None:
                return
            if "started" in header or "decoded" in header:
                job.started = now if "started" in header else None
                if job.started and job.header["op"] != "embed" and not (
                        job.future.running() or job.future.done()):
                    job.future.set_running_or_notify_cancel()  # too late to cancel it now
                return
            del self._jobs[job.id]
            self._last_work, self._deaths_in_a_row = now, 0
            self._cv.notify_all()  # a suspect may be sent now
        if job.future.cancelled():  # its asker has given up on it meanwhile
            return
        if "error" in header:
            _fail(job.future, ImageDecodeError(str(header["error"])))
        elif "score" in header:
            _settle(job.future, header["score"])
        elif "facts" in header:
            found = header["facts"]
            _settle(job.future, found and PictureFacts.from_dict(found))
        else:
            ok = header["ok"]
            _settle(job.future, Embedded(
                np.frombuffer(blob, "<f4").astype(np.float32, copy=False),
                int(ok["width"]), int(ok["height"]), str(ok["format"]),
                (float(ok["content"][0]), float(ok["content"][1])),
                ok.get("facts") and PictureFacts.from_dict(ok["facts"])))

    def _watch(self, worker: _Worker) -> None:
        """Kill a worker that hangs (then it is replaced); end one idle for long enough."""
        now = time.monotonic()
        with self._cv:
            jobs = list(self._jobs.values())
            quiet = now - max(self._last_heard, self._busy_since)
            retire = (not (jobs or self._outbox or self._solo) and self.idle_after > 0
                      and now - self._last_work >= self.idle_after)
            if retire:
                self._worker = None
        if retire:
            log.info("model worker (pid %d) ends after %.0f s without work",
                     worker.proc.pid, now - self._last_work)
            _stop(worker)
            return
        if not self.timeout or not jobs:
            return
        stuck = [j for j in jobs if j.started is not None and now - j.started > self.timeout]
        if stuck or quiet > self.timeout:
            worker.killed_for = (f"reading it took more than {self.timeout:g} s: the model "
                                 "worker was stopped and replaced")
            log.error("model worker (pid %d) hangs on %s: killing it", worker.proc.pid,
                      ", ".join(j.name for j in stuck) or "its work")
            kill(worker.proc)
            self._died(worker)

    def _died(self, worker: _Worker) -> None:
        """The worker is gone: send again what it had not begun, run what it had begun
        alone, fail a picture that was alone when it went down."""
        code = reap(worker.proc)
        what, why = ("hung", worker.killed_for) if worker.killed_for else death(code)
        blame = worker.killed_for is not None or (code < 0 and -code not in _STOP_SIGNALS)
        worker.sock.close()
        with self._cv:
            if self._worker is worker:
                self._worker = None
            jobs = sorted(self._jobs.values(), key=lambda j: j.id)
            self._jobs.clear()
            begun = [j for j in jobs if j.started is not None] if blame else []
            failed = [j for j in begun if j.solo or len(begun) == 1]
            for job in jobs:
                if job in failed:
                    continue
                if job in begun or job.solo:
                    job.started, job.solo = None, True
                    self._solo.append(job)
                else:
                    heapq.heappush(self._outbox, (job.priority, job.id, job))
            self._counts["replaced"] += 1
            # Deaths no picture explains, in a row, end in failure (see _DEATHS_IN_A_ROW).
            self._deaths_in_a_row = 0 if failed else self._deaths_in_a_row + 1
            self._last_death = why
            hopeless = self._deaths_in_a_row >= _DEATHS_IN_A_ROW
            self._cv.notify_all()
        log.warning("model worker (pid %d) %s: replaced; %d jobs sent again, %d failed%s",
                    worker.proc.pid, what, len(jobs) - len(failed), len(failed),
                    "".join(f"\n  failed: {j.name}: {why}" for j in failed))
        for job in failed:
            _fail(job.future, ImageDecodeError(why))
        if hopeless:
            self._fail_all(FindSimilarError(
                f"the model worker keeps dying ({why}); see the daemon's log"))

    def _fatal(self, worker: _Worker, message: str) -> None:
        """The worker cannot load the model: every job fails with its words."""
        with self._cv:
            if self._worker is worker:
                self._worker = None
            self._last_death = message
        _stop(worker)
        self._fail_all(FindSimilarError(message))

    def _fail_all(self, error: Exception) -> None:
        with self._cv:
            jobs = [*self._jobs.values(), *self._solo, *(j for _, _, j in self._outbox)]
            self._jobs.clear()
            self._solo.clear()
            self._outbox.clear()
            self._deaths_in_a_row = 0
        for job in jobs:
            _fail(job.future, error)


def _fail(future: Future, error: Exception) -> None:
    with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
        future.set_exception(error)


def _settle(future: Future, result: object) -> None:
    with contextlib.suppress(InvalidStateError):  # cancelled meanwhile
        future.set_result(result)


def _stop(worker: _Worker) -> None:
    """End a worker: it exits once its socket closes (or is killed after 2 s)."""
    worker.sock.close()
    try:
        worker.proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        kill(worker.proc)
        worker.proc.wait()
