"""What the daemon's start-up reconcile did, added to the summary of the `index` that
started the daemon (``daemon.service.startup``), on plain summaries."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from findsimilar.daemon.service.startup import with_startup


def summary(**counts: Any) -> dict[str, Any]:
    base = {"new": 0, "changed": 0, "unchanged": 0, "moved": 0, "removed": 0, "extracted": 0,
            "failed": [], "still_failing": 0, "unsettled": 0, "seconds": 0.5,
            "interrupted": False}
    return {**base, **counts}


def done(result: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(result)
    return future


BROKEN = {"path": "/home/me/Pictures/broken.jpg", "reason": "not an image"}
RECONCILED = {"/home/me/Pictures": summary(new=93, extracted=93, failed=[BROKEN],
                                           seconds=20.0),
              "/mnt/nas": summary(new=7, extracted=7)}


def test_a_reconciled_folder_asked_for_is_counted_as_this_runs():
    asked = summary(unchanged=93, still_failing=1)
    got = with_startup(asked, ["/home/me"], done({"/home/me/Pictures":
                                                  RECONCILED["/home/me/Pictures"]}))
    assert (got["new"], got["unchanged"], got["still_failing"], got["extracted"]) == (
        93, 0, 0, 93)
    assert got["failed"] == [BROKEN] and got["seconds"] == 20.5
    assert got["at_daemon_start"] == [{"path": "/home/me/Pictures", "new": 93, "changed": 0,
                                       "moved": 0, "removed": 0, "failed": 1,
                                       "counted": True}]


def test_a_watched_folder_holding_what_was_asked_is_said_but_not_counted():
    asked = summary(unchanged=10)
    got = with_startup(asked, ["/home/me/Pictures/2024"], done(RECONCILED))
    assert got["new"] == 0 and got["unchanged"] == 10
    assert [(e["path"], e["counted"]) for e in got["at_daemon_start"]] == [
        ("/home/me/Pictures", False)]


def test_folders_elsewhere_or_a_reconcile_that_did_not_finish_change_nothing():
    asked = summary(new=2, extracted=2)
    assert with_startup(asked, ["/srv/photos"], done(RECONCILED)) == asked
    assert with_startup(asked, ["/home/me"], Future()) == asked
    cancelled: Future[Any] = Future()
    cancelled.cancel()
    assert with_startup(asked, ["/home/me"], cancelled) == asked
    assert with_startup(asked, ["/home/me"], done(None)) == asked  # (skipped: disk full)
