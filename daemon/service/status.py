"""The daemon's ``status``: what the engine says, plus the indexing thread's progress,
the watched folders, why indexing may be waiting, the monitoring numbers (``metrics``:
search latency, indexing throughput, queue age; README: "status --json") and the last
self-check (``selfcheck``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from findsimilar import __version__
from findsimilar.config import Config
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.indexing.roots import Roots
from findsimilar.daemon.indexing.watcher import Watcher
from findsimilar.daemon.service.metrics import SearchTimes
from findsimilar.daemon.service.scheduler import Scheduler
from findsimilar.daemon.service.selfcheck import SelfCheck
from findsimilar.daemon.service.work import Listings, Work
from findsimilar.daemon.storage.diskspace import DiskFull
from findsimilar.daemon.storage.storeaccess import StoreAccess

__all__ = ["StatusReport"]


class StatusReport:
    """Builds the status dict from the daemon's parts (each read-only here)."""

    def __init__(self, config: Config, engine: Engine, *, scheduler: Scheduler, work: Work,
                 listings: Listings, folders: Roots, watcher: Watcher,
                 roots: Callable[[], list[dict[str, Any]]], disk: DiskFull,
                 access: StoreAccess, notifier: Any = None,
                 searches: SearchTimes | None = None, selfcheck: SelfCheck | None = None) -> None:
        self.config = config
        self.engine = engine
        self.scheduler = scheduler
        self.work = work
        self.listings = listings
        self.folders = folders
        self.watcher = watcher
        self.roots = roots
        self.disk = disk
        self.access = access
        self.notifier = notifier  # notify.Notifier, when notifications are on
        self.searches = searches or SearchTimes()  # filled by the search verbs
        self.selfcheck = selfcheck  # match quality measured in idle time (``selfcheck``)
        self.started = time.time()

    def queued(self) -> int:
        return self.scheduler.queued() + self.watcher.pending()

    def line(self) -> str:
        """One line for systemd's status: "reconciling: 120 queued", or "idle"."""
        queued = self.queued()
        return f"{self.scheduler.progress.state}: {queued} queued" if queued else "idle"

    def __call__(self) -> dict[str, Any]:
        info = self.engine.status()
        progress = self.scheduler.progress
        rate = progress.rate()
        queued = self.queued()
        info.update({
            "daemon": {"pid": os.getpid(), "version": __version__,
                       "uptime": round(time.time() - self.started, 1),
                       "socket": str(self.config.socket_path)},
            "state": progress.state if queued or progress.state != "busy" else "idle",
            "queued": queued,
            "extracted_since_start": self.work.extracted,
            "progress": {"done": progress.done, "total": progress.total,
                         "state": progress.state},
            # The pixel checks of the `dupes` listings running now (most recent last;
            # "background": the daemon's own pre-check).
            "dupes_progress": self.listings.progress(),
            "duplicates_checked": self.work.prechecked == self.scheduler.generation,
            # Why indexing cannot go on (the disk is full, the store is locked or
            # read-only, the data dir cannot be written), or None.
            "problem": self.disk.problem or self.access.problem,
            # Files a second over the last minute of indexing work; None until that
            # work is long enough to mean it (metrics.MIN_SPAN_S), and so is the ETA.
            "rate": rate,
            "eta_seconds": round(queued / rate, 1) if rate and queued else None,
            "roots": [self._root(r) for r in self.roots()],
            # Desktop notifications of new duplicates (config: notify): how many were
            # sent, and why none can be shown now.
            "notifications": None if self.notifier is None else {
                "sent": self.notifier.sent, "problem": self.notifier.problem},
            "metrics": self.metrics(),
            # The last self-check's counts and whether one runs (README: "Self-check").
            "self_check": None if self.selfcheck is None else self.selfcheck.status(),
        })
        return info

    def metrics(self) -> dict[str, Any]:
        """Search latency by kind of query, indexing throughput, and the age of the
        oldest indexing work not done (README: "status --json", ``metrics``)."""
        return {"search": self.searches.summary(),
                "indexing": self.scheduler.progress.throughput.summary(),
                "queue": self.scheduler.waiting()}

    def _root(self, root: dict[str, Any]) -> dict[str, Any]:
        state = self.folders.state(root["path"])
        return {"path": root["path"], "excludes": root.get("excludes", []),
                "default": bool(root.get("default")), "mode": state.mode, "why": state.why}
