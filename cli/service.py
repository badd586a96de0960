"""``findsimilar service``: install the systemd user units that keep the daemon running.

The unit files in the repo's ``systemd/`` folder are templates: ``install`` writes them
to ``$XDG_CONFIG_HOME/systemd/user/`` with ``@FINDSIMILAR@`` replaced by the absolute
command of the running findsimilar, and a marker line so that ``uninstall`` only ever
removes files this command wrote. Stdlib and click only: this stays a light command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from findsimilar.config import config_home

__all__ = ["MARKER", "PLACEHOLDER", "UNITS", "daemon_command", "render_units",
           "service_group", "unit_dir"]

UNITS = ("findsimilar.service", "findsimilar.socket")
PLACEHOLDER = "@FINDSIMILAR@"
MARKER = "# Installed by findsimilar"
_HEADER = (f"{MARKER} (`findsimilar service install`): re-running it rewrites this file,\n"
           "# `findsimilar service uninstall` removes it. Delete this line to keep your edits.\n")
def _templates() -> Path:
    """The unit templates: the repo's systemd/ folder (editable installs), else the copy
    packaged as ``findsimilar.systemd_units``."""
    repo = Path(__file__).resolve().parent.parent / "systemd"
    if (repo / UNITS[0]).exists():
        return repo
    import importlib.resources

    return Path(str(importlib.resources.files("findsimilar.systemd_units")))


_TEMPLATES = _templates()
_ENABLE = ("enable", "--now", "findsimilar.socket", "findsimilar.service")


# --- where things are -----------------------------------------------------------------

def unit_dir() -> Path:
    """Returns the user unit folder: ``$XDG_CONFIG_HOME/systemd/user`` (``~/.config/...``)."""
    return config_home() / "systemd" / "user"


def daemon_command() -> list[str]:
    """Returns the absolute command that runs this findsimilar (without ``daemon run``).

    The ``findsimilar`` script this process was started as; else the one installed
    next to this Python (same venv); else ``python -m findsimilar`` with this Python.
    Symlinks are kept, not resolved, so a pipx upgrade does not break the unit.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "findsimilar" and os.path.isfile(argv0):
        return [os.path.abspath(argv0)]
    sibling = Path(sys.executable).absolute().parent / "findsimilar"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return [str(sibling)]
    return [str(Path(sys.executable).absolute()), "-m", "findsimilar"]


def _quote(word: str, *, is_path: bool = False) -> str:
    """One word for a unit's ExecStart=: specifiers, variables and quotes escaped.

    systemd expands ``$VAR`` in arguments but not in the executable path, so only
    arguments get ``$`` doubled (``systemd-analyze verify`` confirms this).
    """
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if not is_path:
        escaped = escaped.replace("$", "$$")
    if word and not any(c.isspace() or c in "'\";" for c in word):
        return escaped
    return f'"{escaped}"'


def render_units(command: list[str] | None = None) -> dict[str, str]:
    """Returns each unit's file name mapped to the text ``install`` writes.

    Raises ``click.ClickException`` when the templates cannot be found.
    """
    path, *args = command or daemon_command()
    exec_start = " ".join([_quote(path, is_path=True), *map(_quote, args)])
    units = {}
    for name in UNITS:
        try:
            template = (_TEMPLATES / name).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(f"unit template missing: {exc}") from None
        # Only ExecStart= lines: the template's comments mention the placeholder too.
        lines = [line.replace(PLACEHOLDER, exec_start) if line.startswith("ExecStart=")
                 else line for line in template.splitlines(keepends=True)]
        units[name] = _HEADER + "".join(lines)
    return units


def _is_ours(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith(MARKER) for line in text.splitlines())


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- systemctl --------------------------------------------------------------------------

