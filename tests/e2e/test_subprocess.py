"""One real process per command, as a user runs it: `python -m findsimilar ...`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..photo_edits import apply_edit


def run(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "findsimilar", *args], env=env,
                          capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_index_then_search_in_separate_processes(photo_dir: Path, tmp_path: Path) -> None:
    """The default path: the first command starts the daemon, the others use it."""
    env = {**os.environ, "FINDSIMILAR_DATA_DIR": str(tmp_path / "state")}
    env.pop("FINDSIMILAR_NO_DAEMON", None)
    summary = json.loads(run("index", "--json", str(photo_dir), env=env).stdout)
    assert summary["new"] == 12 and summary["failed"] == []
    query = apply_edit("letterbox border", photo_dir / "LadyBird.jpg", tmp_path / "q")
    out = run("--json", "-k", "5", str(query), env=env).stdout
    line = json.loads(out)
    assert line["query"] == str(query)
    assert line["results"][0]["path"] == str(photo_dir / "LadyBird.jpg")
    plain = run(str(query), "-k", "1", env=env).stdout.strip()
    assert plain.endswith(str(photo_dir / "LadyBird.jpg"))
    status = json.loads(run("status", "--json", env=env).stdout)
    assert status["indexed"] == 12 and status["failed"] == 0
    assert status["daemon"]["pid"] > 0  # the first command started it
    assert (tmp_path / "state" / "store.db").exists()
    assert "stopped the daemon" in run("daemon", "stop", env=env).stdout
    assert json.loads(run("status", "--json", env=env).stdout)["daemon"] is None


def test_console_script_is_installed_and_errors_go_to_stderr(tmp_path: Path) -> None:
    exe = shutil.which("findsimilar", path=os.path.dirname(sys.executable))
    assert exe, "the findsimilar console script is not installed next to python"
    env = {**os.environ, "FINDSIMILAR_DATA_DIR": str(tmp_path / "state")}
    proc = subprocess.run([exe, str(tmp_path / "missing.jpg")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3
    assert proc.stdout == "" and "no such file" in proc.stderr
