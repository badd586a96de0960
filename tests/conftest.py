"""Shared fixtures: real photos copied to temp folders, an isolated data dir, the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from findsimilar.config import DEFAULT_EXTRACTOR
from findsimilar.daemon.model.spec import model_spec

from .photo_edits import SHARED

REPO = Path(__file__).resolve().parents[1]
# The vector size of the default extractor, which the tests' daemons and engines index with.
DEFAULT_DIM = model_spec(DEFAULT_EXTRACTOR).dim

# A small, varied set of real photos (relative to SHARED).
PHOTO_SET = [
    "skimage/chelsea.png",
    "skimage/coffee.png",
    "opencv/butterfly.jpg",
    "opencv/fruits.jpg",
    "opencv/baboon.jpg",
    "opencv/building.jpg",
    "mate/Aqua.jpg",
    "mate/LadyBird.jpg",
    "mate/Storm.jpg",
    "imagededup/base/ukbench00120.jpg",
    "imagededup/base/ukbench09380.jpg",
    "sklearn/china.jpg",
]


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.fail(f"shared test photo missing: {path} (set FINDSIMILAR_SHARED_PHOTOS)")
    return path


def copy_photos(folder: Path, rels: list[str]) -> list[Path]:
    """Copies of the shared photos ``rels`` in ``folder`` (made if need be), by name."""
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(shared(rel), folder / Path(rel).name)) for rel in rels]


def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, data_home: str = "data",
             xdg_all: bool = False, findsimilar: bool = False) -> Path:
    """Give a test its own HOME (``tmp_path/home``) and XDG data folder (``HOME/data_home``),
    never the real ones; ``xdg_all``: the config and state folders too; ``findsimilar``:
    its own data dir and a socket no daemon listens on. Returns the home."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / data_home))
    if xdg_all:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
        monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local/state"))
    if findsimilar:
        monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(tmp_path / "fs-data"))
        monkeypatch.setenv("FINDSIMILAR_SOCKET", str(tmp_path / "no-daemon.sock"))
    return home


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str) -> Iterator[Callable[[str], None]]:
    """A tmpfs of SIZE mounted at MOUNT (made here; as root, else the test is skipped),
    for full-disk cases; yields a function that resizes it (``"64m"``). Unmounted at the
    end."""
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")

    def resize(new_size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={new_size}", str(mount)], check=True)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A folder of real photos, some in a subfolder, copied so tests may change them."""
    root = tmp_path / "photos"
    for i, rel in enumerate(PHOTO_SET):
        dest = root / ("sub" if i in (0, 4, 9) else "") / Path(rel).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shared(rel), dest)
    return root


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(path))
    monkeypatch.delenv("FINDSIMILAR_EXTRACTOR", raising=False)
    return path


CliFn = Callable[..., Result]


def _invoker() -> CliFn:
    from findsimilar.cli.main import cli as app

    def invoke(*args: str, ok: bool | None = None) -> Result:
        result = CliRunner().invoke(app, list(args), catch_exceptions=False)
        if ok is True:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def stop_daemon() -> None:
    """Stop the daemon of the current FINDSIMILAR_DATA_DIR, if one runs; wait for it."""
    from findsimilar.cli.client import DaemonClient, DaemonUnavailable
    from findsimilar.config import load_config

    try:
        with DaemonClient(load_config(), timeout=10) as client:
            pid = client.call("stop")["pid"]
    except DaemonUnavailable:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split(
                ") ", 1)[1].startswith("Z"):
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    raise AssertionError(f"daemon {pid} did not stop within 15 s")


@pytest.fixture(params=["in-process", "daemon"])
def cli(request: pytest.FixtureRequest, data_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> CliFn:
    """The real click app, run both ways: in-process (--no-daemon) and through a real
    daemon (started on first use by the CLI itself, stopped after the test)."""
    if request.param == "in-process":
        monkeypatch.setenv("FINDSIMILAR_NO_DAEMON", "1")
    else:
        monkeypatch.delenv("FINDSIMILAR_NO_DAEMON", raising=False)
        request.addfinalizer(stop_daemon)
    return _invoker()


@pytest.fixture
def local_cli(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> CliFn:
    """In-process only: for tests that damage state files under the engine's feet."""
    monkeypatch.setenv("FINDSIMILAR_NO_DAEMON", "1")
    return _invoker()


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(autouse=True, scope="session")
def no_user_config_and_no_logs_in_home(tmp_path_factory: pytest.TempPathFactory):
    """No test reads the real user's config.toml, and the logs of daemons the CLI starts
    go to a temp folder, not ~/.local/state (tests may point these elsewhere again)."""
    base = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CONFIG_HOME", str(base / "config"))
        patch.setenv("XDG_STATE_HOME", str(base / "state"))
        yield


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves threads running (as watchdog's own suite does)."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()
              and not t.daemon]
    for t in leaked:
        t.join(timeout=5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads leaked: {still}"
