"""An HTML page for reviewing duplicate groups before anything is deleted.

``write_report`` turns the ``dupes --json`` result into ``out`` plus a sibling folder
``<out stem>_files/`` of thumbnails (hard links to, or copies of, the freedesktop "large"
cache entries), referenced by relative URLs so that the page and its folder can be moved
together. The page is plain
HTML with inline CSS and one tiny script: no network, no fonts, light and dark themes,
and 5,000 groups still open quickly because off-screen groups are not laid out. It also
carries the listing it shows, as a JSON data block (``embedded_plan``), so that
`findsimilar dupes apply PAGE` acts on exactly what was reviewed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from findsimilar import __version__
from findsimilar.atomic import write_atomic
from findsimilar.cli.pages.common import (
    PAGE_CSS,
    PAGE_HEAD,
    PAGE_SCRIPT,
    Preview,
    display,
    esc,
    link_or_copy,
    make_folder_default,
    picture,
    png_size,
    swap_dir,
    thumbnails_of,
)
from findsimilar.text import human_size
from findsimilar.thumbnails import thumbnail_uri

__all__ = ["human_size", "write_report"]  # human_size: from findsimilar.text

# Tiers whose extra copies are safe to remove; "similar" pictures are different photos.
DUPLICATE_TIERS = ("exact", "near")
TIER_LABELS = {
    "exact": ("exact duplicates", "identical files"),
    "near": ("near duplicates", "the same picture, resized, re-encoded or lightly edited"),
    "similar": ("similar — not duplicates", "different pictures that look alike"),
}
MATCH_LABELS = {"exact": "exact copy", "near": "near duplicate", "similar": "similar"}
# Names of the thumbnails we copy: anything else in the folder is not ours to delete.
_OUR_FILE = re.compile(r"\d{4,}\.png")


@dataclass(frozen=True)
class Member:
    """One file of a group, as the page shows it (unknown facts are None)."""

    path: str
    size: int | None
    mtime: float | None
    width: int | None
    height: int | None
    format: str | None
    match: str
    keep: bool
    protected: bool


@dataclass(frozen=True)
class Group:
    tier: str
    score: float | None
    members: list[Member]
    reason: str | None = None  # why the keeper was chosen


PLAN_ID = "findsimilar-plan"


def write_report(result: Mapping[str, Any], out: str | os.PathLike[str], *,
                 title: str = "findsimilar: duplicates") -> Path:
    """Write the review page for a ``dupes`` result to ``out`` and its thumbnails to
    ``<out stem>_files/``; both are replaced atomically. Returns ``out`` as an
    absolute path.

    Raises FileExistsError if ``<out stem>_files`` exists and holds files the report
    did not make (they are never deleted), and OSError if the files cannot be written.
    """
    out = Path(out).absolute()
    files_dir = out.with_name(out.stem + "_files")
    _check_ours(files_dir)
    groups = [_group(g) for g in result.get("groups", [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.stem}_files."))
    try:
        previews = _copy_previews(_paths(groups), staging, files_dir.name)
        page = _render_page(groups, previews, title=title, files_dir=files_dir)
        page = page.replace("</body>", embedded_plan(result) + "</body>", 1)
        make_folder_default(staging)
        if files_dir.exists():
            _check_ours(files_dir)  # again: something may have been put there meanwhile
        swap_dir(staging, files_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_atomic(out, page)
    return out


def embedded_plan(result: Mapping[str, Any]) -> str:
    """The listing as the page shows it, for `findsimilar dupes apply PAGE`: a JSON data
    block (not run). ``<``, ``>`` and ``&`` are JSON escapes in it (as Django's json_script
    writes them), so no file name can end the block early or read as markup."""
    data = json.dumps(dict(result), ensure_ascii=True, separators=(",", ":"))
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{PLAN_ID}">{data}</script>\n'


# --- reading the result -----------------------------------------------------------------


def _group(raw: Mapping[str, Any]) -> Group:
    tier = str(raw.get("tier") or "similar")
    keeper = raw.get("keep")
    if raw.get("members"):
        members = [_member(m, keeper) for m in raw["members"]]
    else:  # results written before "members" existed: only paths, facts from the disk
        files = list(raw.get("files") or [])
        keeper = keeper or (files[0] if files else None)
        members = [_member_from_disk(p, keep=p == keeper, tier=tier) for p in files]
    score = raw.get("score")
    return Group(tier=tier, score=float(score) if score is not None else None, members=members,
                 reason=str(raw["reason"]) if raw.get("reason") else None)


def _member(raw: Mapping[str, Any], keeper: str | None) -> Member:
    path = str(raw["path"])
    match = str(raw.get("match") or "")
    return Member(path=path, size=_int(raw.get("size")), mtime=_float(raw.get("mtime")),
                  width=_int(raw.get("width")), height=_int(raw.get("height")),
                  format=str(raw["format"]) if raw.get("format") else None, match=match,
                  keep=match == "keep" or path == keeper, protected=bool(raw.get("protected")))


def _member_from_disk(path: str, *, keep: bool, tier: str) -> Member:
    try:
        st = os.stat(path)
        size, mtime = st.st_size, st.st_mtime
    except OSError:
        size, mtime = None, None
    return Member(path=path, size=size, mtime=mtime, width=None, height=None, format=None,
                  match="keep" if keep else tier, keep=keep, protected=False)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _paths(groups: Iterable[Group]) -> list[str]:
    return list(dict.fromkeys(m.path for g in groups for m in g.members))


# --- thumbnails -------------------------------------------------------------------------


def _copy_previews(paths: list[str], folder: Path, url_dir: str) -> dict[str, Preview]:
    """Copy each file's "large" freedesktop thumbnail into ``folder`` as 0001.png, ...;
    files without a thumbnail are left out."""
    thumbs = thumbnails_of(paths, "report-thumb")
    previews: dict[str, Preview] = {}
    copied: dict[Path, Preview] = {}  # a file listed twice shares one copy
    for path, thumb in zip(paths, thumbs, strict=True):
        if thumb is None:
            continue
        if thumb not in copied:
            preview = _copy_one(thumb, folder, f"{len(copied) + 1:04d}.png", url_dir)
            if preview is None:
                continue
            copied[thumb] = preview
        previews[path] = copied[thumb]
    return previews


def _copy_one(thumb: Path, folder: Path, name: str, url_dir: str) -> Preview | None:
    try:
        link_or_copy(thumb, folder / name)
    except OSError:  # the cache entry vanished meanwhile (another program cleaned up)
        return None
    size = png_size(folder / name)
    if size is None:
        return None
    return Preview(src=f"{_url_segment(url_dir)}/{name}", width=size[0], height=size[1])


def _url_segment(name: str) -> str:
    return quote(os.fsencode(name), safe="")


# --- the page ---------------------------------------------------------------------------


def _render_page(groups: list[Group], previews: Mapping[str, Preview], *, title: str,
                files_dir: Path) -> str:
    """The whole HTML document as a string."""
    parts = [PAGE_HEAD.format(title=esc(title), css=PAGE_CSS), _summary(groups, title, files_dir)]
    parts += [_section(i, g, previews) for i, g in enumerate(groups, 1)]
    if not groups:
        parts.append('<p class="empty">No duplicate groups.</p>')
    parts.append(_FOOT.format(version=esc(__version__), script=PAGE_SCRIPT))
    return "\n".join(parts)


def _summary(groups: list[Group], title: str, files_dir: Path) -> str:
    tiers = {t: sum(g.tier == t for g in groups) for t in TIER_LABELS}
    files = len(_paths(groups))
    removable = {m.path: m.size or 0 for g in groups if g.tier in DUPLICATE_TIERS
                 for m in g.members if not m.keep and not m.protected}
    reclaim = sum(removable.values())
    counts = " · ".join(
        f'<span class="badge tier-{t}">{n} {esc(TIER_LABELS[t][0])}</span>'
        for t, n in tiers.items())
    made = time.strftime("%Y-%m-%d %H:%M")
    return (f'<header><h1>{esc(title)}</h1>\n'
            f'<p class="counts"><strong>{len(groups)}</strong> groups: {counts}</p>\n'
            f'<p class="counts"><strong>{files}</strong> files · '
            f'<strong data-bytes="{reclaim}">{human_size(reclaim)}</strong> reclaimable '
            f'<span class="hint">(the copies in exact and near groups that are neither '
            f'kept nor in a reference folder)</span></p>\n'
            f'<p class="hint">Made {made}. Thumbnails are in '
            f'<code>{esc(display(files_dir.name))}/</code>: move it together with this page. '
            f'Click a picture or name to open the file.</p></header>\n<main>')


def _section(index: int, group: Group, previews: Mapping[str, Preview]) -> str:
    label, explanation = TIER_LABELS.get(group.tier, (group.tier, ""))
    facts = [f"{len(group.members)} files"]
    if group.score is not None:
        facts.append(f"lowest similarity {group.score:.3f}")
    if group.tier in DUPLICATE_TIERS:
        reclaim = sum(m.size or 0 for m in group.members if not m.keep and not m.protected)
        facts.append(f"{human_size(reclaim)} reclaimable")
    cards = "\n".join(_card(m, previews.get(m.path)) for m in group.members)
    tier_class = _css_class(group.tier)
    return (f'<section class="group" id="g{index}" '
            f'data-tier="{esc(group.tier)}">\n'
            f'<h2><a href="#g{index}">Group {index}</a> '
            f'<span class="badge tier-{tier_class}">{esc(label)}</span> '
            f'<span class="facts">{esc(" · ".join(facts))}</span></h2>\n'
            f'<p class="hint">{esc(explanation)}</p>\n{_reason(group)}<div class="cards">\n'
            f'{cards}\n</div>\n'
            f'</section>')


def _reason(group: Group) -> str:
    """Why the keeper was chosen (duplicate tiers only: nothing is kept among similar)."""
    if not group.reason or group.tier not in DUPLICATE_TIERS:
        return ""
    return f'<p class="reason">Kept: {esc(group.reason)}</p>\n'


def _card(member: Member, preview: Preview | None) -> str:
    classes = "card" + (" keep" if member.keep else "") + (" protected" if member.protected
                                                            else "")
    href = esc(thumbnail_uri(member.path))
    folder, name = os.path.split(member.path)
    return (f'<article class="{classes}" data-path="{esc(display(member.path))}">\n'
            f'{picture(preview, href, name)}\n<div class="badges">{_badges(member)}</div>\n'
            f'<a class="name" href="{href}">{esc(display(name))}</a>\n'
            f'<div class="folder">{esc(display(folder.rstrip("/") + "/"))}</div>\n'
            f'<ul class="meta">{_meta(member)}</ul>\n</article>')


def _badges(member: Member) -> str:
    badges = []
    if member.keep:
        badges.append('<span class="badge keep">KEEP</span>')
    elif member.match:
        label = MATCH_LABELS.get(member.match, member.match)
        badges.append(f'<span class="badge match">{esc(label)}</span>')
    if member.protected:
        badges.append('<span class="badge ref">reference folder</span>')
    return " ".join(badges)


def _meta(member: Member) -> str:
    items = []
    if member.width and member.height:
        items.append(f"{member.width}×{member.height}")
    items.append(human_size(member.size) if member.size is not None else "size unknown")
    if member.format:
        items.append(esc(member.format))
    if member.mtime is not None:
        local = time.localtime(member.mtime)
        items.append(f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%S", local)}">'
                     f'{time.strftime("%Y-%m-%d %H:%M", local)}</time>')
    return "".join(f"<li>{item}</li>" for item in items)


def _css_class(tier: str) -> str:
    return tier if tier in TIER_LABELS else "other"


# --- writing files ----------------------------------------------------------------------


def _check_ours(folder: Path) -> None:
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise FileExistsError(f"{folder} exists and is not a thumbnail folder of a report")
    if folder.is_dir() and not all(_OUR_FILE.fullmatch(p.name) for p in folder.iterdir()):
        raise FileExistsError(
            f"{folder} holds files this report did not make; move it away or choose "
            "another name for the report")




_FOOT = """</main>
<footer>Made by findsimilar {version}. Nothing is deleted by this page.</footer>
<script>{script}</script>
</body>
</html>
"""
