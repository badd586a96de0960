"""The indexing thread: one queue of typed tasks, run one at a time, in order.

The thread (``fs-index``) is the store's only writer, so tasks never race each other;
queries are answered beside it by the socket server's threads. Each kind of work is a
small class (:class:`Reconcile`, :class:`ApplyEvents`, :class:`IndexPaths`,
:class:`Precheck`, :class:`Announce`) that says how it behaves when things go wrong:

* a full disk pauses indexing: a task is skipped (the reconcile queued when space is
  back catches up on it), refused (a client asked to index: it is told why), or run
  (the background duplicate check, which writes little);
* a store that is locked by another program or read-only holds the task and runs it
  again once the store can be written (``storeaccess``): its work is never dropped;
* a burst of file events arrives as many :class:`ApplyEvents` tasks: the first one
  absorbs those queued right behind it, so a storm is one indexing pass.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from findsimilar.daemon.model.memory import give_back_soon
from findsimilar.daemon.service.metrics import Throughput
from findsimilar.daemon.storage.diskspace import DiskFull, DiskFullError
from findsimilar.daemon.storage.storeaccess import StoreAccess
from findsimilar.errors import StoreError, store_damage

if TYPE_CHECKING:
    from findsimilar.daemon.indexing.watcher import Op
    from findsimilar.daemon.service.work import Work

__all__ = ["Announce", "ApplyEvents", "IndexPaths", "Precheck", "Progress", "Reconcile",
           "Scheduler", "Task"]

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What the indexing thread is doing, for ``status``: a state and a count, and the
    throughput of its files (``metrics.Throughput``)."""

    state: str = "starting"
    done: int = 0
    total: int = 0
    throughput: Throughput = field(default_factory=Throughput)

    def begin(self, state: str) -> None:
        self.state, self.done, self.total = state, 0, 0
        self.throughput.begin()

    def advance(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        self.throughput.advance(done)

    def rate(self) -> float | None:
        """Files a second over the last minute of indexing work; None while that is too
        short to mean anything (``metrics.MIN_SPAN_S``)."""
        return self.throughput.rate()


@dataclass(eq=False)
class Task:
    """Work for the indexing thread; ``done`` carries its result to whoever waits."""

    name: ClassVar[str] = "task"
    doing: ClassVar[str] = "indexing"  # for a log line: "<doing>: the disk is full"
    # Under a full disk: "skip" it, "refuse" it (the waiting client is told), or "run" it.
    while_paused: ClassVar[str] = "skip"
    # It writes the library: a locked or read-only store makes it wait and run again,
    # and once done the library may have changed (a new generation).
    writes: ClassVar[bool] = True
    done: Future[Any] = field(default_factory=Future, init=False, repr=False)
    # When it was made, which is when it was queued (``Scheduler.waiting``).
    queued_at: float = field(default_factory=time.monotonic, init=False, repr=False)

    def run(self, work: Work) -> Any:
        """Do the work; the result goes to ``done``."""
        return None

    def absorb(self, other: Task) -> bool:
        """Take ``other`` (queued right behind) into this task; False if it cannot."""
        return False

    def items(self) -> int:
        """File events it carries, counted as queued in ``status``."""
        return 0


@dataclass(eq=False)
class Reconcile(Task):
    """Bring watched folders (all, or these paths) in step with the disk."""

    paths: list[str] | None = None
    rehash: bool = False
    name: ClassVar[str] = "reconcile"
    doing: ClassVar[str] = "reconciling the watched folders"

    def run(self, work: Work) -> Any:
        return work.reconcile(self.paths, self.rehash)


@dataclass(eq=False)
class ApplyEvents(Task):
    """Settled file events from the watcher."""

    ops: list[Op] = field(default_factory=list)
    name: ClassVar[str] = "ops"
    doing: ClassVar[str] = "indexing changed files"

    def run(self, work: Work) -> Any:
        return work.apply(self.ops)  # run again whole if it must wait: it is idempotent

    def absorb(self, other: Task) -> bool:
        if not isinstance(other, ApplyEvents):
            return False
        self.ops = [*self.ops, *other.ops]
        return True

    def items(self) -> int:
        return len(self.ops)


@dataclass(eq=False)
class IndexPaths(Task):
    """A client's `index` of files and folders."""

    paths: list[str] = field(default_factory=list)
    rehash: bool = False
    skip: list[str] = field(default_factory=list)  # `index --exclude` globs
    name: ClassVar[str] = "index"
    while_paused: ClassVar[str] = "refuse"

    def run(self, work: Work) -> Any:
        return work.index(self.paths, "indexing", rehash=self.rehash,
                          skip=self.skip).as_dict()


@dataclass(eq=False)
class Precheck(Task):
    """Pixel-check new duplicate candidates while there is nothing else to do."""

    generation: int = 0
    name: ClassVar[str] = "precheck"
    doing: ClassVar[str] = "saving duplicate checks"
    while_paused: ClassVar[str] = "run"
    writes: ClassVar[bool] = False

    def run(self, work: Work) -> Any:
        return work.precheck(self.generation)


@dataclass(eq=False)
class Announce(Task):
    """Look for duplicates around photos that just arrived (``follow``): for followers
    of `dupes --follow` and the desktop notification."""

    paths: list[str] = field(default_factory=list)
    name: ClassVar[str] = "announce"
    doing: ClassVar[str] = "looking for duplicates of new photos"
    while_paused: ClassVar[str] = "run"
    writes: ClassVar[bool] = False  # (pixel-check verdicts only, as Precheck)

    def run(self, work: Work) -> Any:
        return work.announce(self.paths)

    def absorb(self, other: Task) -> bool:
        if not isinstance(other, Announce):
            return False
        self.paths = list(dict.fromkeys([*self.paths, *other.paths]))
        return True


class _Stopped(Exception):
    """The daemon stops while a task waits for the store: the task is dropped (the
    start-up reconcile of the next run catches up on it)."""


_QUIT = Task()  # the sentinel that ends the thread


class Scheduler:
    """The queue and the thread that runs it (see the module docstring)."""

    def __init__(self, store_path: object, disk: DiskFull, access: StoreAccess,
                 stopping: threading.Event,
                 on_damage: Callable[[StoreError], None]) -> None:
        self.store_path = store_path
        self.disk = disk
        self.access = access
        self.stopping = stopping
        self.on_damage = on_damage
        self.progress = Progress()
        self.generation = 0  # counts finished tasks that may have changed the library
        self.last_work = time.monotonic()  # when the last task ended
        self._queue: queue.Queue[Task] = queue.Queue()
        self._held: Task | None = None  # waiting for the store to be writable
        self._running: Task | None = None
        self._work: Work | None = None
        self._thread = threading.Thread(target=self._loop, name="fs-index", daemon=True)

    # -- the outside -------------------------------------------------------------------
    def put(self, task: Task) -> Task:
        self._queue.put(task)
        return task

    def start(self, work: Work) -> None:
        self._work = work
        self._thread.start()

    def quit(self, timeout: float) -> bool:
        """Stop the thread after its current task; False if it is still busy after
        ``timeout`` seconds (its last batch is lost then, not damaged)."""
        self._queue.put(_QUIT)
        self._thread.join(timeout=timeout)
        return not self._thread.is_alive()

    def has_waiting(self) -> bool:
        return not self._queue.empty()

    @property
    def idle(self) -> bool:
        return self._queue.empty() and self.progress.state == "idle"

    def queued(self) -> int:
        """Files in flight plus file events waiting (the held task's included)."""
        p = self.progress
        in_flight = max(0, p.total - p.done) if p.state != "idle" else 0
        held = [self._held] if self._held is not None else []
        return in_flight + sum(t.items() for t in [*held, *list(self._queue.queue)])

    def waiting(self) -> dict[str, Any]:
        """The indexing tasks not finished (running, held or queued; the background
        duplicate checks left out): how many, and ``age_s``, the seconds since the oldest
        of them was queued (None with none)."""
        tasks = [t for t in [self._running, *list(self._queue.queue)]
                 if t is not None and t is not _QUIT and t.writes]
        oldest = min((t.queued_at for t in tasks), default=None)
        return {"tasks": len(tasks), "age_s": None if oldest is None
                else round(time.monotonic() - oldest, 1)}

    # -- the thread --------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            task = self._queue.get()
            if task is _QUIT:
                task.done.cancel()
                return
            if self.stopping.is_set() and not isinstance(task, IndexPaths):
                task.done.cancel()
                continue
            self._absorb_followers(task)
            self._running = task
            try:
                task.done.set_result(self._run_waiting(task))
                if task.writes:
                    self.generation += 1  # the library may have changed
            except _Stopped:
                task.done.cancel()
            except Exception as exc:
                task.done.set_exception(self._failed(task, exc))
            finally:
                self._running = None
                self.progress.state = "idle" if self._queue.empty() else "busy"
                self.last_work = time.monotonic()
                if self.progress.state == "idle":
                    give_back_soon("indexing done")

    def _absorb_followers(self, task: Task) -> None:
        """Coalesce a storm of events into one pass."""
        while not self._queue.empty():
            if not task.absorb(self._queue.queue[0]):
                return
            self._queue.get_nowait()

    def _run_waiting(self, task: Task) -> Any:
        """Run ``task``; while the store cannot be written for a passing reason (locked
        by another program, read-only), wait and run it again: the work is not lost."""
        assert self._work is not None
        while True:
            if self.disk.problem and task.while_paused != "run":
                if task.while_paused == "refuse":
                    raise DiskFullError(self.disk.problem)
                return None  # the reconcile queued when space is back catches up
            try:
                result = task.run(self._work)
            except Exception as exc:
                problem = self.access.classify(exc) if task.writes else None
                if problem is None or store_damage(self.store_path, exc):
                    raise
                self._wait_for_store(task, problem)
                continue
            if task.writes:
                self.access.resume("store")
            return result

    def _wait_for_store(self, task: Task, problem: str) -> None:
        """Hold ``task`` (status: ``waiting``, the problem, its work queued) until a write
        transaction can be started on the store; raises _Stopped if the daemon stops."""
        assert self._work is not None
        self.access.report("store", problem)
        self._held = task
        self.progress.begin("waiting")
        delay = 1.0
        try:
            while not self.access.writable():
                if self.stopping.wait(delay):
                    raise _Stopped
                delay = min(2 * delay, 10.0)
        finally:
            self._held = None
        if self.access.reopen_needed:  # a connection opened read-only stays read-only
            self.access.reopen_needed = False
            self._work.engine.reopen_store()

    def _failed(self, task: Task, exc: Exception) -> Exception:
        """Log a failed task in the words the user needs (once, for a full disk);
        returns the error for a client waiting for the task."""
        damage = store_damage(self.store_path, exc)
        if damage is not None:
            self.on_damage(damage)
            return damage
        if isinstance(exc, DiskFullError):  # refused while paused: already logged
            return exc
        if self.disk.caused(exc):
            return self.disk.report(task.doing)
        problem = self.access.classify(exc)  # the background duplicate check: next time
        if problem is not None:
            log.warning("%s stopped: %s", task.doing, problem)
            return exc
        log.exception("indexing task %s failed", task.name)
        return exc
