"""``findsimilar dupes --follow``: each new or changed duplicate group, as a JSON line,
as the daemon finds it around photos arriving in watched folders (daemon/service/follow).

Runs until interrupted (Ctrl-C: exit 0). The daemon is started if it does not run; if
it goes away (restarted, upgraded) the command says so on stderr and carries on with the
next one, missing none of the groups the daemon still keeps.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from findsimilar.cli.backends import DaemonBackend, choose_backend, no_daemon_requested
from findsimilar.cli.client import DaemonClient, DaemonUnavailable
from findsimilar.config import load_config
from findsimilar.errors import EXIT_NO_DAEMON
from findsimilar.jsonout import dumps

__all__ = ["follow_groups"]

POLL_WAIT = 20.0  # seconds each request waits for a group (the daemon caps it at 25)
RETRY_EVERY = 2.0  # seconds between attempts to reach a daemon that went away


def follow_groups(tiers: tuple[str, ...], no_daemon: bool) -> None:
    """Print the groups in ``tiers`` as the daemon finds them, until interrupted."""
    if no_daemon_requested(no_daemon):
        click.echo("findsimilar: error: --follow listens to the daemon, which watches your "
                   "folders: it cannot run with --no-daemon (or FINDSIMILAR_NO_DAEMON)",
                   err=True)
        sys.exit(EXIT_NO_DAEMON)
    config = load_config()
    chosen = choose_backend(config, no_daemon=False)  # started if need be
    assert isinstance(chosen, DaemonBackend)
    client: DaemonClient | None = chosen.client
    after: int | None = None
    away = False
    try:
        while True:
            try:
                if client is None:
                    client = DaemonClient(config).connect()
                reply: dict[str, Any] = client.call("dupes_follow", after=after, wait=POLL_WAIT)
            except DaemonUnavailable as exc:
                if client is not None:
                    client.close()
                client = None
                if not away:
                    click.echo(f"findsimilar: the daemon went away ({exc}); waiting for it "
                               "to come back", err=True)
                    away = True
                time.sleep(RETRY_EVERY)
                continue
            if away:
                click.echo("findsimilar: the daemon is back; following again", err=True)
                away = False
            if reply.get("missed"):
                click.echo(f"findsimilar: {reply['missed']} group(s) were found while this "
                           "command was away and are no longer kept: run `findsimilar dupes`",
                           err=True)
            after = reply["seq"]
            for group in reply["groups"]:
                if group["tier"] in tiers:
                    click.echo(dumps(group))
            sys.stdout.flush()
    except KeyboardInterrupt:
        sys.exit(0)
    except BrokenPipeError:  # `| head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    finally:
        if client is not None:
            client.close()
