"""``findsimilar service``: install the systemd user units that keep the daemon running.

What the units hold is :mod:`findsimilar.cli.install.units`; they are written and
recognised by the one installer (:mod:`findsimilar.cli.install.installer`), so that
``uninstall`` only ever removes files this command wrote. Stdlib and click only: this
stays a light command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import click

from findsimilar.cli.install.installer import (
    MARKER,
    InstalledFile,
    file_state,
    foreign_files,
    write_file,
)
from findsimilar.cli.install.units import UNITS, UnitTemplateMissing, unit_dir, unit_files
from findsimilar.jsonout import dumps

__all__ = ["service_group"]

_ENABLE = ("enable", "--now", "findsimilar.socket", "findsimilar.service")


def _units() -> list[InstalledFile]:
    try:
        return unit_files()
    except UnitTemplateMissing as exc:
        raise click.ClickException(str(exc)) from None


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
    units = _units()
    if print_only:
        for unit in units:
            click.echo(f"# {unit.dest}\n{unit.text}")
        return
    foreign = foreign_files(units)
    if foreign and not force:
        raise click.ClickException(
            f"{', '.join(map(str, foreign))}: not written by findsimilar (no "
            f"'# {MARKER}' line); refusing to overwrite it. Use --force to replace it.")
    changed = [u for u in units if file_state(u.dest, u.body) not in ("missing", "installed")]
    for unit in units:
        write_file(unit)
        click.echo(f"wrote {unit.dest}")
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
    states = {folder / n: file_state(folder / n, None) for n in UNITS}
    present = [p for p, state in states.items() if state != "missing"]
    foreign = [p for p, state in states.items() if state == "foreign"]
    if foreign:
        raise click.ClickException(
            f"{', '.join(map(str, foreign))}: not written by findsimilar (no '# {MARKER}' "
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
    report: dict[str, dict[str, object]] = {}
    for unit in _units():
        state = file_state(unit.dest, unit.body)
        installed = unit.dest.exists()
        report[unit.dest.name] = {
            "path": str(unit.dest), "installed": installed,
            "ours": installed and state not in ("missing", "foreign"),
            "up_to_date": installed and state == "installed",
            "enabled": _query("is-enabled", unit.dest.name),
            "active": _query("is-active", unit.dest.name)}
    if as_json:
        click.echo(dumps({"unit_dir": str(folder), "units": report}))
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
