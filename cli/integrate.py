"""``findsimilar integrate``: "Find similar photos" in file managers and image apps.

The files in ``plugins/`` (package data ``findsimilar.plugins``) are templates: ``install``
copies them to where each program looks, with ``@FINDSIMILAR@`` replaced by the absolute
command of the running findsimilar (quoted for the file's language), and a first line
"Installed by findsimilar ... checksum ..." so that ``uninstall`` only ever removes files
this command wrote and ``status`` can tell a file the user edited. Thunar has no folder
of actions, so our action is spliced into ``uca.xml`` as text: the user's own actions
keep every byte. Stdlib and click only: this stays a light command.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from findsimilar.cli.install.integration_files import (
    INTEGRATIONS,
    LUARC_LINE,
    MARKER,
    PLACEHOLDER,
    UCA_ID,
    Integration,
    IntegrationError,
    Target,
    available,
    file_state,
    luarc_path,
    plugin_root,
    render,
    uca_path,
    with_marker,
    write_atomic,
)
from findsimilar.cli.install.shared_configs import (
    add_luarc_line,
    install_thunar,
    luarc_lines,
    remove_luarc_line,
    thunar_state,
    uninstall_thunar,
)
from findsimilar.cli.service import daemon_command

__all__ = ["INTEGRATIONS", "IntegrationError", "MARKER", "PLACEHOLDER", "UCA_ID",
           "install", "integrate_group", "plugin_root", "render", "status", "uninstall"]

# --- the desktop entry: refresh the MIME cache ----------------------------------------

def update_desktop_database(folder: Path) -> None:
    """Runs ``update-desktop-database`` on FOLDER if it is installed, so "Open With"
    lists the entry at once; drops a cache left with no entries (none is equivalent)."""
    exe = shutil.which("update-desktop-database")
    if exe is None or not folder.is_dir():
        return
    try:
        subprocess.run([exe, "-q", str(folder)], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return
    cache = folder / "mimeinfo.cache"
    try:
        if cache.read_text(encoding="utf-8", errors="replace").strip() == "[MIME Cache]":
            cache.unlink()
    except OSError:
        pass


# --- install / uninstall / status -----------------------------------------------------

def install(integration: Integration, command: list[str]) -> list[str]:
    """Installs INTEGRATION to run COMMAND. Returns what it did, one line per step.

    Raises ``IntegrationError`` (and writes nothing) when a file of the same name that
    findsimilar did not write is in the way, or a template is missing.
    """
    if not available(integration):
        raise IntegrationError("not available in this build (its files are not shipped)")
    if integration.extra == "thunar":
        return [install_thunar(command)]
    planned = [(t, t.dest(), render(t.source, command)) for t in integration.files]
    for _target, dest, _body in planned:
        if file_state(dest, None) == "foreign":
            raise IntegrationError(f"{dest} exists and was not written by findsimilar (no "
                                   f"'{MARKER}' line); leaving it alone")
    done = []
    for target, dest, body in planned:
        edited = file_state(dest, None) == "modified"
        text = with_marker(integration.name, target.source, body)
        write_atomic(dest, text.encode("utf-8", "surrogateescape"),
                     0o755 if target.executable else 0o644)
        done.append(f"wrote {dest}" + (" (replacing your edits to it)" if edited else ""))
    if integration.extra == "luarc":
        done.append(add_luarc_line())
    elif integration.extra == "desktop-db":
        update_desktop_database(planned[0][1].parent)
    return done


def uninstall(integration: Integration) -> list[str]:
    """Removes what ``install`` wrote for INTEGRATION. Returns what it did.

    Files without the marker line are not ours: they stay, and ``IntegrationError``
    says so after the rest is removed.
    """
    if integration.extra == "thunar":
        return [uninstall_thunar()]
    done, foreign = [], []
    for target in integration.files:
        dest = target.dest()
        state = file_state(dest, None)
        if state == "foreign":
            foreign.append(str(dest))
        elif state != "missing":
            dest.unlink()
            done.append(f"removed {dest}")
    if integration.extra == "luarc" and not foreign:
        done.extend(filter(None, [remove_luarc_line()]))
    elif integration.extra == "desktop-db" and done:
        update_desktop_database(integration.files[0].dest().parent)
    if foreign:
        raise IntegrationError(f"{', '.join(foreign)}: not written by findsimilar; "
                               f"left alone. {' '.join(done)}".strip())
    return done or ["nothing to remove"]


def status(integration: Integration, command: list[str]) -> dict[str, object]:
    """Returns the integration's state: "installed", "not installed", "outdated",
    "modified by user", "not ours" (someone else's file is in the way), "partly
    installed", "not available" or "uca.xml unreadable"; its paths; whether the program
    (and the plugin library it needs) is present."""
    ok = available(integration)
    if integration.extra == "thunar":
        states, paths = [thunar_state(command) if ok else "missing"], [str(uca_path())]
    else:
        states, paths = [], []
        for target in integration.files:
            expected = _expected(target, command) if ok else None
            states.append(file_state(target.dest(), expected))
            paths.append(str(target.dest()))
        if integration.extra == "luarc":
            loaded = any(line.strip() == LUARC_LINE for line in luarc_lines())
            states.append("installed" if loaded else "missing")
            paths.append(str(luarc_path()))
    app = next((shutil.which(a) for a in integration.apps if shutil.which(a)), None)
    report: dict[str, object] = {
        "name": integration.name, "title": integration.title, "available": ok,
        "state": _overall(states, ok), "paths": paths,
        "app": app if integration.apps else None, "app_present": bool(app) or not integration.apps}
    if integration.libs:
        import glob

        report["plugin_library_present"] = any(glob.glob(g) for g in integration.libs)
    return report


def _expected(target: Target, command: list[str]) -> str | None:
    try:
        return render(target.source, command)
    except IntegrationError:
        return None


def _overall(states: list[str], available_here: bool) -> str:
    if "unreadable" in states:
        return "uca.xml unreadable"
    if "foreign" in states:
        return "not ours"
    if all(s == "missing" for s in states):
        return "not installed" if available_here else "not available"
    if "missing" in states:
        return "partly installed"
    if "modified" in states:
        return "modified by user"
    return "outdated" if "outdated" in states else "installed"


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
    caja-script, desktop (Open With in image viewers), darktable, geeqie.

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
        click.echo(json.dumps(reports, ensure_ascii=False))
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
