"""An HTML page for reviewing duplicate groups before anything is deleted.

``write_report`` turns the ``dupes --json`` result into ``out`` plus a sibling folder
``<out stem>_files/`` of thumbnails (hard links to, or copies of, the freedesktop "large"
cache entries), referenced by relative URLs so that the page and its folder can be moved
together. The page is plain
HTML with inline CSS and one tiny script: no network, no fonts, light and dark themes,
and 5,000 groups still open quickly because off-screen groups are not laid out.
"""

from __future__ import annotations

import contextlib
import html
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
from findsimilar.safeio import read_head
from findsimilar.text import human_size
from findsimilar.thumbnails import thumbnail, thumbnail_uri

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


@dataclass(frozen=True)
class Preview:
    """A thumbnail copied next to the page: its relative URL and pixel size."""

    src: str
    width: int
    height: int


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
        _chmod_default(staging, 0o777)
        _replace_dir(staging, files_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _write_atomically(out, page)
    return out


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
    return Group(tier=tier, score=float(score) if score is not None else None, members=members)


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
    from concurrent.futures import ThreadPoolExecutor  # lazily: it imports logging

    # Thumbnails are made in threads: decoding and PNG compression release the GIL.
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="report-thumb") as pool:
        thumbs = list(pool.map(_safe_thumbnail, paths))
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


def _safe_thumbnail(path: str) -> Path | None:
    try:
        return thumbnail(path, "large")
    except OSError:  # one odd file or cache folder must not sink the whole report
        return None


def _copy_one(thumb: Path, folder: Path, name: str, url_dir: str) -> Preview | None:
    try:
        _link_or_copy(thumb, folder / name)
    except OSError:  # the cache entry vanished meanwhile (another program cleaned up)
        return None
    size = _png_size(folder / name)
    if size is None:
        return None
    return Preview(src=f"{_url_segment(url_dir)}/{name}", width=size[0], height=size[1])


def _link_or_copy(source: Path, dest: Path) -> None:
    # A hard link costs no space (thumbnails of 15,000 photos are ~1.5 GB) and stays
    # intact: the cache replaces entries by renaming new files over them, never in place.
    try:
        os.link(source, dest)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, dest)


def _png_size(png: Path) -> tuple[int, int] | None:
    head = read_head(png, 24)
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _url_segment(name: str) -> str:
    return quote(os.fsencode(name), safe="")


# --- the page ---------------------------------------------------------------------------


def _render_page(groups: list[Group], previews: Mapping[str, Preview], *, title: str,
                files_dir: Path) -> str:
    """The whole HTML document as a string."""
    parts = [_HEAD.format(title=_esc(title), css=_CSS), _summary(groups, title, files_dir)]
    parts += [_section(i, g, previews) for i, g in enumerate(groups, 1)]
    if not groups:
        parts.append('<p class="empty">No duplicate groups.</p>')
    parts.append(_FOOT.format(version=_esc(__version__), script=_SCRIPT))
    return "\n".join(parts)


def _summary(groups: list[Group], title: str, files_dir: Path) -> str:
    tiers = {t: sum(g.tier == t for g in groups) for t in TIER_LABELS}
    files = len(_paths(groups))
    removable = {m.path: m.size or 0 for g in groups if g.tier in DUPLICATE_TIERS
                 for m in g.members if not m.keep and not m.protected}
    reclaim = sum(removable.values())
    counts = " · ".join(
        f'<span class="badge tier-{t}">{n} {_esc(TIER_LABELS[t][0])}</span>'
        for t, n in tiers.items())
    made = time.strftime("%Y-%m-%d %H:%M")
    return (f'<header><h1>{_esc(title)}</h1>\n'
            f'<p class="counts"><strong>{len(groups)}</strong> groups: {counts}</p>\n'
            f'<p class="counts"><strong>{files}</strong> files · '
            f'<strong data-bytes="{reclaim}">{human_size(reclaim)}</strong> reclaimable '
            f'<span class="hint">(the copies in exact and near groups that are neither '
            f'kept nor in a reference folder)</span></p>\n'
            f'<p class="hint">Made {made}. Thumbnails are in '
            f'<code>{_esc(_display(files_dir.name))}/</code>: move it together with this page. '
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
            f'data-tier="{_esc(group.tier)}">\n'
            f'<h2><a href="#g{index}">Group {index}</a> '
            f'<span class="badge tier-{tier_class}">{_esc(label)}</span> '
            f'<span class="facts">{_esc(" · ".join(facts))}</span></h2>\n'
            f'<p class="hint">{_esc(explanation)}</p>\n<div class="cards">\n{cards}\n</div>\n'
            f'</section>')


def _card(member: Member, preview: Preview | None) -> str:
    classes = "card" + (" keep" if member.keep else "") + (" protected" if member.protected
                                                            else "")
    href = _esc(thumbnail_uri(member.path))
    folder, name = os.path.split(member.path)
    return (f'<article class="{classes}" data-path="{_esc(_display(member.path))}">\n'
            f'{_picture(preview, href, name)}\n<div class="badges">{_badges(member)}</div>\n'
            f'<a class="name" href="{href}">{_esc(_display(name))}</a>\n'
            f'<div class="folder">{_esc(_display(folder.rstrip("/") + "/"))}</div>\n'
            f'<ul class="meta">{_meta(member)}</ul>\n</article>')


def _picture(preview: Preview | None, href: str, name: str) -> str:
    if preview is None:
        return ('<div class="thumb"><div class="noimg" role="img" aria-label="no preview">'
                'no preview</div></div>')
    return (f'<a class="thumb" href="{href}" tabindex="-1"><img src="{_esc(preview.src)}" '
            f'width="{preview.width}" height="{preview.height}" loading="eager" '
            f'alt="{_esc(_display(name))}"></a>')


