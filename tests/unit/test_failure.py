"""What the command line says when it loses its daemon (``cli.failure``): a daemon that
stopped on a damaged store says so in its log, and the client passes that on, with its
exit code, even where a plain read of the store finds nothing wrong (the damage is in an
index page that only a search or a folder scan reads)."""

from __future__ import annotations

import os
import time

from findsimilar.cli.failure import _logged_damage
from findsimilar.errors import EXIT_STORE, damaged_store


def test_a_damaged_store_the_daemon_logged_just_now_is_what_is_reported(tmp_path):
    store, log = tmp_path / "store.db", tmp_path / "daemon.log"
    said = str(damaged_store(store, "database disk image is malformed"))
    log.write_text(f"2026-11-30 started\nfindsimilar: error: {said}\n")
    error = _logged_damage(log, store)
    assert error is not None and error.exit_code == EXIT_STORE
    assert str(error) == said and "mkdir" in str(error)


def test_an_old_log_another_store_or_another_error_say_nothing(tmp_path):
    store, log = tmp_path / "store.db", tmp_path / "daemon.log"
    said = str(damaged_store(store, "malformed"))
    log.write_text(f"findsimilar: error: {said}\n")
    old = time.time() - 120
    os.utime(log, (old, old))
    assert _logged_damage(log, store) is None  # a damage long ago, since recovered
    log.write_text(f"findsimilar: error: {damaged_store(tmp_path / 'other.db', 'x')}\n")
    assert _logged_damage(log, store) is None
    log.write_text(f"findsimilar: error: {said}\nfindsimilar: error: something else\n")
    assert _logged_damage(log, store) is None  # the last word is what counts
    assert _logged_damage(tmp_path / "no-log", store) is None
