"""Fixtures for the tests that run real daemons."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .daemon_harness import DaemonProcess, daemon_env


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """Unix socket paths must stay under ~107 bytes: tmp_path is too deep."""
    path = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_daemon(tmp_path: Path, sock_dir: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Makes (not starts) daemons; every one is stopped, or killed, at teardown, and its
    log is printed (pytest shows it when the test failed)."""
    made: list[DaemonProcess] = []

    def make(name: str = "daemon", *, data_dir: Path | None = None,
             socket_path: Path | None = None, **env: str) -> DaemonProcess:
        data = data_dir or tmp_path / "data"
        sock = socket_path or sock_dir / f"{name}.sock"
        d = DaemonProcess(data, sock, tmp_path / f"{name}.log",
                          env=daemon_env(data, sock, **env))
        made.append(d)
        return d

    yield make
    for d in made:
        d.cleanup()
        print(f"--- {d.log_path.name}\n{d.log()}")
