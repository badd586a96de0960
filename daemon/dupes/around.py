"""The duplicate groups around a few files: what ``dupes --follow`` and the desktop
notification report when photos arrive.

A full listing (``grouping.find_duplicates``) reads every indexed file; when a photo
lands in a watched folder only its neighbourhood can have changed. So the scope is the
changed files, their byte-identical copies and their nearest neighbours above the
candidate threshold (the index's, no model call), and the listing is made over that
scope with the same rules and verdict cache as ``dupes``; only pairs with an arriving
picture get a new pixel check (pairs of the others count as the cache has them: the
background pre-check fills it). A group is reported as that neighbourhood sees it: a near
group whose other members are not neighbours of the new file may be listed in part
(``dupes`` lists it whole).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np

from findsimilar.daemon.dupes.grouping import NEIGHBOURS, DupesOptions, find_duplicates
from findsimilar.daemon.model.api import Model
from findsimilar.daemon.model.spec import ModelSpec
from findsimilar.daemon.storage.index import VectorIndex
from findsimilar.daemon.storage.store import Store

__all__ = ["MOST_AT_ONCE", "groups_around"]

# More changed pictures than this at once (a folder moved in) and one full listing is
# cheaper than a neighbourhood per picture.
MOST_AT_ONCE = 200


def groups_around(store: Store, index: VectorIndex, spec: ModelSpec, model: Model,
                  paths: Iterable[str], options: DupesOptions, *,
                  should_stop: Callable[[], bool] = lambda: False) -> list[dict]:
    """The groups (``options.tiers``) that hold an indexed file at or under ``paths``,
    in the index of the extractor ``spec`` (and with its cosine thresholds)."""
    mine = {str(f["path"]): str(f["content_hash"]) for f in store.ok_files(list(paths))
            if f["content_hash"]}
    if not mine:
        return []
    hashes = sorted(set(mine.values()))
    if len(hashes) > MOST_AT_ONCE:
        scope: list[str] = []  # everything
    else:
        ids = np.array(sorted(store.feature_ids(hashes, spec.id).values()), np.int64)
        near: set[int] = set(ids.tolist())  # their own: byte-identical copies elsewhere
        if len(ids) and len(index):  # one search for all of them
            scores, hits = index.search(store.vectors(ids, index.dim), NEIGHBOURS + 1)
            near.update(int(i) for s, i in zip(scores.ravel(), hits.ravel(), strict=True)
                        if i >= 0 and s >= spec.candidate_cosine)
        if should_stop():
            return []
        found = store.paths_for_features(sorted(near))
        scope = sorted({*mine, *(p for ps in found.values() for p in ps)})
    # Pixel checks only for pairs with an arriving picture; pairs of the others count as
    # the cache has them (the background pre-check fills it).
    listing = find_duplicates(store, spec, index.vectors,
                              replace(options, paths=scope, check_only=frozenset(hashes)),
                              model=model, should_stop=should_stop)
    if should_stop():
        return []
    return [g for g in listing["groups"] if not mine.keys().isdisjoint(g["files"])]
