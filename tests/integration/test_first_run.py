"""A new user's first steps, as the README tells them, on a fresh HOME with a Pictures
folder of real photos and the standard data dir: the CLI starts the daemon itself, and
what it says is true of what it and that daemon did; `watch` says what is followed, and
the daemon follows exactly that.

One daemon for the module (auto-started by the first `index`); the tests run in order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import copy_photos, shared
from .daemon_harness import FAST_SETTLE, indexed_paths, wait_until

PHOTOS = ["skimage/chelsea.png", "skimage/coffee.png", "opencv/butterfly.jpg"]


@dataclass
class Home:
    home: Path
    pictures: Path
    data_dir: Path  # the standard one: $XDG_DATA_HOME/findsimilar
    env: dict[str, str]

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "findsimilar", *args], env=self.env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == code, (result.stdout, result.stderr)
        return result


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A fresh HOME: ~/Pictures holds three photos and a damaged file; no daemon runs."""
    home = tmp_path_factory.mktemp("home")
    pictures = home / "Pictures"
    copy_photos(pictures, PHOTOS)
    (pictures / "damaged.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    sock_dir = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FINDSIMILAR_", "LISTEN_", "XDG_"))
           and k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / ".local/share"),
               XDG_CONFIG_HOME=str(home / ".config"), XDG_STATE_HOME=str(home / ".state"),
               XDG_CACHE_HOME=str(home / ".cache"),
               FINDSIMILAR_SOCKET=str(sock_dir / "d.sock"), **FAST_SETTLE)
    fresh = Home(home, pictures, home / ".local/share/findsimilar", env)
    try:
        yield fresh
    finally:
        subprocess.run([sys.executable, "-m", "findsimilar", "daemon", "stop"], env=env,
                       capture_output=True, timeout=60)
        log = home / ".state/findsimilar/daemon.log"
        print(f"--- daemon log\n{log.read_text(errors='replace') if log.exists() else ''}")
        shutil.rmtree(sock_dir, ignore_errors=True)


def test_first_index_counts_what_the_daemon_it_started_indexed_first(fresh: Home):
    result = fresh.run("index", str(fresh.pictures))
    assert "started the daemon" in result.stderr  # the CLI started it: a fresh HOME
    summary = result.stdout
    assert summary.startswith("3 new, 0 changed, 0 moved, 0 unchanged, 0 removed, 1 failed")
    assert (f"of which the daemon, as it started, indexed in {fresh.pictures}: 3 new, "
            "0 changed, 0 moved, 0 removed, 1 failed") in summary
    assert "failed before" not in summary
    assert f"{fresh.pictures / 'damaged.jpg'}: " in summary


def test_a_later_index_says_the_photos_are_unchanged(fresh: Home):
    summary = json.loads(fresh.run("index", "--json", str(fresh.pictures)).stdout)
    assert (summary["new"], summary["unchanged"], summary["still_failing"]) == (0, 3, 1)
    assert "at_daemon_start" not in summary


def test_the_default_folder_is_listed_as_the_default(fresh: Home):
    assert fresh.run("watch", "list").stdout == f"{fresh.pictures}\twatch (default)\n"
    [entry] = json.loads(fresh.run("watch", "list", "--json").stdout)
    assert (entry["path"], entry["default"]) == (str(fresh.pictures), True)


def test_removing_a_folder_not_watched_keeps_the_default(fresh: Home):
    said = fresh.run("watch", "remove", str(fresh.home / "elsewhere")).stdout
    assert said == (f"was not watching {fresh.home / 'elsewhere'}\n"
                    f"now watching: {fresh.pictures}\n")
    assert fresh.run("watch", "list").stdout == f"{fresh.pictures}\twatch (default)\n"


def test_watch_add_says_it_replaces_the_default_which_is_no_longer_followed(fresh: Home):
    extra = fresh.home / "extra"
    extra.mkdir()
    said = fresh.run("watch", "add", str(extra)).stdout
    assert f"it replaces the default folder {fresh.pictures}, which is no longer watched" \
        in said
    assert fresh.run("watch", "list").stdout == f"{extra}\twatch\n"
    # What is listed is what is followed: a photo arriving in ~/Pictures is not indexed,
    # one arriving in ~/extra is (the Pictures one arrives first: its event would too).
    shutil.copy(shared("skimage/astronaut.png"), fresh.pictures / "arrived.png")
    shutil.copy(shared("skimage/astronaut.png"), extra / "arrived.png")
    wait_until(lambda: str(extra / "arrived.png") in indexed_paths(fresh.data_dir), 60)
    (fresh.home / "empty").mkdir()
    fresh.run("index", "-q", str(fresh.home / "empty"))  # runs after any event queued
    assert str(fresh.pictures / "arrived.png") not in indexed_paths(fresh.data_dir)


def test_removing_the_last_folder_says_none_is_watched(fresh: Home):
    said = fresh.run("watch", "remove", str(fresh.home / "extra")).stdout
    assert said == (f"stopped watching {fresh.home / 'extra'}\n"
                    "no folder is watched now (`findsimilar watch add FOLDER` chooses one)\n")
    assert fresh.run("watch", "list").stdout == "(none)\n"
    assert json.loads(fresh.run("watch", "list", "--json").stdout) == []
