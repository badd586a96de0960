"""Installing, removing and checking one integration ("Find similar photos" in a file
manager or image app), for ``findsimilar integrate``.

The files in ``plugins/`` (package data ``findsimilar.plugins``) are templates: ``install``
copies them to where each program looks, with ``@FINDSIMILAR@`` replaced by the absolute
command of the running findsimilar (quoted for the file's language), through the one
installer (:mod:`.installer`): its marker line lets ``uninstall`` remove only files this
command wrote and ``status`` tell a file the user edited. Thunar has no folder of
actions, so our action is spliced into ``uca.xml`` as text: the user's own actions keep
every byte (:mod:`.shared_configs`). Stdlib only: this stays a light command.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from findsimilar.cli.install.folders import make_folder
from findsimilar.cli.install.installer import (
    MARKER,
    InstalledFile,
    file_state,
    foreign_files,
    write_file,
)
from findsimilar.cli.install.integration_files import (
    LUARC_LINE,
    Integration,
    IntegrationError,
    Target,
    available,
    luarc_path,
    render,
    uca_path,
)
from findsimilar.cli.install.shared_configs import (
    add_luarc_line,
    install_thunar,
    luarc_lines,
    remove_luarc_line,
    thunar_state,
    uninstall_thunar,
)

__all__ = ["install", "status", "uninstall", "update_desktop_database"]

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
    if integration.extra == "man":
        from findsimilar.cli.install.manpages import install_man

        return install_man()
    planned = [_installed_file(integration, t, command) for t in integration.files]
    foreign = foreign_files(planned)
    if foreign:
        raise IntegrationError(f"{foreign[0]} exists and was not written by findsimilar (no "
                               f"'{MARKER}' line); leaving it alone")
    done = remove_former(integration)
    for file in planned:
        edited = file_state(file.dest, None) == "modified"
        make_folder(file.dest.parent)
        write_file(file)
        done.append(f"wrote {file.dest}" + (" (replacing your edits to it)" if edited else ""))
    if integration.extra == "luarc":
        done.append(add_luarc_line())
    elif integration.extra == "desktop-db":
        update_desktop_database(planned[0].dest.parent)
    return done


def _installed_file(integration: Integration, target: Target,
                    command: list[str]) -> InstalledFile:
    """TARGET's file for the one installer. Raises ``IntegrationError`` if its template
    is missing."""
    return InstalledFile(target.dest(), render(target.source, command),
                         f"integrate install {integration.name}",
                         f"integrate uninstall {integration.name}",
                         comment="--" if target.source.endswith(".lua") else "#",
                         mode=0o755 if target.executable else 0o644)


def remove_former(integration: Integration) -> list[str]:
    """Removes INTEGRATION's files where an earlier findsimilar put them (only ours:
    a file there without the marker line is the user's and stays)."""
    done = []
    for where in integration.former:
        path = where()
        if file_state(path, None) not in ("missing", "foreign"):
            path.unlink()
            done.append(f"removed {path} (where an earlier findsimilar put it)")
    return done


def uninstall(integration: Integration) -> list[str]:
    """Removes what ``install`` wrote for INTEGRATION. Returns what it did.

    Files without the marker line are not ours: they stay, and ``IntegrationError``
    says so after the rest is removed.
    """
    if integration.extra == "thunar":
        return [uninstall_thunar()]
    if integration.extra == "man":
        from findsimilar.cli.install.manpages import uninstall_man

        return uninstall_man() or ["nothing to remove"]
    done, foreign = remove_former(integration), []
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
    elif integration.extra == "man":
        from findsimilar.cli.install.manpages import man_states

        states, paths = man_states()
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