def _badges(member: Member) -> str:
    badges = []
    if member.keep:
        badges.append('<span class="badge keep">KEEP</span>')
    elif member.match:
        label = MATCH_LABELS.get(member.match, member.match)
        badges.append(f'<span class="badge match">{_esc(label)}</span>')
    if member.protected:
        badges.append('<span class="badge ref">reference folder</span>')
    return " ".join(badges)


def _meta(member: Member) -> str:
    items = []
    if member.width and member.height:
        items.append(f"{member.width}×{member.height}")
    items.append(human_size(member.size) if member.size is not None else "size unknown")
    if member.format:
        items.append(_esc(member.format))
    if member.mtime is not None:
        local = time.localtime(member.mtime)
        items.append(f'<time datetime="{time.strftime("%Y-%m-%dT%H:%M:%S", local)}">'
                     f'{time.strftime("%Y-%m-%d %H:%M", local)}</time>')
    return "".join(f"<li>{item}</li>" for item in items)


def _display(text: str) -> str:
    # File names that are not valid UTF-8 arrive with surrogate escapes; show U+FFFD.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


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


def _replace_dir(new: Path, dest: Path) -> None:
    """Put ``new`` in place of ``dest``: a directory cannot be renamed over a non-empty
    one, so the old one is first moved aside and then deleted."""
    if not dest.exists():
        os.rename(new, dest)
        return
    _check_ours(dest)
    old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old."))
    os.rename(dest, old / dest.name)
    os.rename(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _chmod_default(Path(tmp), 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _chmod_default(path: Path, base: int) -> None:
    # mkstemp/mkdtemp create private (0600/0700) entries; the page should get the
    # permissions any new file of the user gets.
    path.chmod(base & ~_umask())


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


_HEAD = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="generator" content="findsimilar">
<title>{title}</title>
<style>{css}</style>
</head>
<body>"""

_FOOT = """</main>
<footer>Made by findsimilar {version}. Nothing is deleted by this page.</footer>
<script>{script}</script>
</body>
</html>
"""

_CSS = """
:root { --bg:#fafafa; --fg:#1d1d1f; --muted:#666; --card:#fff; --line:#d6d6d6;
  --keep:#1a7f37; --exact:#b42318; --near:#b54708; --similar:#175cd3; --ref:#6941c6; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#161618; --fg:#ececec; --muted:#a0a0a0; --card:#222226; --line:#3a3a40;
    --keep:#3fb950; --exact:#f97066; --near:#fdb022; --similar:#84adff; --ref:#b692f6; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 1rem 1.5rem 3rem; background: var(--bg); color: var(--fg);
  font: 14px/1.4 system-ui, sans-serif; }
h1 { font-size: 1.5rem; margin: 0 0 .5rem; }
h2 { font-size: 1.1rem; margin: 0; display: flex; flex-wrap: wrap; gap: .5rem;
  align-items: center; }
h2 a { color: inherit; text-decoration: none; }
.hint, .facts, .folder, .meta { color: var(--muted); }
.hint { margin: .25rem 0 .75rem; }
.group { border-top: 1px solid var(--line); padding: 1rem 0;
  content-visibility: auto; contain-intrinsic-size: auto 420px; }
.cards { display: grid; gap: 1rem; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); }
.card { background: var(--card); border: 2px solid var(--line); border-radius: 8px;
  padding: .6rem; min-width: 0; }
.card.keep { border: 3px solid var(--keep); }
.card.protected { outline: 2px dashed var(--ref); outline-offset: 2px; }
.thumb { display: flex; align-items: center; justify-content: center; height: 256px;
  margin-bottom: .5rem; }
.thumb img { max-width: 100%; max-height: 256px; width: auto; height: auto;
  background: repeating-conic-gradient(#8883 0 25%, transparent 0 50%) 0 0 / 16px 16px; }
.noimg { width: 100%; height: 100%; display: flex; align-items: center; justify-content: center;
  border: 2px dashed var(--line); border-radius: 6px; color: var(--muted); }
.name { display: block; font-weight: 600; color: var(--fg); white-space: pre-wrap;
  overflow-wrap: anywhere; }
.folder { font-size: .85rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.meta { list-style: none; padding: 0; margin: .4rem 0 0; display: flex; flex-wrap: wrap;
  gap: .2rem .8rem; font-size: .85rem; }
.badges { min-height: 1.4rem; margin-bottom: .3rem; }
.badge { display: inline-block; border-radius: 999px; padding: .05rem .55rem; font-size: .8rem;
  font-weight: 600; border: 1px solid currentColor; }
.badge.keep { background: var(--keep); border-color: var(--keep); color: #fff; }
.badge.match { color: var(--muted); }
.badge.ref { color: var(--ref); }
.tier-exact { color: var(--exact); } .tier-near { color: var(--near); }
.tier-similar { color: var(--similar); } .tier-other { color: var(--muted); }
footer { margin-top: 2rem; color: var(--muted); }
"""

# After every picture has loaded or failed: record the counts on <body> (headless
# browsers and tests read them) and swap broken pictures, e.g. a page moved without
# its folder, for the "no preview" box.
_SCRIPT = """
addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter((i) => !(i.complete && i.naturalWidth > 0));
  document.body.dataset.imagesLoaded = imgs.length - broken.length;
  document.body.dataset.imagesBroken = broken.length;
  for (const img of broken) {
    const box = document.createElement("div");
    box.className = "noimg";
    box.textContent = "no preview (thumbnail missing)";
    img.replaceWith(box);
  }
});
"""

