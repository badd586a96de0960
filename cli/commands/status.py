"""``findsimilar status``: counts, progress, the daemon, the model and the store; from
the daemon, or read straight from the store when none runs (it is not started)."""

from __future__ import annotations

import time
from typing import Any

import click

from findsimilar.cli.backends import choose_backend, no_daemon_requested, running_status
from findsimilar.cli.commands.options import NO_DAEMON
from findsimilar.config import config_file_path, load_config
from findsimilar.jsonout import dumps
from findsimilar.text import human_size, printable

__all__ = ["self_check_text", "status_cmd"]


@click.command("status")
@click.option("--json", "as_json", is_flag=True,
              help="As JSON (keys include indexed, failed, queued).")
@NO_DAEMON
def status_cmd(as_json: bool, no_daemon: bool) -> None:
    """Show counts (indexed, failed, queued), indexing rate and ETA, the model,
    watched folders and the store size; from a running daemon also search latency
    (p50/p99), indexing throughput and queue age. Does not start the daemon.

    \b
    Example:
      findsimilar status --json | jq .queued
    """
    config = load_config()
    if no_daemon_requested(no_daemon):
        local = choose_backend(config, no_daemon=True)
        info = local.status()
        local.close()
    else:
        info = running_status(config)
    if as_json:
        click.echo(dumps(info))
        return
    click.echo(_status_text(info))


def _dupes_state(info: dict[str, Any]) -> str:
    running = [p for p in info.get("dupes_progress") or [] if p.get("total")]
    if running:
        return "checking pairs " + ", ".join(f"{p['done']}/{p['total']}" for p in running)
    return ("every candidate pair decided: `findsimilar dupes` answers from the cache"
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


def _upgrade_state(up: dict[str, Any]) -> str:
    """The upgrade to the configured model in a line (``service.upgrade``)."""
    if up["state"] == "done":
        return f"done: searches use {up['to']} ({up['extracted']} pictures extracted)"
    text = (f"to {up['to']}: {up['done']}/{up['total']} pictures extracted; searches use "
            f"{up['from']} until it is complete")
    if up["state"] == "pending":
        text += " (the daemon does it in the background, or `findsimilar index`)"
    elif up["state"] == "waiting":
        text += " (waiting for indexing to finish)"
    elif up["state"] == "failed":
        text += f"; failed: {up['error']}, tried again in {up['retry_in_s'] or 0:.0f} s"
    if up.get("skipped"):
        text += f"; {up['skipped']} left out (not readable by the new model)"
    return text


def _latency(kind: dict[str, Any], what: str) -> str:
    if not kind["count"]:
        return f"no {what} yet"
    return (f"p50 {_num(kind['p50_ms'])} ms, p99 {_num(kind['p99_ms'])} ms over "
            f"{kind['count']} {'query' if kind['count'] == 1 else 'queries'} ({what})")


def _num(value: float) -> str:
    """Milliseconds with the digits that matter: 40, 2.5, 0.42."""
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _throughput(indexing: dict[str, Any]) -> str:
    """The recent rate and the last run's, or why there is none."""
    run = indexing.get("run")
    if run is None:
        return "nothing indexed since the daemon started"
    if indexing["files_per_s"] is not None:
        text = (f"{indexing['files_per_s']:.1f} files/s over the last "
                f"{indexing['seconds']:.0f} s of indexing work")
    else:
        text = "too little indexing work yet for a rate"
    rate = f" ({run['files_per_s']:.1f} files/s)" if run["files_per_s"] is not None else ""
    return text + f"; last run {run['files']} files in {run['seconds']:.1f} s{rate}"


def _metrics_lines(metrics: dict[str, Any]) -> list[str]:
    search = metrics["search"]
    if not (search["indexed"]["count"] or search["new"]["count"]):
        searches = "no searches yet"
    else:
        searches = (_latency(search["indexed"], "indexed photos") + "; "
                    + _latency(search["new"], "new photos"))
    lines = ["search:     " + searches, "indexing:   " + _throughput(metrics["indexing"])]
    queue = metrics["queue"]
    if queue["tasks"]:
        lines.append(f"queue:      oldest indexing work waiting {queue['age_s']:.0f} s "
                     f"({queue['tasks']} task(s))")
    return lines


def self_check_text(check: dict[str, Any] | None, now: float | None = None) -> str:
    """The last self-check in words: "198/200 edited copies found at rank 1 (200 in the
    top 10), 2 h ago", and whether one runs now."""
    last = (check or {}).get("last")
    if last is None:
        text = "not run yet"
    else:
        text = (f"{last['rank1']}/{last['checked']} edited copies found at rank 1 "
                f"({last['top_k']} in the top {last['k']}), {_ago(last['when'], now)}")
        if last.get("skipped"):
            text += f"; {last['skipped']} photo(s) skipped (changed or gone)"
    if check and check.get("running"):
        text += "; running now"
    elif check and check.get("requested"):
        text += "; runs again when the daemon is idle"
    return text


def _ago(when: float, now: float | None = None) -> str:
    seconds = max(0.0, (time.time() if now is None else now) - when)
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit} ago"
    return "just now"


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
            lines.append(f"watching:   {printable(root['path'])} [{root['mode']}]{why}")
        if "duplicates_checked" in info:
            lines.append("duplicates: " + _dupes_state(info))
        if info.get("index"):
            lines.append("index:      " + _index_state(info["index"], info.get("vectors", 0)))
        if info.get("metrics"):
            lines += _metrics_lines(info["metrics"])
        if info.get("self_check") is not None:
            lines.append("self-check: " + self_check_text(info["self_check"]))
            if info["self_check"].get("problem"):
                lines.append(f"problem:    match quality dropped: {info['self_check']['problem']}"
                             " (the daemon's log says what to do)")
    else:
        lines.append("daemon:     not running (`findsimilar daemon start`)")
    if info.get("model"):
        dim = f" ({info['dim']}-d)" if info.get("dim") else ""
        lines.append(f"model:      {info['model']}{dim}")
    if info.get("upgrade"):
        lines.append("upgrade:    " + _upgrade_state(info["upgrade"]))
    if daemon and info.get("worker"):
        lines.append("worker:     " + _worker_state(info["worker"]))
    lines.append(f"data dir:   {info['data_dir']}")
    config_file = info.get("config_file") or f"none ({config_file_path()} not found)"
    lines.append(f"config:     {config_file}")
    if "store_bytes" in info:
        index = f", index {human_size(int(info['index_bytes']))}" if "index_bytes" in info else ""
        lines.append(f"store size: {human_size(int(info['store_bytes']))}{index}")
    lines += [f"  failed: {printable(f['path'])}: {f['error']}"
              for f in info.get("recent_failures", [])]
    return "\n".join(lines)
