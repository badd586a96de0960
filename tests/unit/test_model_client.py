"""The model worker seen from the daemon's side (model/client.py): a real worker process
gives the same answers as the model in-process, carries names that are not UTF-8, says
why it cannot load a model, ignores the signals that stop the daemon, and is replaced
without blame when it dies with nothing to decode."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from findsimilar.config import Config
from findsimilar.daemon.model.api import PRIORITY_QUERY, Picture
from findsimilar.daemon.model.client import WorkerModel
from findsimilar.daemon.model.local import LocalModel
from findsimilar.daemon.model.spec import model_spec
from findsimilar.errors import FindSimilarError, ImageDecodeError

from ..conftest import DEFAULT_DIM, shared

PHOTOS = ["opencv/fruits.jpg", "skimage/coffee.png", "mate/Storm.jpg"]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return Config(data_dir=tmp_path_factory.mktemp("data"), model_idle=0)


@pytest.fixture(scope="module")
def worker(config: Config) -> Iterator[WorkerModel]:
    model = WorkerModel(model_spec(config.extractor), config)
    yield model
    model.close()


def local(config: Config) -> LocalModel:
    return LocalModel(model_spec(config.extractor), model_threads=config.model_threads,
                      decode_workers=config.decode_workers, batch_size=config.batch_size,
                      max_pixels=config.max_pixels)


def test_the_worker_answers_as_the_model_in_process_does(worker: WorkerModel,
                                                          config: Config):
    sources = [shared(rel).read_bytes() for rel in PHOTOS]
    there = [f.result(120) for f in [worker.embed(s, f"q{i}") for i, s in enumerate(sources)]]
    here_model = local(config)
    try:
        here = [here_model.embed(s, f"q{i}").result(120) for i, s in enumerate(sources)]
    finally:
        here_model.close()
    for a, b in zip(there, here, strict=True):
        assert (a.width, a.height, a.format, a.content) == (b.width, b.height, b.format,
                                                             b.content)
        assert a.vector.dtype == np.float32 and a.vector.shape == (DEFAULT_DIM,)
        assert float(a.vector @ b.vector) > 0.999
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        worker.embed(b"not a picture at all", "junk", priority=PRIORITY_QUERY).result(60)
    status = worker.status()
    assert status["running"] and status["pid"] != os.getpid() and status["rss_bytes"] > 0


def test_file_names_that_are_not_utf8_reach_the_worker_intact(worker: WorkerModel,
                                                              tmp_path: Path):
    odd = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9-\xff.jpg")
    shutil.copy(shared(PHOTOS[0]), odd)
    same = worker.compare(Picture("a", (odd,)), Picture("b", (str(shared(PHOTOS[0])),)))
    assert same.result(120) == 1.0
    big = worker.embed(Path(odd), odd)  # a path: the worker opens the file itself
    assert big.result(60).format == "JPEG"


def test_the_worker_ignores_the_signals_that_stop_the_daemon(worker: WorkerModel):
    worker.embed(shared(PHOTOS[0]).read_bytes(), "warm").result(120)
    pid = worker.status()["pid"]
    for sig in (signal.SIGTERM, signal.SIGINT):
        os.kill(pid, sig)
    time.sleep(0.5)
    assert worker.status()["pid"] == pid
    assert worker.embed(shared(PHOTOS[1]).read_bytes(), "again").result(60).format == "PNG"


def test_a_worker_that_dies_idle_is_replaced_on_demand_and_nothing_is_blamed(
        worker: WorkerModel):
    worker.embed(shared(PHOTOS[0]).read_bytes(), "warm").result(120)
    before = worker.status()
    os.kill(before["pid"], signal.SIGKILL)
    time.sleep(1.0)
    assert worker.status()["replaced"] == before["replaced"] + 1
    embedded = worker.embed(shared(PHOTOS[2]).read_bytes(), "after").result(120)
    assert embedded.format == "JPEG"
    assert worker.status()["pid"] not in (None, before["pid"])


def test_a_model_the_worker_cannot_load_fails_every_picture_with_the_reason(
        config: Config):
    wrong = dataclasses.replace(model_spec(config.extractor), id="efficientnet-lite0-gem/v9")
    model = WorkerModel(wrong, config)
    try:
        with pytest.raises(FindSimilarError, match="the model loaded is .* not .*v9"):
            model.embed(shared(PHOTOS[0]).read_bytes(), "q").result(120)
        assert "v9" in str(model.status()["last_failure"])
    finally:
        model.close()


def test_checks_given_up_on_are_not_sent_and_their_late_answers_break_nothing(
        worker: WorkerModel):
    # A listing checks pairs ahead and cancels those it does not need: some are still
    # queued (never sent), some already with the worker (their answer comes back to a
    # cancelled future). The worker client must go on answering everyone.
    a, b = (Picture(name, (str(shared(p)),)) for name, p in zip("ab", PHOTOS[:2], strict=False))
    ahead = [worker.compare(a, b) for _ in range(12)]
    time.sleep(0.05)  # a few are sent
    for future in ahead:
        future.cancel()
    same = worker.compare(Picture("c", (str(shared(PHOTOS[0])),)),
                          Picture("d", (str(shared(PHOTOS[0])),)))
    assert same.result(timeout=60) == pytest.approx(1.0, abs=1e-3)
    assert worker.status()["running"]


def test_a_check_the_worker_has_begun_runs_on_and_those_it_has_not_are_dropped(
        worker: WorkerModel):
    # A search that stops waiting cancels its checks: one the worker has begun cannot be
    # (its future says so, as an in-process model's does) and its score still comes;
    # the others are dropped by the worker, which answers for each (nothing stays busy).
    a, b = (str(shared(p)) for p in PHOTOS[:2])
    checks = [worker.compare(Picture(f"x{i}", (a,)), Picture(f"y{i}", (b,)),
                             priority=PRIORITY_QUERY) for i in range(12)]
    deadline = time.monotonic() + 60
    while not any(f.running() for f in checks):
        assert time.monotonic() < deadline, "no check was ever seen begun"
        time.sleep(0.001)
    begun = [f for f in checks if not f.cancel()]
    assert begun and len(begun) < len(checks)
    assert all(isinstance(f.result(60), float) for f in begun)
    while worker.status()["busy"]:
        assert time.monotonic() < deadline + 60, "a dropped check was never answered"
        time.sleep(0.01)


def test_a_worker_started_for_pixel_checks_does_not_load_the_network(config: Config):
    # A search of a library photo only checks pixels: a cold worker must not spend its
    # first second importing torch beside them (the check needs OpenCV alone).
    model = WorkerModel(model_spec(config.extractor), config)
    try:
        a, b = (Picture(k, (str(shared(p)),)) for k, p in zip("ab", PHOTOS[:2], strict=True))
        assert isinstance(model.compare(a, b, priority=PRIORITY_QUERY).result(120), float)
        maps = Path(f"/proc/{model.status()['pid']}/maps").read_text()
        assert "libtorch" not in maps
    finally:
        model.close()
