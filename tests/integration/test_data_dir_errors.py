"""A data dir that cannot be written (issue 15, item 2): a disk remounted read-only under a
library that was indexed. Every command says so in one line naming the folder, with its
own exit code (9, not 6: the store is not damaged), never a traceback, through the
daemon the CLI would start and with --no-daemon; `status` still shows what the store
holds. Needs root to mount (skipped with the reason otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from findsimilar.errors import EXIT_DATA_DIR, EXIT_STORE
from tests.conftest import shared

from .test_action_facts import _root_mount, tmpfs  # noqa: F401  (a fixture)


@pytest.fixture
def read_only(tmp_path: Path, tmpfs: Callable[..., Path]) -> tuple[dict[str, str], Path]:  # noqa: F811
    """(environment, library): a library indexed into a data dir on a tmpfs, which is
    then remounted read-only."""
    lib = tmp_path / "lib"
    lib.mkdir()
    for rel in ("opencv/fruits.jpg", "skimage/coffee.png"):
        shutil.copy(shared(rel), lib / Path(rel).name)
    data = tmpfs(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINDSIMILAR_")}
    env.update(HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_RUNTIME_DIR=str(tmp_path / "run"), FINDSIMILAR_DATA_DIR=str(data))
    (tmp_path / "run").mkdir(mode=0o700)
    indexed = run(env, "index", "-q", "--no-daemon", str(lib))
    assert indexed.returncode == 0, indexed.stderr
    _root_mount("-o", "remount,ro", str(data))
    return env, lib


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "findsimilar", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done


@pytest.mark.parametrize("daemon", [True, False], ids=["daemon", "no-daemon"])
def test_every_command_names_the_read_only_data_dir_with_its_own_exit_code(
        read_only: tuple[dict[str, str], Path], daemon: bool) -> None:
    env, lib = read_only
    data = env["FINDSIMILAR_DATA_DIR"]
    flag = [] if daemon else ["--no-daemon"]
    for args in ([*flag, str(lib / "fruits.jpg")], ["index", *flag, str(lib)],
                 ["dupes", "--no-daemon" if not daemon else "--json", str(lib)]):
        done = run(env, *args)
        assert done.returncode == EXIT_DATA_DIR != EXIT_STORE, (args, done.stderr)
        [line] = done.stderr.strip().splitlines()  # one line, not one per attempt
        assert line.startswith("findsimilar: error: cannot write the data dir ") and data in line


def test_status_still_shows_what_a_read_only_store_holds(
        read_only: tuple[dict[str, str], Path]) -> None:
    env, _ = read_only
    done = run(env, "status")
    assert done.returncode == 0, done.stderr
    assert "indexed:    2 files" in done.stdout
