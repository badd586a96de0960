"""What the self-check (``service.selfcheck``) reads and keeps in the store: a sample of
the indexed photos, the same-picture verdicts it may count as found, and its runs.

Runs are kept as JSON in the ``settings`` table (the last ``KEEP``, newest last): a few
KB rewritten once a day, which survive restarts with no table of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from findsimilar.daemon.storage.pathtext import to_path
from findsimilar.daemon.storage.store import Store

__all__ = ["KEEP", "Sampled", "hashes_of", "record_run", "runs", "sample"]

KEY = "self_check_runs"
KEEP = 20


@dataclass(frozen=True)
class Sampled:
    """One indexed photo: the feature id its vector has in the index, its content hash,
    and one of its files (the first by path)."""

    feature_id: int
    content_hash: str
    path: str


def sample(store: Store, extractor: str, count: int, seed: int) -> list[Sampled]:
    """Up to ``count`` distinct indexed pictures of ``extractor``, the same ones for the
    same ``seed`` and library. One pass over the features and a sort (1.7-3.9 s at 1M
    photos on 2 busy cores, once a day): the order is a multiplicative hash of the
    feature id, not SQLite's unseeded ``random()``."""
    rows = store.db.execute(
        "select x.id, x.content_hash, min(f.path) from features x join files f "
        "on f.content_hash = x.content_hash and f.status = 'ok' where x.extractor = ? "
        "group by x.id order by ((x.id + ?) * 2654435761) % 4294967311, x.id limit ?",
        [extractor, seed % 1_000_003, count]).fetchall()
    return [Sampled(int(fid), digest, to_path(path)) for fid, digest, path in rows]


def hashes_of(store: Store, feature_ids: Iterable[int]) -> dict[int, str]:
    """The content hash of each feature id (unknown ids left out)."""
    ids = list(feature_ids)
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    return {int(i): h for i, h in store.db.execute(
        f"select id, content_hash from features where id in ({marks})", ids)}


def runs(store: Store) -> list[dict[str, Any]]:
    """The runs kept, oldest first (none if the value cannot be read)."""
    text = store.get_setting(KEY)
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def record_run(store: Store, run: dict[str, Any]) -> None:
    """Keep ``run`` as the newest (the oldest beyond ``KEEP`` are dropped)."""
    kept = [*runs(store), run][-KEEP:]
    store.set_setting(KEY, json.dumps(kept, separators=(",", ":")))
