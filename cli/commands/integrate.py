"""``findsimilar integrate``: "Find similar photos" in file managers and image apps.

The commands; what each integration installs, and how, is :mod:`findsimilar.cli.install`
(``integrations``, with the one installer). Stdlib and click only: a light command.
"""

from __future__ import annotations

import os
import sys

import click

from findsimilar.cli.install.folders import remove_empty_folders
from findsimilar.cli.install.installer import daemon_command
from findsimilar.cli.install.integration_files import (
    INTEGRATIONS,
    Integration,
    IntegrationError,
    available,
)
from findsimilar.cli.install.integrations import install, status, uninstall
from findsimilar.jsonout import dumps

__all__ = ["integrate_group"]

# --- commands --------------------------------------------------------------------------

def _chosen(names: tuple[str, ...], everything: bool) -> list[Integration]:
    if everything == bool(names):
        raise click.UsageError("name the integrations, or use --all (not both)")
    return list(INTEGRATIONS.values()) if everything else [INTEGRATIONS[n] for n in names]


_NAMES = click.argument("names", nargs=-1, type=click.Choice(list(INTEGRATIONS)),
                        metavar="[NAME]...")
_ALL = click.option("--all", "everything", is_flag=True, help="Every integration.")
_COMMAND = click.option("--command", "command_path", type=click.Path(dir_okay=False),
                        help="The findsimilar executable the menus run (default: this one).")


def _command(command_path: str | None) -> list[str]:
    return [os.path.abspath(command_path)] if command_path else daemon_command()


@click.group("integrate")
def integrate_group() -> None:
    """Add "Find similar photos" to file managers and image apps.

    Each integration runs `findsimilar show --notify -- FILE...` for the selected
    photos. Names: nautilus, nautilus-script, dolphin, thunar, nemo, caja,
    caja-script, desktop (Open With in image viewers), darktable, geeqie; man (the
    man pages).

    \b
    Examples:
      findsimilar integrate status
      findsimilar integrate install nautilus desktop
      findsimilar integrate install --all
      findsimilar integrate uninstall --all
    """


@integrate_group.command("install")
@_NAMES
@_ALL
@_COMMAND
def install_cmd(names: tuple[str, ...], everything: bool, command_path: str | None) -> None:
    """Install integrations (files under $XDG_DATA_HOME and $XDG_CONFIG_HOME).

    The menus run this findsimilar by its absolute path (file managers do not see
    your virtualenv), so re-run this after moving or reinstalling it. Re-running
    rewrites the same files. A file of the same name that findsimilar did not write
    is left alone (and reported); --all skips what this build does not ship.

    \b
    Examples:
      findsimilar integrate install nautilus thunar
      findsimilar integrate install --all
    """
    command = _command(command_path)
    failed = 0
    for integration in _chosen(names, everything):
        if everything and not available(integration):
            click.echo(f"{integration.name}: skipped (not available in this build)")
            continue
        try:
            for line in install(integration, command):
                click.echo(f"{integration.name}: {line}")
        except (IntegrationError, OSError) as exc:
            failed += 1
            click.echo(f"findsimilar: {integration.name}: not installed: {exc}", err=True)
            continue
        if integration.hint:
            click.echo(f"{integration.name}: {integration.hint}")
    sys.exit(1 if failed else 0)


@integrate_group.command("uninstall")
@_NAMES
@_ALL
def uninstall_cmd(names: tuple[str, ...], everything: bool) -> None:
    """Remove what `integrate install` wrote; files it did not write stay.

    Folders that install created are removed too once they are empty (never a folder
    that was there before, nor one holding anything else).

    \b
    Examples:
      findsimilar integrate uninstall thunar
      findsimilar integrate uninstall --all
    """
    failed = 0
    for integration in _chosen(names, everything):
        try:
            for line in uninstall(integration):
                click.echo(f"{integration.name}: {line}")
        except (IntegrationError, OSError) as exc:
            failed += 1
            click.echo(f"findsimilar: {integration.name}: {exc}", err=True)
    for folder in remove_empty_folders():
        click.echo(f"removed the empty folder {folder}")
    sys.exit(1 if failed else 0)


@integrate_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="As JSON, one object per integration.")
@_COMMAND
def status_cmd(as_json: bool, command_path: str | None) -> None:
    """Show each integration: installed or not, and whether its program is present.

    "outdated" means install would now write something else (a newer template, or
    this findsimilar lives elsewhere): re-run install. "modified by user" means the
    file was edited after install wrote it.

    \b
    Examples:
      findsimilar integrate status
      findsimilar integrate status --json | jq '.[] | select(.app_present)'
    """
    reports = [status(i, _command(command_path)) for i in INTEGRATIONS.values()]
    if as_json:
        click.echo(dumps(reports))
        return
    for r in reports:
        app = ("" if r["app"] is None and r["app_present"] else
               f", {r['app']}" if r["app"] else ", program not found")
        if r.get("plugin_library_present") is False:
            app += " (plugin library not found)"
        click.echo(f"{r['name']:<16}{r['state']}{app}")
        if r["state"] != "not installed" and r["state"] != "not available":
            for p in r["paths"]:  # type: ignore[attr-defined]
                click.echo(f"{'':16}{p}")
