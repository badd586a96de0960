"""The commands that manage the daemon: ``daemon run|start|stop|status|self-check``, the
folders it watches (``watch add|remove|list``) and ``reindex``."""

from __future__ import annotations

import os
import shlex
import sys
import time
from typing import Any

import click

from findsimilar.cli.client import DaemonClient, DaemonUnavailable, start_daemon
from findsimilar.cli.commands.options import daemon_call
from findsimilar.config import load_config
from findsimilar.jsonout import dumps
from findsimilar.text import printable

__all__ = ["daemon_group", "reindex_cmd", "watch_group"]


@click.group("daemon")
def daemon_group() -> None:
    """Run, start, stop or inspect the background daemon.

    \b
    Examples:
      findsimilar daemon start
      findsimilar daemon status
      findsimilar daemon stop
    """


@daemon_group.command("run")
@click.option("--idle-exit", type=float, default=None, metavar="SECONDS",
              help="Exit after this long idle, if there is no folder to watch.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def daemon_run(idle_exit: float | None, verbose: bool) -> None:
    """Run the daemon in the foreground (what systemd runs).

    Logs go to stderr (the journal under systemd). Accepts a listening socket
    from systemd socket activation (LISTEN_FDS). SIGTERM stops it cleanly.

    \b
    Example:
      findsimilar daemon run
    """
    from findsimilar import systemd
    from findsimilar.daemon.service.daemon import Daemon
    from findsimilar.daemon.service.logs import setup_logging

    setup_logging(verbose)
    inherited = systemd.first_unix_listener(systemd.listen_fds())
    sys.exit(Daemon(load_config(), listen_socket=inherited, idle_exit=idle_exit).run())


@daemon_group.command("start")
def daemon_start() -> None:
    """Start the daemon in the background; returns once it answers.

    \b
    Example:
      findsimilar daemon start
    """
    config = load_config()
    try:
        with DaemonClient(config) as client:
            pid = client.call("ping")["pid"]
        click.echo(f"the daemon is already running (pid {pid})")
        return
    except DaemonUnavailable:
        pass
    pid = start_daemon(config)
    click.echo(f"started the daemon (pid {pid}) on {config.socket_path}")


@daemon_group.command("stop")
def daemon_stop() -> None:
    """Stop the daemon (it saves its index first); waits until it has exited.

    \b
    Example:
      findsimilar daemon stop
    """
    config = load_config()
    try:
        with DaemonClient(config) as client:
            pid = client.call("stop")["pid"]
    except DaemonUnavailable:
        click.echo("the daemon is not running")
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    click.echo(f"stopped the daemon (pid {pid})")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is gone for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


@daemon_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def daemon_status(as_json: bool) -> None:
    """Whether the daemon runs; its pid, socket, state and queue. Exit 8 if not running.

    \b
    Example:
      findsimilar daemon status
    """
    config = load_config()
    try:
        with DaemonClient(config) as client:
            info = client.call("status")
    except DaemonUnavailable as exc:
        if as_json:
            click.echo(dumps({"running": False, "socket": str(config.socket_path)}))
        else:
            click.echo(f"not running ({exc})")
        sys.exit(exc.exit_code)
    if as_json:
        click.echo(dumps({"running": True, **info}))
        return
    d = info["daemon"]
    click.echo(f"running: pid {d['pid']}, version {d['version']}, up {d['uptime']:.0f} s")
    click.echo(f"socket:  {d['socket']}")
    click.echo(f"state:   {info['state']}, {info['queued']} queued")


@daemon_group.command("self-check")
@click.option("--wait", is_flag=True, help="Wait for the run and print its result.")
@click.option("--json", "as_json", is_flag=True, help="As JSON (status's `self_check`).")
def daemon_self_check(wait: bool, as_json: bool) -> None:
    """Run the self-check now: edited copies (crop, small copy, heavy JPEG, brightness) of
    up to 200 indexed photos are searched, and how many find their original is counted.
    It runs once the daemon is idle, and yields to any indexing or search.

    \b
    Examples:
      findsimilar daemon self-check --wait
      findsimilar status            # the line "self-check:"
    """
    from findsimilar.cli.commands.status import self_check_text

    check = daemon_call("self_check")
    if wait:
        when = (check.get("last") or {}).get("when")
        while check.get("requested") or check.get("running"):
            time.sleep(0.5)
            check = daemon_call("status")["self_check"]
        if (check.get("last") or {}).get("when") == when:
            raise click.ClickException("the self-check failed: the daemon's log says why")
    if as_json:
        click.echo(dumps(check))
        return
    click.echo("self-check: " + self_check_text(check))
    if check.get("problem"):
        click.echo(f"problem: match quality dropped: {check['problem']} (the daemon's log "
                   "says what to do)")


# -- watched folders ---------------------------------------------------------------------
@click.group("watch")
def watch_group() -> None:
    """Choose the folders the daemon watches (default: your XDG pictures folder, until
    you choose folders: `watch add` replaces it).

    \b
    Examples:
      findsimilar watch add ~/Photos --exclude 'exports*'
      findsimilar watch list
      findsimilar watch remove ~/Photos
    """


@watch_group.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Skip folders matching GLOB (repeatable), besides hidden and cache folders.")
def watch_add(paths: tuple[str, ...], excludes: tuple[str, ...]) -> None:
    """Watch folders (persisted); they are indexed now and followed from then on. The
    first folder you choose replaces the default one (your pictures folder), which
    is then no longer watched unless you add it too.

    \b
    Example:
      findsimilar watch add ~/Pictures /mnt/nas/photos
    """
    for path in paths:
        result = daemon_call("watch_add", path=os.path.abspath(path), excludes=list(excludes))
        click.echo(f"watching {printable(result['path'])} (indexing in the background: "
                   "`findsimilar status`)")
        replaced = result.get("replaced_default")
        if replaced:
            click.echo(f"it replaces the default folder {printable(replaced)}, which is no longer "
                       f"watched (its photos stay indexed; `findsimilar watch add "
                       f"{shlex.quote(replaced)}` to keep watching it)")


@watch_group.command("remove")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def watch_remove(paths: tuple[str, ...]) -> None:
    """Stop watching folders (their photos stay indexed); says what is watched after.

    \b
    Example:
      findsimilar watch remove /mnt/nas/photos
    """
    watched: list[str] | None = None
    for path in paths:
        result = daemon_call("watch_remove", path=os.path.abspath(path))
        click.echo(("stopped watching " if result["removed"] else "was not watching ")
                   + printable(result["path"]))
        watched = result.get("watched", watched)
    if watched is not None:
        click.echo("now watching: " + ", ".join(map(printable, watched)) if watched else
                   "no folder is watched now (`findsimilar watch add FOLDER` chooses one)")


@watch_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def watch_list(as_json: bool) -> None:
    """List watched folders and how each is followed (watch, rescan, unavailable); the
    default folder (watched while you have chosen none) is marked "(default)", and
    "(none)" says that no folder is watched.

    \b
    Example:
      findsimilar watch list
    """
    roots = daemon_call("watch_list")
    if as_json:
        click.echo(dumps(roots))
        return
    if not roots:
        click.echo("(none)")
        return
    for root in roots:
        extra = " (default)" if root.get("default") else ""
        why = f": {root['why']}" if root.get("why") else ""
        click.echo(f"{printable(root['path'])}\t{root['mode']}{extra}{why}")


@click.command("reindex")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--rehash", is_flag=True,
              help="Read and hash every file again, however unchanged its size, times and "
                   "inode look (only pictures not seen before go through the model).")
def reindex_cmd(paths: tuple[str, ...], rehash: bool) -> None:
    """Ask the daemon to rescan watched folders in the background: all of them, or the
    PATHS given (watched folders, or folders and files below them).

    \b
    Examples:
      findsimilar reindex ~/Pictures
      findsimilar reindex --rehash ~/Pictures/2024   # verify every file's bytes
    """
    args: dict[str, Any] = {"paths": [os.path.abspath(p) for p in paths]}
    if rehash:
        args["rehash"] = True
    daemon_call("reindex", **args)
    click.echo(("re-hash" if rehash else "rescan") +
               " queued (`findsimilar status` shows progress)")
