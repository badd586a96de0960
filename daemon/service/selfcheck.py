"""The self-check: match quality watched on the user's own, unlabelled library.

In idle time the daemon samples indexed photos (up to ``selfcheck_photos``), makes an
edited copy of each in memory (``edits``: crop, small copy, heavy JPEG, brightness, in
turn), embeds it with its model, searches the live index, and counts how often the
original comes back at rank 1 and in the top ``K``. "The original" is the sampled
content (its feature id: every file with that content hash shares it) or a file known
to be the same picture: the other half of its RAW+JPEG pair, or one the pixel check has
found to be a duplicate (a cached verdict of ``NEAR_SCORE`` or more). A sampled file that
has vanished, changed since it was indexed (its bytes no longer have its content hash),
or cannot be edited here, is skipped, not counted as a miss.

Runs are spaced: one when the library was never checked, every ``selfcheck_every``
seconds, and as soon as the index has another layout (compressed past
``compress_above``, or trained again) than the last run checked, which is when a badly
trained compressed index would show. A run starts after ``selfcheck_after`` quiet
seconds (no indexing task, no query), and stops the moment work arrives (a task, a
request other than ``status`` and the like): it is then dropped and run again later. The
runs are kept in the store (``storage.selfchecks``): ``status`` shows the last one after
a restart, and each is judged against those before it (:func:`judge`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import wait
from types import ModuleType
from typing import Any

import numpy as np

from findsimilar.config import Config
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.model.api import PRIORITY_INDEX
from findsimilar.daemon.model.memory import give_back_soon
from findsimilar.daemon.model.verify import NEAR_SCORE, VERIFIER_ID
from findsimilar.daemon.storage import selfchecks
from findsimilar.daemon.storage.selfchecks import Sampled
from findsimilar.daemon.storage.store import Store
from findsimilar.errors import ImageDecodeError
from findsimilar.rawpairs import raw_pairs
from findsimilar.safeio import FileTooBig, NotRegularFile, open_regular, read_fd

__all__ = ["K", "KINDS", "SelfCheck", "judge", "same_picture"]

log = logging.getLogger(__name__)

K = 10  # "found in the top k"
KINDS = ("crop", "small", "jpeg", "brightness")  # the edits (``edits``), in turn
# Judging a run (see judge): below these, a drop is beyond chance only at ALPHA.
MIN_CHECKED = 10
RANK1_FLOOR = 0.6
TOP_K_FLOOR = 0.9
DROP = 0.05
ALPHA = 0.001
BASELINE_RUNS = 5
RETRY_FAILED = 3600.0  # seconds before a run that failed (not one that yielded) is retried
QUIET_ASKED = 1.0  # quiet seconds before a run someone asked for (`daemon self-check`)


class _Yielded(Exception):
    """Work arrived (or the daemon stops): the run is dropped."""


def binomial_cdf(hits: int, n: int, p: float) -> float:
    """P(X <= hits) for X ~ Binomial(n, p), summed in logs (no underflow at any n)."""
    if hits >= n or p <= 0.0:
        return 1.0
    if hits < 0 or p >= 1.0:
        return 0.0
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(hits + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(v - top) for v in logs))


def judge(run: dict[str, Any], previous: list[dict[str, Any]]) -> str | None:
    """Why ``run`` shows a drop in quality, or None.

    A problem only when chance cannot explain it: each test below alarms wrongly at most
    once in 1/``ALPHA`` = 1,000 runs of a library right at its threshold (binomial), far
    less often for one above it; and never on fewer than ``MIN_CHECKED`` copies. Against
    absolute floors: the rank-1 rate clearly below ``RANK1_FLOOR`` (held out, 99 % of
    edited copies come back at rank 1, issue 17; a library of near-identical bursts
    loses some to a sibling shot: 161/200 in BENCHMARKS.md, "Self-check"), the top-k
    rate clearly below ``TOP_K_FLOOR`` (only with more than 2·k photos: else the top k
    is most of the library); or against the last ``BASELINE_RUNS`` runs of the same
    model without a problem, pooled: the rank-1 rate clearly below theirs less ``DROP``.
    """
    n, rank1, top_k = run["checked"], run["rank1"], run["top_k"]
    if n < MIN_CHECKED:
        return None
    found = f"{rank1}/{n} edited copies found at rank 1"
    if binomial_cdf(rank1, n, RANK1_FLOOR) < ALPHA:
        return f"{found}, far below what a sound index gives"
    if run["index"]["vectors"] > 2 * run["k"] and binomial_cdf(top_k, n, TOP_K_FLOOR) < ALPHA:
        return f"only {top_k}/{n} edited copies found in the top {run['k']}"
    base = [r for r in previous if not r.get("problem")
            and r["index"]["model"] == run["index"]["model"]][-BASELINE_RUNS:]
    if base:
        before = sum(r["rank1"] for r in base), sum(r["checked"] for r in base)
        rate = (before[0] + 1) / (before[1] + 2)  # (one miss and one hit assumed: 0/0 is not 0)
        if binomial_cdf(rank1, n, rate - DROP) < ALPHA:
            return f"{found}, down from {before[0]}/{before[1]} in the runs before"
    return None


class SelfCheck:
    """The self-check's runs, in a thread of their own (``self-check``).

    ``idle``: nothing queued or running for the indexing thread, and the daemon not
    stopping; ``last_busy``: the monotonic time of the last indexing task or request
    (other than status). The daemon calls :meth:`maybe_start` from its periodic work."""

    def __init__(self, config: Config, engine: Engine, *, idle: Callable[[], bool],
                 last_busy: Callable[[], float]) -> None:
        self.config = config
        self.engine = engine
        self.idle = idle
        self.last_busy = last_busy
        self.requested = False
        self._retry_at = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._runs = selfchecks.runs(engine.store)

    # -- when ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def request(self) -> None:
        """Run as soon as the daemon is idle, whatever the interval."""
        self.requested = True

    def due(self) -> bool:
        """Asked for; never run; the index in another layout than the last run saw; or
        ``selfcheck_every`` seconds since the last run (0: only when asked)."""
        if self.requested:
            return True
        if not self.config.selfcheck_every or time.monotonic() < self._retry_at:
            return False
        if not self._runs:
            return True
        last = self._runs[-1]
        if {**last["index"], "vectors": 0} != {**self._index(), "vectors": 0}:
            return True
        return abs(time.time() - last["when"]) >= self.config.selfcheck_every

    def maybe_start(self) -> bool:
        """Start a run if one is due, the daemon idle and quiet long enough, the index
        neither empty nor being rebuilt; True if it started."""
        if (self.running or not self.idle() or not len(self.engine.index)
                or not self.config.selfcheck_photos):
            return False
        quiet = QUIET_ASKED if self.requested else self.config.selfcheck_after
        if time.monotonic() - self.last_busy() < quiet or self.engine.builder.running:
            return False
        if not self.due():
            return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="self-check", daemon=True)
        self._thread.start()
        return True

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        """For ``status``: ``running``, ``requested``, ``last`` (the last run, or None)
        and ``problem`` (the last run's, or None)."""
        last = self._runs[-1] if self._runs else None
        return {"running": self.running, "requested": self.requested, "last": last,
                "problem": last.get("problem") if last else None}

    # -- a run -----------------------------------------------------------------------
    def _run(self) -> None:
        began, cpu = time.monotonic(), time.thread_time()
        seed = len(self._runs) + int(time.time()) // 86_400
        try:
            run = self._check(seed, began)
        except _Yielded:
            log.info("self-check stopped for other work; it runs again when the daemon "
                     "is idle")
            return
        except Exception:
            self._retry_at = time.monotonic() + RETRY_FAILED
            self.requested = False
            log.exception("the self-check failed; trying again in %.0f s", RETRY_FAILED)
            return
        finally:
            self.engine.release_reader()
            give_back_soon("self-check done")  # the pictures it decoded and edited
        self.requested = False
        run.update(seconds=round(time.monotonic() - began, 1),
                   daemon_cpu_s=round(time.thread_time() - cpu, 2))
        run["problem"] = judge(run, self._runs)
        self._runs = [*self._runs, run][-selfchecks.KEEP:]
        self._log(run)
        try:
            selfchecks.record_run(self.engine.store, run)
        except Exception as exc:  # (a locked or read-only store: kept in memory)
            log.error("could not keep the self-check's result in the store: %s", exc)

    def _check(self, seed: int, began: float) -> dict[str, Any]:
        """Sample, edit, search; raises _Yielded when work arrives."""
        from findsimilar.daemon.service import edits  # Pillow: only once a check runs

        index = self._index()
        picked = selfchecks.sample(self.engine.reader(), self.engine.spec.id,
                                   self.config.selfcheck_photos, seed)
        kinds = {kind: Counter() for kind in KINDS}
        skipped: Counter[str] = Counter()
        for number, item in enumerate(picked):
            kind = KINDS[number % len(KINDS)]
            self._yield_if_busy(began)
            outcome = self._one(item, edits, kind, seed, began)
            if isinstance(outcome, str):
                skipped[outcome] += 1
                continue
            kinds[kind].update(checked=1, rank1=int(outcome == 0), top_k=int(outcome is not None))
        total = sum(kinds.values(), Counter())
        return {"when": round(time.time(), 3), "k": K, "seed": seed,
                "sampled": len(picked), "checked": total["checked"],
                "rank1": total["rank1"], "top_k": total["top_k"],
                "skipped": sum(skipped.values()), "skipped_why": dict(skipped),
                "kinds": {kind: {"checked": c["checked"], "rank1": c["rank1"],
                                 "top_k": c["top_k"]} for kind, c in kinds.items()},
                "index": index}

    def _one(self, item: Sampled, edits: ModuleType, kind: str, seed: int,
             began: float) -> int | None | str:
        """The rank (0 = first) at which ``item`` is found from its copy edited as ``kind``
        (by ``edits``, the module), None if not in the top K, or why it was skipped."""
        data = _read(item.path, self.config.max_in_memory_bytes)
        if isinstance(data, str):
            return data
        if hashlib.blake2b(data, digest_size=16).hexdigest() != item.content_hash:
            return "changed"
        try:
            copy = edits.edited(edits.load_picture(data), kind, seed)
        except edits.EditError:
            return "not editable here"
        del data
        live = self.engine.live  # this copy's model and index, even across an upgrade's swap
        future = live.model.embed(copy, f"self-check: {item.path} ({kind})",
                                 priority=PRIORITY_INDEX)
        while not wait([future], timeout=0.1).done:
            self._yield_if_busy(began)
        try:
            vector = future.result().vector
        except ImageDecodeError:
            return "not editable here"
        _, ids = live.index.search(np.asarray(vector)[None], K)
        for rank, fid in enumerate(int(i) for i in ids[0] if i >= 0):
            if same_picture(self.engine.reader(), item, fid):
                return rank
        return None

    def _yield_if_busy(self, began: float) -> None:
        if self._stop.is_set() or not self.idle() or self.last_busy() > began:
            raise _Yielded

    def _index(self) -> dict[str, Any]:
        """What a run checks: the model, the index's layout and size."""
        live = self.engine.live
        index = live.index
        return {"model": live.spec.id, "layout": index.layout, "lists": index.lists,
                "vectors": len(index)}

    def _log(self, run: dict[str, Any]) -> None:
        text = (f"self-check: {run['rank1']}/{run['checked']} edited copies found at rank 1, "
                f"{run['top_k']}/{run['checked']} in the top {run['k']} ({run['skipped']} "
                f"skipped; {run['seconds']} s)")
        if run["problem"]:
            log.warning("%s. Match quality dropped: %s. If the index file is damaged, stop the "
                        "daemon and delete %s: it is rebuilt from the store at the next start",
                        text, run["problem"], self.engine.index_path)
        else:
            log.info("%s", text)


def same_picture(store: Store, item: Sampled, fid: int) -> bool:
    """Whether the picture of feature ``fid`` counts as the sampled one: the same content,
    the other half of its RAW+JPEG pair, or a duplicate the pixel check confirmed (a cached
    verdict of ``NEAR_SCORE`` or more)."""
    if fid == item.feature_id:
        return True
    other = selfchecks.hashes_of(store, [fid]).get(fid)
    if other is None:
        return False
    if any(raw_pairs([item.path, path]) for path in store.paths_for_hash(other)):
        return True
    pair = (min(item.content_hash, other), max(item.content_hash, other))
    score = store.pair_scores([pair], VERIFIER_ID).get(pair)
    return score is not None and score >= NEAR_SCORE


def _read(path: str, limit: int) -> bytes | str:
    """The file's bytes, or why they cannot be had ("vanished", "unreadable")."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return "vanished"
    except (OSError, NotRegularFile, UnicodeEncodeError, ValueError):
        return "unreadable"
    try:
        return read_fd(fd, limit, path)
    except FileTooBig:
        return "not editable here"
    except OSError:
        return "unreadable"
    finally:
        os.close(fd)
