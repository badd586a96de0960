"""cli/main.py: the click group and its dispatch (the commands, loaded when they run)
and the one place a FindSimilarError becomes a message and an exit code. No daemon and
no model: every case here fails or answers before either is needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from findsimilar.cli.main import COMMANDS, cli
from findsimilar.errors import EXIT_FAILURE, EXIT_MISSING_FILE, EXIT_NO_DAEMON

# What `findsimilar --help` listed before the commands moved out of main.py, and
# `completion` (issue 15).
COMMAND_NAMES = ["completion", "daemon", "dupes", "index", "integrate", "reindex", "search",
                 "service", "show", "status", "watch"]


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture(autouse=True)
def no_daemon_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FINDSIMILAR_SOCKET", str(tmp_path / "no-daemon.sock"))


def test_help_lists_every_command_and_each_one_loads() -> None:
    listed = [line.split()[0] for line in run("--help").stdout.split("Commands:\n")[1]
              .splitlines() if line.strip()]
    assert listed == COMMAND_NAMES == sorted(COMMANDS)
    for name in COMMAND_NAMES:
        assert cli.get_command(None, name).name == name  # type: ignore[arg-type, union-attr]


def test_a_failure_in_a_command_is_one_line_on_stderr_with_its_exit_code(
        tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    result = run("index", str(missing))
    assert result.exit_code == EXIT_MISSING_FILE
    assert result.stderr == f"findsimilar: error: no such file or folder: {missing}\n"
    assert result.stdout == ""


def test_an_error_of_a_nested_command_is_reported_the_same_way(tmp_path: Path) -> None:
    not_a_log = tmp_path / "notes.json"
    not_a_log.write_text(json.dumps({"hello": "world"}))
    result = run("dupes", "undo", str(not_a_log))  # ActionError, deep in cli/actions
    assert result.exit_code == EXIT_FAILURE
    assert result.stderr == (f"findsimilar: error: {not_a_log} is not a findsimilar action "
                             "log (version 1 or 2)\n")


def test_a_photo_alone_is_a_search_and_imports_only_the_search_command(tmp_path: Path) -> None:
    """`findsimilar photo.jpg`, run as a user runs it: a missing photo is answered before any
    daemon is asked, so what was imported is exactly the light path's modules (read from
    sys.modules: importlib.import_module loads escape ``-X importtime``)."""
    code = ("import json, sys\nfrom findsimilar.cli.main import main\n"
            f"sys.argv = ['findsimilar', {str(tmp_path / 'photo.jpg')!r}]\n"
            "try:\n    main()\nfinally:\n    print(json.dumps(sorted(sys.modules)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == EXIT_MISSING_FILE, proc.stderr
    assert proc.stderr == f"findsimilar: error: no such file: {tmp_path / 'photo.jpg'}\n"
    modules = json.loads(proc.stdout)
    commands = {m for m in modules if m.startswith("findsimilar.cli.commands.")}
    assert commands == {"findsimilar.cli.commands.search", "findsimilar.cli.commands.options"}
    heavy = {m for m in modules if m.split(".")[0] in ("torch", "faiss", "numpy", "PIL",
                                                          "sqlite3", "sqlite_utils")}
    assert not heavy, sorted(heavy)


@pytest.mark.parametrize("args", [("watch", "list"), ("reindex",)])
def test_the_daemons_own_verbs_say_so_when_no_daemon_is_wanted(
        args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINDSIMILAR_NO_DAEMON", "1")
    result = run(*args)
    assert result.exit_code == EXIT_NO_DAEMON
    assert result.stderr.startswith("findsimilar: error: watched folders and `reindex` are "
                                    "the daemon's, and FINDSIMILAR_NO_DAEMON is set")
    assert "Traceback" not in result.output
