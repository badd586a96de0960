"""What shells and their users expect of a command line (issue 15, item 5): completion
scripts that a real bash runs, man pages that a real `man` shows, and a typo named as
one. No daemon and no model: every case answers before either is needed. HOME and the
XDG folders point into tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.shell_completion import get_completion_class
from click.testing import CliRunner, Result

from findsimilar.cli.main import COMMANDS, cli
from findsimilar.errors import EXIT_MISSING_FILE, EXIT_USAGE
from tests.conftest import own_home

BASH = shutil.which("bash")
MAN = shutil.which("man")


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return own_home(tmp_path, monkeypatch, data_home=".local/share", xdg_all=True,
                    findsimilar=True)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def findsimilar_on_path(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH has a `findsimilar` that runs this checkout's CLI, as
    the completion scripts call it by name."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "findsimilar"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m findsimilar "$@"\n')
    exe.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


# --- completion ---------------------------------------------------------------------------

@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_clicks_own_script_for_each_shell(shell: str) -> None:
    result = run("completion", shell)
    assert result.exit_code == 0, result.output
    script_class = get_completion_class(shell)
    assert script_class is not None
    expected = script_class(cli, {}, "findsimilar", "_FINDSIMILAR_COMPLETE").source()
    assert result.stdout == expected + "\n"
    assert f"_FINDSIMILAR_COMPLETE={shell}_complete" in result.stdout


def test_an_unknown_shell_is_a_usage_error_naming_the_choices() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert result.exit_code == EXIT_USAGE
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr
    assert result.stdout == ""


def bash_complete(env: dict[str, str], cwd: Path, *words: str) -> list[str]:
    """What bash offers for the last of WORDS after sourcing `findsimilar completion
    bash`: the script's own function, run the way bash's completion runs it."""
    assert BASH, "no bash"
    script = ('source <(findsimilar completion bash)\n'
              'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=()\n'
              '_findsimilar_completion findsimilar 2>/dev/null\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    proc = subprocess.run([BASH, "-c", script, "bash", "findsimilar", *words], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return [line for line in proc.stdout.splitlines() if line]


def test_bash_completes_commands_subcommands_and_options(
        findsimilar_on_path: dict[str, str], tmp_path: Path) -> None:
    env = findsimilar_on_path
    assert bash_complete(env, tmp_path, "du") == ["dupes"]
    assert bash_complete(env, tmp_path, "integrate", "uninst") == ["uninstall"]
    assert bash_complete(env, tmp_path, "integrate", "install", "ma") == ["man"]
    assert bash_complete(env, tmp_path, "search", "--min") == ["--min-score"]
    # A photo first (`findsimilar PHOTO`): its options are search's.
    assert bash_complete(env, tmp_path, "beach.jpg", "--js") == ["--json"]


def test_the_first_word_completes_file_names_too(findsimilar_on_path: dict[str, str],
                                                 tmp_path: Path) -> None:
    """Asked directly (as zsh's and fish's scripts ask), the first word offers the
    commands and a file name; bash's script offers the files when no command matches."""
    env = {**findsimilar_on_path, "_FINDSIMILAR_COMPLETE": "zsh_complete",
           "COMP_WORDS": "findsimilar d", "COMP_CWORD": "1"}
    proc = subprocess.run([sys.executable, "-m", "findsimilar"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=True)
    lines = proc.stdout.splitlines()
    assert lines[lines.index("daemon") - 1:lines.index("daemon") + 1] == ["plain", "daemon"]
    assert "dupes" in lines
    assert lines[lines.index("file"):lines.index("file") + 2] == ["file", "d"]


# --- did you mean -------------------------------------------------------------------------

def test_a_mistyped_command_is_named_with_the_command_meant(tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("serch", "x.jpg")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == ("findsimilar: error: no such command or file: serch "
                             "(did you mean `search`?)\n")
    assert run("stauts").stderr.endswith("(did you mean `status`?)\n")


def test_a_missing_photo_is_still_a_missing_file_even_if_it_looks_like_a_command(
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("holiday.jpg", "status.jpg", "photo", "./serch"):
        result = run(name)
        assert result.exit_code == EXIT_MISSING_FILE, (name, result.stderr)
        assert result.stderr == f"findsimilar: error: no such file: {tmp_path / name}\n"


def test_an_existing_path_named_like_a_typo_is_a_query_not_a_typo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "serch").mkdir()  # a folder: refused as a query before any model loads
    result = run("serch", "--no-daemon")
    assert result.exit_code == EXIT_MISSING_FILE
    assert result.stderr == ("findsimilar: error: not a regular file but a folder: "
                             f"{tmp_path / 'serch'}\n")


# --- man pages ----------------------------------------------------------------------------

def man1(home: Path) -> Path:
    return home / ".local/share/man/man1"


def test_install_man_writes_a_page_per_command_that_man_shows(home: Path) -> None:
    result = run("integrate", "install", "man")
    assert result.exit_code == 0, result.output
    pages = sorted(p.name for p in man1(home).iterdir())
    expected = ["findsimilar.1"]
    for name in COMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        expected.append(f"findsimilar-{name}.1")
        if isinstance(command, click.Group):
            expected += [f"findsimilar-{name}-{sub}.1" for sub in command.commands]
    assert pages == sorted(expected)
    assert "findsimilar-dupes-list.1" in pages
    assert MAN, "no man (apt install man-db)"
    env = {**os.environ, "MANPATH": str(home / ".local/share/man"), "MANWIDTH": "100",
           "MAN_KEEP_FORMATTING": ""}
    shown = subprocess.run([MAN, "-P", "cat", "findsimilar-dupes-list"], env=env,
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "findsimilar-dupes-list - List duplicate groups" in " ".join(shown.split())
    for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SEE ALSO"):
        assert f"\n{heading}\n" in shown, heading
    assert "findsimilar dupes list [OPTIONS] [PATHS]..." in shown
    assert "--tier [exact|near|similar]" in shown and "Examples:" in shown
    root = subprocess.run([MAN, "-P", "cat", "-l", str(man1(home) / "findsimilar.1")],
                          env=env, capture_output=True, text=True, timeout=60,
                          check=True).stdout
    assert "EXIT STATUS" in root and "findsimilar-dupes(1)" in root


def test_man_status_and_uninstall_remove_only_our_pages(home: Path) -> None:
    run("integrate", "install", "man")
    theirs = man1(home) / "findsimilar-extra.1"  # a page findsimilar did not write
    theirs.write_text('.TH X 1\n.SH NAME\nx \\- mine\n')
    stale = man1(home) / "findsimilar-gone.1"  # ours, from a command since removed
    stale.write_text((man1(home) / "findsimilar-show.1").read_text())
    assert "man             outdated" in run("integrate", "status").stdout
    result = run("integrate", "uninstall", "man")
    assert result.exit_code == 0, result.output
    assert [p.name for p in man1(home).iterdir()] == ["findsimilar-extra.1"]
    assert "man             not installed" in run("integrate", "status").stdout
