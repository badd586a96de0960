"""The model worker: the process in which the daemon's pictures are decoded and embedded.

``python -m findsimilar.daemon.model.worker FD OPTIONS`` — started by
``client.WorkerModel`` with its end of a socket pair as FD and OPTIONS as JSON (the
model's spec, the ``LocalModel`` settings, the daemon's pid). It reads requests
(``wire`` frames: ``embed`` with a file's bytes or a path, ``compare`` with two
pictures, ``facts`` with one; ``cancel`` drops a check or facts job no decode thread
has taken yet, answered ``cancelled``), runs them on a ``LocalModel`` and answers each as it
goes: ``started`` when a decode thread takes it, ``decoded`` when its picture waits for
the network, then its result (a vector, a score, facts, or the reason the picture
cannot be read); and ``alive`` every second, so the daemon can tell a stopped worker from
a busy one. A model that cannot be loaded is reported once as ``fatal``, and the worker
exits.

Everything that could crash or hang on a hostile file runs here, never in the daemon.
The worker ends when the daemon closes its end, and dies with the daemon
(``PR_SET_PDEATHSIG``); it ignores SIGINT and SIGTERM, which are the daemon's to handle
(a Ctrl-C in its terminal, or systemd stopping the whole unit: the daemon then stops its
worker itself, rather than see it die under a picture and blame the picture). It gives
memory back after big pictures (``memory``), from its own loop.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from findsimilar.daemon.model.api import Embedded, Picture
from findsimilar.daemon.model.local import LocalModel
from findsimilar.daemon.model.memory import give_back_if_quiet
from findsimilar.daemon.model.spec import ModelSpec
from findsimilar.daemon.model.wire import WireError, recv_frame, send_frame
from findsimilar.errors import ImageDecodeError

__all__ = ["main"]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_ALIVE_EVERY = 1.0  # seconds between "alive" messages


class _Server:
    """Requests from the daemon in, answers out (from whichever thread finishes them)."""

    def __init__(self, sock: socket.socket, model: LocalModel) -> None:
        self.sock, self.model = sock, model
        self._send_lock = threading.Lock()
        # Checks and facts not answered yet, by job id: the daemon may cancel them.
        self._pending: dict[int, Future] = {}

    def serve(self) -> None:
        """Answer requests until the daemon closes its end."""
        alive = time.monotonic()
        while True:
            if time.monotonic() - alive >= _ALIVE_EVERY:
                alive = time.monotonic()
                self._send({"alive": 1})
            give_back_if_quiet()
            if not select.select([self.sock], [], [], _ALIVE_EVERY / 2)[0]:
                continue
            try:
                frame = recv_frame(self.sock)
            except (OSError, WireError) as exc:
                log.error("the daemon's requests cannot be read: %s", exc)
                return
            if frame is None:
                return
            self._dispatch(*frame)

    def _dispatch(self, header: dict[str, Any], blob: bytes) -> None:
        job = int(header["id"])
        notify = self._notify(job)
        if header.get("op") == "cancel":  # given up on: dropped unless begun
            pending = self._pending.get(job)
            if pending is not None:
                pending.cancel()
            return
        if header.get("op") == "compare":
            a, b = (Picture(str(p["key"]), tuple(p["paths"])) for p in (header["a"],
                                                                        header["b"]))
            self._track(job, self.model.compare(a, b, priority=int(header.get("priority", 1)),
                                                notify=notify),
                        lambda f: {"id": job, "score": f.result()})
            return
        if header.get("op") == "facts":
            p = header["picture"]
            self._track(job, self.model.facts(Picture(str(p["key"]), tuple(p["paths"])),
                                              digest=bool(header.get("digest")),
                                              priority=int(header.get("priority", 1)),
                                              notify=notify),
                        lambda f: {"id": job, "facts": f.result() and f.result().as_dict()})
            return
        source = Path(header["path"]) if header.get("path") else blob
        future = self.model.embed(source, str(header.get("name", "")),
                                  priority=int(header.get("priority", 2)), notify=notify)
        future.add_done_callback(lambda f: self._answer(job, f))

    def _track(self, job: int, future: Future, answer: Callable[[Future], dict[str, Any]]
               ) -> None:
        """Answer a check or facts job with ``answer(future)`` once done, or "cancelled"
        if the daemon gave up on it before a decode thread took it."""
        self._pending[job] = future

        def done(f: Future) -> None:
            self._pending.pop(job, None)
            self._send({"id": job, "cancelled": 1} if f.cancelled() else answer(f))
        future.add_done_callback(done)

    def _notify(self, job: int) -> Callable[[str], None]:
        return lambda stage: self._send({"id": job, stage: 1})

    def _answer(self, job: int, future: Future[Embedded]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is None:
            e = future.result()
            self._send({"id": job, "ok": {"width": e.width, "height": e.height,
                                          "format": e.format, "content": list(e.content),
                                          "facts": e.facts and e.facts.as_dict()}},
                       e.vector.astype("<f4").tobytes())
        elif isinstance(exc, ImageDecodeError):
            self._send({"id": job, "error": str(exc)})
        else:  # the model cannot be loaded: nothing this worker could do would work
            self._send({"fatal": str(exc)})
            _exit(3)

    def _send(self, header: dict[str, Any], blob: bytes = b"") -> None:
        try:
            with self._send_lock:
                send_frame(self.sock, header, blob)
        except OSError:  # the daemon is gone: so is our work
            _exit(0)


def _die_with_parent(parent: int) -> None:
    """Be killed when the daemon dies, however it dies (a SIGKILL gives it no chance to
    stop us)."""
    with contextlib.suppress(OSError, AttributeError):  # elsewhere the closed socket ends us
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the prctl
        _exit(0)


def _exit(code: int) -> None:
    """Leave at once: decode threads may be deep in a picture nobody waits for."""
    logging.shutdown()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    fd, options = int(args[0]), json.loads(args[1])
    _die_with_parent(int(options["parent"]))
    if options.get("nice"):  # background work (``service.upgrade``): yields the CPU
        os.nice(int(options["nice"]))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    from findsimilar.daemon.service.logs import setup_logging

    setup_logging()
    model = LocalModel(ModelSpec(**options["spec"]), **options["local"])
    model.start(network=False)  # (the first embedding loads the network: a check needs none)
    _Server(socket.socket(fileno=fd), model).serve()
    _exit(0)


if __name__ == "__main__":
    main()
