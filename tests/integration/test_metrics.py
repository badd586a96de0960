"""Monitoring through a real daemon (issue 15, items 3 and 6): `status` reports search
latency by kind of query (an indexed photo, a new photo), indexing throughput and queue
age, counted from the real searches and indexing done here; and a rate only over a
window long enough to mean it (`"rate": 127942.68` after 2 files was the bug)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from findsimilar.daemon.service.metrics import MIN_SPAN_S

from ..conftest import shared
from .daemon_harness import DaemonProcess, module_daemon

PHOTOS = ["opencv/butterfly.jpg", "skimage/coffee.png", "mate/Storm.jpg"]


class Library(DaemonProcess):
    photos: Path
    outside: Path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    base = tmp_path_factory.mktemp("metrics")
    photos, outside = base / "photos", base / "outside"
    photos.mkdir()
    outside.mkdir()
    for rel in PHOTOS:
        shutil.copyfile(shared(rel), photos / Path(rel).name)
        shutil.copyfile(shared(rel), outside / Path(rel).name)  # not indexed: a new photo
    with module_daemon(base, cls=Library) as daemon:
        daemon.photos, daemon.outside = photos, outside
        yield daemon


def status(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "findsimilar", "status", *args],
                          env=daemon.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def test_status_reports_search_latency_by_kind_and_indexing_throughput(library):
    before = json.loads(status(library, "--json").stdout)["metrics"]
    assert before["search"]["indexed"] == {"count": 0, "total": 0,
                                           "p50_ms": None, "p99_ms": None}
    assert before["search"]["new"]["p99_ms"] is None
    assert "search:     no searches yet" in status(library).stdout

    summary = library.call("index", paths=[str(library.photos)])
    assert summary["new"] == len(PHOTOS)
    for photo in sorted(library.photos.iterdir()):  # indexed: vectors from the store
        library.search(photo)
    library.call("search", paths=[str(p) for p in sorted(library.outside.iterdir())[:2]])

    info = json.loads(status(library, "--json").stdout)
    search = info["metrics"]["search"]
    assert search["window"] == 1000
    assert search["indexed"]["count"] == len(PHOTOS) and search["new"]["count"] == 2
    for kind in ("indexed", "new"):
        assert 0 < search[kind]["p50_ms"] <= search[kind]["p99_ms"]
    indexing = info["metrics"]["indexing"]
    assert indexing["run"]["files"] == len(PHOTOS)
    assert indexing["since_start"]["files"] >= len(PHOTOS)
    run = indexing["run"]
    if run["seconds"] >= MIN_SPAN_S:
        assert run["files_per_s"] == round(run["files"] / run["seconds"], 2)
    else:  # a few files in a moment: no rate, rather than a meaningless one
        assert run["files_per_s"] is None
    # Never a rate from a window shorter than MIN_SPAN_S (files / a tiny time span).
    assert info["rate"] is None or info["rate"] * MIN_SPAN_S <= indexing["since_start"]["files"]
    assert info["rate"] == indexing["files_per_s"]
    assert info["metrics"]["queue"] == {"tasks": 0, "age_s": None}

    text = status(library).stdout
    assert (f"over {len(PHOTOS)} queries (indexed photos); " in text
            and "over 2 queries (new photos)" in text), text
    assert f"last run {len(PHOTOS)} files in" in text, text
