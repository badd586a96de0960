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


def _modules() -> list[Path]:
    return [p for folder in ("daemon", "cli", "findsimilar") for p in (REPO / folder).rglob("*.py")]


def test_no_module_is_over_450_lines() -> None:
    """One job per module: a module past 450 lines holds more than one."""
    long = {str(p.relative_to(REPO)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def test_no_stub_raises_not_implemented() -> None:
    """Composition, not a mixin whose host fills in stubs."""
    stubs = [str(p.relative_to(REPO)) for p in _modules() if "NotImplementedError" in p.read_text()]
    assert not stubs, stubs


def test_the_readme_layout_names_every_module() -> None:
    """README "Layout": the tree, one line per module."""
    text = (REPO / "README.md").read_text()
    layout = re.search(r"## Layout\n+```\n(.*?)```", text, re.S)
    assert layout, "README has no Layout tree"
    named = set(re.findall(r"^\s*([a-z_0-9]+\.py)\b", layout.group(1), re.M))
    missing = sorted(str(p.relative_to(REPO)) for p in _modules()
                     if p.name != "__init__.py" and p.name not in named)
    assert not missing, missing


def test_the_documents_name_files_that_exist() -> None:
    """A module path in README, RELIABILITY or BENCHMARKS points at a file there is."""
    gone = [f"{doc}: {path}" for doc in ("README.md", "RELIABILITY.md", "BENCHMARKS.md")
            for path in re.findall(r"\b(?:daemon|cli|bench|findsimilar|tests)/[\w/]+\.py\b",
                                   (REPO / doc).read_text())
            if not (REPO / path).exists()]
    assert not gone, gone
