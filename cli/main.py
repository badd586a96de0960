"""``findsimilar``: the command line.

Results go to stdout, diagnostics to stderr, ``--json`` is for scripts.
The engine (torch, faiss) is imported inside the commands that need it, so
``findsimilar --help`` and errors stay instant.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from findsimilar import __version__
from findsimilar.cli.backends import Backend, choose_backend, no_daemon_requested, offline_status
from findsimilar.cli.client import DaemonClient, DaemonUnavailable, start_daemon
from findsimilar.cli.progress import ProgressBar
from findsimilar.config import load_config
from findsimilar.errors import EXIT_MISSING_FILE, FindSimilarError, StoreError
from findsimilar.text import human_size

__all__ = ["cli", "main"]


# Commands imported only when used: keeps `findsimilar photo.jpg` start-up short.
_LAZY = {"service": ("findsimilar.cli.service", "service_group"),
         "dupes": ("findsimilar.cli.dupes", "dupes_group"),
         "show": ("findsimilar.cli.show", "show_cmd"),
         "integrate": ("findsimilar.cli.integrate", "integrate_group")}


class _DefaultToSearch(click.Group):
    """``findsimilar PHOTO...`` means ``findsimilar search PHOTO...``."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _LAZY and name not in self.commands:
            import importlib

            module, attr = _LAZY[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-") or a == "-"), None)
        wants_group_help = any(a in ("--help", "-h", "--version") for a in args) and (
            first is None)
        if args and not wants_group_help and first not in self.commands and first not in _LAZY:
            args = ["search", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultToSearch, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="findsimilar")
def cli() -> None:
    """Find similar and duplicate photos, locally.

    \b
    Examples:
      findsimilar index ~/Pictures       # index a folder (recursively)
      findsimilar photo.jpg              # the 10 most similar indexed photos
      findsimilar -k 5 --json photo.jpg  # as JSON, top 5
      findsimilar show photo.jpg         # the same, as a page of thumbnails
      findsimilar dupes ~/Pictures       # duplicate groups (see dupes --help)
      findsimilar status

    State lives in $FINDSIMILAR_DATA_DIR (default: $XDG_DATA_HOME/findsimilar).
    """


NO_DAEMON = click.option(
    "--no-daemon", is_flag=True,
    help="Run in this process instead of the daemon (loads the model; also "
         "FINDSIMILAR_NO_DAEMON=1).")


def result_options(default_top: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``-k/--top`` and ``--min-score``, as `search` and `show` take them (a page shows
    more results by default than a terminal)."""
    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--min-score", type=click.FloatRange(-1.0, 1.0),
                               help="Only results with at least this cosine similarity."
                               )(command)
        return click.option("-k", "--top", "top", default=default_top, show_default=True,
                            type=click.IntRange(min=1), help="How many results per photo."
                            )(command)
    return apply


def _backend(no_daemon: bool) -> Backend:
    return choose_backend(load_config(), no_daemon=no_daemon)


def _fail(exc: FindSimilarError) -> None:
    if isinstance(exc, DaemonUnavailable):
        exc = _damaged_store() or exc
    click.echo(f"findsimilar: error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _damaged_store() -> StoreError | None:
    """A daemon that went away may have stopped on a damaged store (it exits with code 6
    and says so in its journal, e.g. when systemd started it): then say what to do here
    too. Reads the store without writing to it."""
    try:
        offline_status(load_config())
    except StoreError as exc:
        return exc
    except FindSimilarError:
        pass
    return None


@cli.command("index")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("--rehash", is_flag=True,
              help="Read and hash every file again, however unchanged it looks (only "
                   "pictures not seen before go through the model).")
@NO_DAEMON
def index_cmd(paths: tuple[str, ...], as_json: bool, quiet: bool, rehash: bool,
              no_daemon: bool) -> None:
    """Index photos in PATHS (folders are searched recursively).

    Unchanged files (same inode, size, mtime and ctime) are skipped; moved or
    renamed files are re-linked by content hash without running the model.
    Files that cannot be read are recorded with a reason and retried when they
    change. Exits 0 even when some files fail.

    \b
    Examples:
      findsimilar index ~/Pictures /mnt/photos
      findsimilar index --json ~/Pictures | jq .failed
      findsimilar index --rehash ~/Pictures/2024   # verify every file's bytes
    """
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        click.echo(f"findsimilar: error: no such file or folder: {missing[0]}", err=True)
        sys.exit(EXIT_MISSING_FILE)
    bar = ProgressBar("indexing") if not quiet else None
    try:
        backend = _backend(no_daemon)
        try:
            summary = backend.index(list(paths), bar if bar and bar.enabled else None,
                                    rehash=rehash)
        finally:
            backend.close()
            if bar:
                bar.finish()
    except FindSimilarError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(_summary_text(summary))


def _summary_text(s: dict[str, Any]) -> str:
    failed = s["failed"]
    processed = s["new"] + s["changed"] + s["moved"] + len(failed)
    rate = s["extracted"] / s["seconds"] if s["seconds"] else 0.0
    lines = [
        f"{s['new']} new, {s['changed']} changed, {s['moved']} moved, "
        f"{s['unchanged']} unchanged, {s['removed']} removed, {len(failed)} failed "
        f"({processed} processed, {s['extracted']} through the model at {rate:.1f}/s, "
        f"{s['seconds']:.1f} s)"]
    if s["still_failing"]:
        lines.append(f"{s['still_failing']} files that failed before are unchanged "
                     "and were not retried (see `findsimilar status`)")
    if failed:
        lines.append("failed:")
        lines.extend(f"  {f['path']}: {f['reason']}" for f in failed[:50])
        if len(failed) > 50:
            lines.append(f"  ... and {len(failed) - 50} more (use --json for all)")
    return "\n".join(lines)


@cli.command("search")
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@result_options(default_top=10)
@click.option("--json", "as_json", is_flag=True,
              help='One JSON object per query per line: {"query", "results": [{"path", "score"}]}.')
@click.option("-0", "--null", "null", is_flag=True, help="NUL-separated paths, for xargs -0.")
@NO_DAEMON
def search_cmd(photos: tuple[str, ...], top: int, min_score: float | None, as_json: bool,
               null: bool, no_daemon: bool) -> None:
    """Show the indexed photos most similar to each PHOTO.

    PHOTO need not be indexed. Scores are cosine similarities (1.0 = same
    picture). `findsimilar PHOTO` is short for `findsimilar search PHOTO`.
    The daemon answers (it is started if it is not running, with a note on
    stderr); --no-daemon searches in this process instead.

    \b
    Examples:
      findsimilar beach.jpg
      findsimilar -k 3 --min-score 0.8 --json a.jpg b.heic
      findsimilar -0 cat.jpg | xargs -0 ls -l
    """
    # A missing file is an error before any daemon is asked (or started).
    found = [p for p in photos if os.path.exists(p)]
    results: dict[str, dict[str, Any]] = {
        p: {"query": os.path.abspath(p), "error": {
            "message": f"no such file: {os.path.abspath(p)}", "exit_code": EXIT_MISSING_FILE}}
        for p in photos if p not in found}
    if found:
        try:
            backend = _backend(no_daemon)
            try:
                results.update(zip(found, backend.search(found, top, min_score), strict=True))
            finally:
                backend.close()
        except FindSimilarError as exc:
            _fail(exc)
            return
    exit_code = 0
    for result in (results[p] for p in photos):
        error = result.get("error")
        if error:
            click.echo(f"findsimilar: error: {error['message']}", err=True)
            exit_code = exit_code or int(error.get("exit_code", 1))
            continue
        _print_result(result, as_json, null, len(photos) > 1)
    sys.exit(exit_code)


def _print_result(result: dict[str, Any], as_json: bool, null: bool, many: bool) -> None:
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False))
    elif null:
        out = sys.stdout.buffer
        for m in result["results"]:
            out.write(m["path"].encode("utf-8", "surrogateescape") + b"\0")
        out.flush()
    else:
        if many:
            click.echo(f"# {result['query']}")
        if not result["results"]:
            click.echo("(no similar photos)", err=True)
        for m in result["results"]:
            click.echo(f"{m['score']:.4f}  {m['path']}")


@cli.command("status")
@click.option("--json", "as_json", is_flag=True,
              help="As JSON (keys include indexed, failed, queued).")
@NO_DAEMON
def status_cmd(as_json: bool, no_daemon: bool) -> None:
    """Show counts (indexed, failed, queued), indexing rate and ETA, the model,
    watched folders and the store size. Does not start the daemon.

    \b
    Example:
      findsimilar status --json | jq .queued
    """
    config = load_config()
    try:
        if no_daemon_requested(no_daemon):
            backend = choose_backend(config, no_daemon=True)
            info = backend.status()
            backend.close()
        else:
            try:
                with DaemonClient(config) as client:
                    info = client.call("status")
            except DaemonUnavailable:
                info = offline_status(config)
    except FindSimilarError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(_status_text(info))


def _dupes_state(info: dict[str, Any]) -> str:
    running = [p for p in info.get("dupes_progress") or [] if p.get("total")]
    if running:
        return "checking pairs " + ", ".join(f"{p['done']}/{p['total']}" for p in running)
    return ("every candidate pair checked: `findsimilar dupes` answers from the cache"
            if info["duplicates_checked"] else "new photos not yet checked for duplicates")


def _index_state(index: dict[str, Any], vectors: int) -> str:
    layout = ("exact search" if index["layout"] == "exact" else
              f"compressed ({index['lists']} lists, results re-scored exactly)")
    text = f"{vectors} vectors, {layout}"
    if index.get("state") in ("training", "filling", "starting"):
        text += (f"; building the {index.get('to', '')} index: {index['state']}"
                 f" {index.get('done', 0)}/{index.get('total', vectors)}")
    elif index.get("error"):
        text += f"; last rebuild failed: {index['error']}"
    return text


def _worker_state(worker: dict[str, Any]) -> str:
    """The daemon's model worker in a line: running or not, its memory, its replacements."""
    if worker.get("running"):
        rss = worker.get("rss_bytes")
        text = f"running, pid {worker['pid']}" + (f", {human_size(int(rss))}" if rss else "")
        if worker.get("working_on"):
            text += f", reading {len(worker['working_on'])} picture(s)"
    else:
        text = "not running (started when a picture needs the model)"
    if worker.get("replaced"):
        text += f"; replaced {worker['replaced']} time(s), last: {worker.get('last_failure')}"
    return text


def _status_text(info: dict[str, Any]) -> str:
    lines = [f"indexed:    {info['indexed']} files ({info['unique_images']} unique images)",
             f"failed:     {info['failed']}"]
    daemon = info.get("daemon")
    if daemon:
        eta = info.get("eta_seconds")
        lines.append(f"queued:     {info['queued']}" + (
            f" ({info['rate']:.1f} images/s, ETA {int(eta)} s)" if eta else ""))
        lines.append(f"daemon:     pid {daemon['pid']}, {info['state']}, socket {daemon['socket']}")
        if info.get("problem"):
            lines.append(f"problem:    {info['problem']}")
        for root in info.get("roots", []):
            why = f" ({root['why']})" if root.get("why") else ""
            lines.append(f"watching:   {root['path']} [{root['mode']}]{why}")
        if "duplicates_checked" in info:
            lines.append("duplicates: " + _dupes_state(info))
        if info.get("index"):
            lines.append("index:      " + _index_state(info["index"], info.get("vectors", 0)))
    else:
        lines.append("daemon:     not running (`findsimilar daemon start`)")
    if info.get("model"):
        dim = f" ({info['dim']}-d)" if info.get("dim") else ""
        lines.append(f"model:      {info['model']}{dim}")
    if daemon and info.get("worker"):
        lines.append("worker:     " + _worker_state(info["worker"]))
    lines.append(f"data dir:   {info['data_dir']}")
    if "store_bytes" in info:
        index = f", index {human_size(int(info['index_bytes']))}" if "index_bytes" in info else ""
        lines.append(f"store size: {human_size(int(info['store_bytes']))}{index}")
    lines += [f"  failed: {f['path']}: {f['error']}" for f in info.get("recent_failures", [])]
    return "\n".join(lines)


# -- the daemon -------------------------------------------------------------------------
@cli.group("daemon")
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
    try:
        code = Daemon(load_config(), listen_socket=inherited, idle_exit=idle_exit).run()
    except FindSimilarError as exc:
        _fail(exc)
        return
    sys.exit(code)


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
    try:
        pid = start_daemon(config)
    except FindSimilarError as exc:
        _fail(exc)
        return
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
    except FindSimilarError as exc:
        _fail(exc)
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
            click.echo(json.dumps({"running": False, "socket": str(config.socket_path)}))
        else:
            click.echo(f"not running ({exc})")
        sys.exit(exc.exit_code)
    except FindSimilarError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps({"running": True, **info}))
        return
    d = info["daemon"]
    click.echo(f"running: pid {d['pid']}, version {d['version']}, up {d['uptime']:.0f} s")
    click.echo(f"socket:  {d['socket']}")
    click.echo(f"state:   {info['state']}, {info['queued']} queued")


# -- watched folders ---------------------------------------------------------------------
@cli.group("watch")
def watch_group() -> None:
    """Choose the folders the daemon watches (default: your XDG pictures folder).

    \b
    Examples:
      findsimilar watch add ~/Photos --exclude 'exports*'
      findsimilar watch list
      findsimilar watch remove ~/Photos
    """


def _daemon_call(command: str, **args: Any) -> Any:
    """Ask the daemon, starting it if needed."""
    config = load_config()
    backend = choose_backend(config, no_daemon=False)
    assert hasattr(backend, "client")
    try:
        return backend.client.call(command, **args)
    finally:
        backend.close()


@watch_group.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Skip folders matching GLOB (repeatable), besides hidden and cache folders.")
def watch_add(paths: tuple[str, ...], excludes: tuple[str, ...]) -> None:
    """Watch folders (persisted); they are indexed now and followed from then on.

    \b
    Example:
      findsimilar watch add ~/Pictures /mnt/nas/photos
    """
    try:
        for path in paths:
            result = _daemon_call("watch_add", path=os.path.abspath(path),
                                  excludes=list(excludes))
            click.echo(f"watching {result['path']} (indexing in the background: "
                       "`findsimilar status`)")
    except FindSimilarError as exc:
        _fail(exc)


@watch_group.command("remove")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def watch_remove(paths: tuple[str, ...]) -> None:
    """Stop watching folders (their photos stay indexed).

    \b
    Example:
      findsimilar watch remove /mnt/nas/photos
    """
    try:
        for path in paths:
            result = _daemon_call("watch_remove", path=os.path.abspath(path))
            click.echo(("stopped watching " if result["removed"] else "was not watching ")
                       + result["path"])
    except FindSimilarError as exc:
        _fail(exc)


@watch_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="As JSON.")
def watch_list(as_json: bool) -> None:
    """List watched folders and how each is followed (watch, rescan, unavailable).

    \b
    Example:
      findsimilar watch list
    """
    try:
        roots = _daemon_call("watch_list")
    except FindSimilarError as exc:
        _fail(exc)
        return
    if as_json:
        click.echo(json.dumps(roots))
        return
    for root in roots:
        extra = " (default)" if root.get("default") else ""
        why = f": {root['why']}" if root.get("why") else ""
        click.echo(f"{root['path']}\t{root['mode']}{extra}{why}")


@cli.command("reindex")
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
    try:
        _daemon_call("reindex", **args)
    except FindSimilarError as exc:
        _fail(exc)
        return
    click.echo(("re-hash" if rehash else "rescan") +
               " queued (`findsimilar status` shows progress)")


def main() -> None:
    cli()
