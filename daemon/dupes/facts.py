"""The facts a keeper is chosen on, made sure of before any keeper is chosen.

A keeper is never chosen on unknown facts. The store keeps picture facts per content
(``storage.pictures``), learnt when a picture is indexed; content indexed by an older
version has only its sizes. So before keepers are chosen:

1. each picture of a group of different pictures whose facts are not known is decoded
   again (``Model.facts``, from any of its files; in the daemon, by the model worker) and
   its facts kept, once, ever; a picture none of whose files can be read leaves its
   group out of the listing, with the reason (``stats["left_out"]``);
2. where a group holds a lossless file and lossy ones of the same size, the lossy ones'
   pixel digests are computed (a full decode: only then, and kept), one at a time, the
   likeliest original first, until one equals the lossless file's: it is a conversion of
   that one (``keep.py``, rule ``original``).

Groups of byte-identical copies need neither: their files share one content, so no fact
can tell them apart.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING

from findsimilar.daemon.model.api import Model, Picture, PictureFacts
from findsimilar.daemon.storage.store import Store
from findsimilar.errors import FindSimilarError

if TYPE_CHECKING:
    from findsimilar.daemon.dupes.grouping import FileRow

__all__ = ["complete_facts", "left_out"]

log = logging.getLogger(__name__)


def complete_facts(store: Store, model: Model, groups: list[list[FileRow]],
                   should_stop: Callable[[], bool] = lambda: False) -> dict[str, str]:
    """Fill in the facts the keep rules need for the files of ``groups`` (each a group's
    files, of two or more contents), keeping what is learnt in ``store``. Returns the
    content hashes whose facts cannot be learnt, with the reason."""
    rows: dict[str, list[FileRow]] = {}
    for group in groups:
        for f in group:
            rows.setdefault(f.content_hash, []).append(f)
    unknown = {h: fs for h, fs in rows.items() if not fs[0].facts_known}
    failed = _learn(store, model, unknown, digest=False, should_stop=should_stop)
    tried = set(failed)
    while (wanted := {h: rows[h] for h in _digests_wanted(groups, tried)}) and \
            not should_stop():
        tried.update(wanted)
        tried.update(_learn(store, model, wanted, digest=True, should_stop=should_stop))
    return failed


def left_out(group: dict, failed: dict[str, str]) -> dict | None:
    """Why ``group`` (as listed) is left out: one of its pictures' facts cannot be
    learnt; None if it is not."""
    for m in group["members"]:
        if m["hash"] in failed:
            return {"tier": group["tier"], "files": group["files"],
                    "reason": f"the picture facts of {m['path']} cannot be read "
                              f"({failed[m['hash']]}): no keeper is chosen on unknown facts"}
    return None


def _digests_wanted(groups: Iterable[list[FileRow]], tried: set[str]) -> set[str]:
    """For each lossless member with a pixel digest that no lossy member of its group is
    known to share: the next lossy member of its size whose digest is to be computed (a
    full decode, so one at a time: the likeliest original first, of its colour and
    sharpness; a conversion has its original's pixels). None once all are known."""
    wanted = set()
    for group in groups:
        lossy = [f for f in group if f.lossless is False]
        known = {f.pixel_digest for f in lossy if f.pixel_digest}
        for f in group:
            if not (f.lossless and f.pixel_digest) or f.pixel_digest in known:
                continue
            todo = [m for m in lossy if m.pixel_digest is None and m.content_hash not in tried
                    and (m.width, m.height) == (f.width, f.height)]
            if todo:
                wanted.add(min(todo, key=lambda m: (m.colour != f.colour, abs(
                    (m.sharpness or 0.0) - (f.sharpness or 0.0)), m.content_hash)).content_hash)
    return wanted


def _learn(store: Store, model: Model, rows: dict[str, list[FileRow]], *, digest: bool,
           should_stop: Callable[[], bool]) -> dict[str, str]:
    """Decode each content of ``rows`` again for its facts; update its rows and the store.
    Returns the contents that could not be read, with the reason."""
    futures: dict[str, Future[PictureFacts | None]] = {
        h: model.facts(Picture(h, tuple(sorted(f.path for f in fs))), digest=digest)
        for h, fs in rows.items()}
    learnt: dict[str, PictureFacts] = {}
    failed: dict[str, str] = {}
    for h, future in futures.items():
        if should_stop():
            future.cancel()
            failed[h] = "the listing was stopped"
            continue
        try:
            facts = future.result()
        except (FindSimilarError, CancelledError) as exc:
            failed[h] = str(exc) or "the model was stopped"
            continue
        if facts is None:
            names = ", ".join(os.path.basename(f.path) for f in rows[h])
            failed[h] = f"none of its files can be decoded: {names}"
            continue
        learnt[h] = facts
    if learnt:
        store.save_picture_facts({h: facts.as_row() for h, facts in learnt.items()})
    for h, facts in learnt.items():
        for f in rows[h]:
            _take(f, facts)
    log.info("picture facts learnt again for %d pictures (%d unreadable)%s", len(learnt),
             len(failed), " with pixel digests" if digest else "")
    return failed


def _take(f: FileRow, facts: PictureFacts) -> None:
    row = facts.as_row()
    for name, value in row.items():
        if name == "pixel_digest" and value is None:
            continue
        setattr(f, name, value)
    f.facts_known = True
