"""The README stays true: its quick-start test command is what CI runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def quick_start_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```sh\n(.*?)```", text, re.S)
    assert block, "README has no Quick start shell block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_setup_main_job_and_tests() -> None:
    setup, main_job, tests = quick_start_commands()
    assert setup == "./setup.sh" and (REPO / "setup.sh").exists()
    assert "findsimilar index" in main_job
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    tests = quick_start_commands()[2]
    ci = (REPO / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_design_card_folders_exist() -> None:
    for folder in ("daemon", "plugins", "cli", "tests", "systemd"):
        assert (REPO / folder).is_dir(), folder


def test_code_is_lint_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(__import__("sys").executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff not installed")
    proc = subprocess.run([ruff, "check", "--output-format", "concise", str(REPO)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
