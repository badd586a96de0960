"""What the daemon's start-up reconcile did, told to the `index` that started the daemon.

A CLI command that finds no daemon starts one, and the daemon reconciles its watched
folders (by default ~/Pictures) before it serves anything else: the user's first
`findsimilar index ~/Pictures` would then find every photo already indexed and report
"0 new, 93 unchanged", untrue from where the user stands. That `index` (the CLI says it
started the daemon) counts, as its own, what the start-up reconcile did in the folders
it asked for, and is told of a reconcile of a watched folder holding what it asked for
(counts that cover more than was asked: said beside the summary, not added to it).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from findsimilar.text import is_under

__all__ = ["with_startup"]

_ADDED = ("new", "changed", "moved", "removed", "extracted", "unsettled")


def with_startup(summary: dict[str, Any], asked: list[str],
                 startup: Future[Any]) -> dict[str, Any]:
    """``summary`` (of indexing the ``asked`` paths) with the start-up reconcile
    (``startup``: its result, {watched folder: summary}) of the folders at or below an
    asked path added in, and ``at_daemon_start``: one entry per watched folder that
    reconcile scanned at, below or above an asked path (``counted``: added in)."""
    done = _result(startup)
    counted = {root: s for root, s in done.items() if any(is_under(root, a) for a in asked)}
    holding = {root: s for root, s in done.items() if root not in counted
               and any(is_under(a, root) for a in asked)}
    if not counted and not holding:
        return summary
    out = dict(summary)
    for s in counted.values():
        for key in _ADDED:
            out[key] = out.get(key, 0) + s.get(key, 0)
        out["seconds"] = round(out.get("seconds", 0.0) + s.get("seconds", 0.0), 3)
    # Files indexed by the reconcile were found unchanged by the request; files that
    # failed in it were found "failed before" and not retried.
    seen = {f["path"] for f in out["failed"]}
    failed_then = [f for s in counted.values() for f in s["failed"] if f["path"] not in seen]
    out["failed"] = failed_then + out["failed"]
    out["still_failing"] = max(0, out["still_failing"] - len(failed_then))
    indexed_then = sum(s["new"] + s["changed"] + s["moved"] for s in counted.values())
    out["unchanged"] = max(0, out["unchanged"] - indexed_then)
    out["at_daemon_start"] = [_entry(root, s, True) for root, s in sorted(counted.items())] \
        + [_entry(root, s, False) for root, s in sorted(holding.items())]
    return out


def _result(startup: Future[Any]) -> dict[str, dict[str, Any]]:
    """The reconcile's summaries by folder; none if it did not finish (the daemon is
    stopping, the disk is full, it failed: the request's own summary says the rest)."""
    if not startup.done() or startup.cancelled() or startup.exception() is not None:
        return {}
    return startup.result() or {}


def _entry(root: str, s: dict[str, Any], counted: bool) -> dict[str, Any]:
    return {"path": root, "new": s["new"], "changed": s["changed"], "moved": s["moved"],
            "removed": s["removed"], "failed": len(s["failed"]), "counted": counted}