def _systemctl(*args: str) -> subprocess.CompletedProcess[str] | None:
    """Runs ``systemctl --user ARGS``; None when systemctl is not installed."""
    exe = shutil.which("systemctl")
    if exe is None:
        return None
    try:
        return subprocess.run([exe, "--user", *args], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess([exe, "--user", *args], 1, "", str(exc))


def _why(proc: subprocess.CompletedProcess[str] | None) -> str:
    if proc is None:
        return "systemctl is not installed"
    lines = (proc.stderr or proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"systemctl exited with {proc.returncode}"


def _later(reason: str, commands: list[str]) -> None:
    click.echo(f"findsimilar: warning: the systemd user manager is not available ({reason}).",
               err=True)
    click.echo("The unit files are installed; in your login session, run:", err=True)
    for command in commands:
        click.echo(f"  {command}", err=True)


# --- commands ---------------------------------------------------------------------------

@click.group("service")
def service_group() -> None:
    """Run the daemon as a systemd user service (always on, socket-activated).

    \b
    Example:
      findsimilar service install     # write the units, enable and start them
      findsimilar service status
      findsimilar service uninstall
    """


@service_group.command("install")
@click.option("--no-enable", is_flag=True, help="Only write the unit files.")
@click.option("--print", "print_only", is_flag=True,
              help="Print the units to stdout instead of writing them.")
@click.option("--force", is_flag=True,
              help="Overwrite unit files of the same name that findsimilar did not write.")
def install_cmd(no_enable: bool, print_only: bool, force: bool) -> None:
    """Install findsimilar.service and findsimilar.socket as user units.

    The units run the findsimilar you are running now (its absolute path), so
    re-run this after moving or reinstalling it. Re-running rewrites the same
    files. Without a systemd user manager (containers, CI) the files are still
    written and the commands to enable them later are printed.

    \b
    Example:
      findsimilar service install              # write, enable, start now
      findsimilar service install --no-enable  # only write the files
      findsimilar service install --print      # show the units, write nothing
    """
    units = render_units()
    folder = unit_dir()
    if print_only:
        for name, text in units.items():
            click.echo(f"# {folder / name}\n{text}")
        return
    foreign = [folder / n for n in UNITS if (folder / n).exists() and not _is_ours(folder / n)]
    if foreign and not force:
        raise click.ClickException(
            f"{', '.join(map(str, foreign))}: not written by findsimilar (no "
            f"'{MARKER}' line); refusing to overwrite it. Use --force to replace it.")
    changed = [name for name, text in units.items() if (folder / name).exists()
               and (folder / name).read_text(encoding="utf-8", errors="replace") != text]
    for name, text in units.items():
        _write_atomic(folder / name, text)
        click.echo(f"wrote {folder / name}")
    commands = ["systemctl --user daemon-reload", f"systemctl --user {' '.join(_ENABLE)}"]
    if no_enable:
        click.echo("To enable and start them: " + " && ".join(commands), err=True)
        return
    _enable(commands, restart=bool(changed))


def _enable(commands: list[str], *, restart: bool) -> None:
    reload = _systemctl("daemon-reload")
    if reload is None or reload.returncode != 0:
        # daemon-reload only fails when no user manager answers (e.g. "Failed to
        # connect to bus"): the files are fine, the user enables them later.
        _later(_why(reload), commands)
        return
    enable = _systemctl(*_ENABLE)
    if enable is None or enable.returncode != 0:
        raise click.ClickException(f"systemctl --user {' '.join(_ENABLE)} failed: "
                                   f"{_why(enable)}")
    if restart:
        # `enable --now` leaves a running daemon alone; one started from the old unit
        # (e.g. an old install path) must pick up the new one.
        _systemctl("try-restart", "findsimilar.service")
    click.echo("enabled and started findsimilar.socket and findsimilar.service")


@service_group.command("uninstall")
def uninstall_cmd() -> None:
    """Stop, disable and remove the user units that `service install` wrote.

    Unit files of the same name without the "# Installed by findsimilar" line are
    yours, not ours: they are left alone and this command fails. Your index and
    settings are not touched.

    \b
    Example:
      findsimilar service uninstall
    """
    folder = unit_dir()
    present = [folder / n for n in UNITS if (folder / n).exists() or (folder / n).is_symlink()]
    foreign = [p for p in present if not _is_ours(p)]
    if foreign:
        raise click.ClickException(
            f"{', '.join(map(str, foreign))}: not written by findsimilar (no '{MARKER}' "
            "line); not removing anything. Remove it yourself if you mean to.")
    if not present:
        click.echo(f"nothing to uninstall: no findsimilar units in {folder}")
        return
    disable = _systemctl("disable", "--now", *UNITS)
    for path in present:
        path.unlink()
        click.echo(f"removed {path}")
    _remove_wants_links(folder, present)
    if disable is not None and disable.returncode == 0:
        _systemctl("daemon-reload")
    else:
        click.echo(f"findsimilar: note: the systemd user manager was not told ({_why(disable)});"
                   " if it runs, run: systemctl --user daemon-reload", err=True)


def _remove_wants_links(folder: Path, removed: list[Path]) -> None:
    """Drop enablement symlinks (``*.wants/findsimilar.*``) that point at removed units.

    ``systemctl disable`` does this when it can; without it they would dangle.
    """
    targets = {os.path.normpath(p) for p in removed}
    for link in [*folder.glob("*.wants/findsimilar.*"), *folder.glob("*.requires/findsimilar.*")]:
        if link.is_symlink() and os.path.normpath(
                os.path.join(link.parent, os.readlink(link))) in targets:
            link.unlink()
            click.echo(f"removed {link}")


@service_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_cmd(as_json: bool) -> None:
    """Show whether the units are installed, enabled and running.

    \b
    Example:
      findsimilar service status
      findsimilar service status --json | jq .units
    """
    folder = unit_dir()
    expected = render_units()
    report: dict[str, dict[str, object]] = {}
    for name in UNITS:
        path = folder / name
        installed = path.exists()
        report[name] = {
            "path": str(path), "installed": installed, "ours": installed and _is_ours(path),
            "up_to_date": installed and path.read_text(encoding="utf-8",
                                                       errors="replace") == expected[name],
            "enabled": _query("is-enabled", name), "active": _query("is-active", name)}
    if as_json:
        click.echo(json.dumps({"unit_dir": str(folder), "units": report}))
        return
    for name, info in report.items():
        click.echo(_describe(name, info))


def _query(verb: str, unit: str) -> str | None:
    """``systemctl --user is-enabled/is-active UNIT``'s answer, or None when unavailable."""
    proc = _systemctl(verb, unit)
    answer = proc.stdout.strip().splitlines() if proc is not None else []
    return answer[0] if answer else None


def _describe(name: str, info: dict[str, object]) -> str:
    if not info["installed"]:
        where = "not installed"
    elif not info["ours"]:
        where = f"installed at {info['path']} (not by findsimilar)"
    else:
        stale = "" if info["up_to_date"] else " (outdated: run `findsimilar service install`)"
        where = f"installed at {info['path']}{stale}"
    enabled = info["enabled"] or "unknown"
    active = info["active"] or "unknown (no systemd user manager)"
    return f"{name}: {where}\n  enabled: {enabled}\n  active: {active}"
