"""The results page of ``findsimilar show``, and its folder of ranked symlinks.

``write_results`` writes into one folder:

* ``index.html``: per query, the query picture beside its ranked matches (thumbnail,
  rank, score, duplicate badge, name and folder; a click opens the file);
* ``thumbs/<md5>.png``: hard links to (or copies of) the freedesktop "large" thumbnails,
  named like the cache entries, so the page works offline and can be moved with them;
* ``links/``: ``01 0.973 beach-edited.jpg`` -> the real file, rank first so that file
  managers sort them (one subfolder per query when there are several).

A page for the same folder is replaced atomically: new thumbnails are added under
their own names, the page is renamed over the old one, and only then are thumbnails
the new page does not use removed. The look and the file writing are shared with the
duplicates review (``common.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
from findsimilar.thumbnails import thumbnail_uri

__all__ = ["QueryView", "ResultView", "link_name", "prune_old_results", "write_results"]

TIER_BADGES = {"exact": "exact copy", "near": "near duplicate"}
PAGE_NAME = "index.html"
_THUMB_FILE = re.compile(r"[0-9a-f]{32}\.png")
_NAME_MAX = 255  # bytes in one file name on Linux file systems


@dataclass
class ResultView:
    """One match as the page and the links folder show it."""

    rank: int
    path: str
    score: float
    tier: str  # "exact", "near" or "similar"
    link: str | None = None  # set by write_results


@dataclass
class QueryView:
    query: str
    results: list[ResultView] = field(default_factory=list)
    error: str | None = None
    links_dir: str | None = None  # set by write_results


def write_results(queries: Sequence[QueryView], out: Path) -> Path:
    """Write the page, its thumbnails and the links folder into ``out`` (created if
    needed; a previous page there is replaced). Sets ``link`` on every result and
    ``links_dir`` on every answered query. Returns the page's absolute path.

    Raises FileExistsError if ``out/links`` holds anything but symlinks (it is never
    deleted then), and OSError if the files cannot be written.
    """
    out = Path(os.path.abspath(out))
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        _check_links_dir(out / "links")
        previews = _add_thumbnails(queries, out / "thumbs")
        _replace_links(queries, out / "links")
        page = out / PAGE_NAME
        write_atomic(page, _render(queries, previews, out))
        _remove_unused_thumbnails(out / "thumbs", {p.src for p in previews.values()})
    return page


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Two runs for the same queries (a double click) take turns on the folder."""
    import fcntl

    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- thumbnails -------------------------------------------------------------------------


def _add_thumbnails(queries: Sequence[QueryView], folder: Path) -> dict[str, Preview]:
    """Link each picture's cached thumbnail into ``folder`` under the cache's own name
    (md5 of the file's URI); returns the previews by path, without unthumbnailable ones."""
    paths = list(dict.fromkeys(
        p for q in queries if q.error is None for p in [q.query, *(r.path for r in q.results)]))
    thumbs = thumbnails_of(paths, "show-thumb")
    folder.mkdir(exist_ok=True)
    previews: dict[str, Preview] = {}
    for path, thumb in zip(paths, thumbs, strict=True):
        preview = _place_thumbnail(thumb, folder) if thumb is not None else None
        if preview is not None:
            previews[path] = preview
    return previews


def _place_thumbnail(thumb: Path, folder: Path) -> Preview | None:
    dest = folder / thumb.name
    tmp = folder / f".{thumb.name}.{os.getpid()}.tmp"
    try:
        if not _same_file(thumb, dest):
            link_or_copy(thumb, tmp)
            os.replace(tmp, dest)  # the old page keeps a whole picture until it is replaced
        size = png_size(dest)
    except OSError:  # the cache entry vanished meanwhile (another program cleaned up)
        size = None
    finally:
        # Also after a rename between two links of one file, which does nothing (POSIX).
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    if size is None:
        return None
    return Preview(src=f"thumbs/{thumb.name}", width=size[0], height=size[1])


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _remove_unused_thumbnails(folder: Path, used: set[str]) -> None:
    for entry in folder.iterdir():
        if _THUMB_FILE.fullmatch(entry.name) and f"thumbs/{entry.name}" not in used:
            with contextlib.suppress(OSError):
                entry.unlink()


# --- the ranked links -------------------------------------------------------------------


def link_name(rank: int, width: int, score: float | None, path: str) -> str:
    """``01 0.973 beach.jpg``: zero-padded rank, score, the file's name; the name is
    shortened (its extension kept) to fit the 255-byte limit of one file name."""
    prefix = f"{rank:0{width}d} " + (f"{score:.3f} " if score is not None else "")
    stem, ext = os.path.splitext(os.path.basename(path.rstrip("/")) or "photo")
    if len(os.fsencode(ext)) > 32:
        stem, ext = stem + ext, ""
    while stem and len(os.fsencode(prefix + stem + ext)) > _NAME_MAX:
        stem = stem[:-1]
    return prefix + stem + ext


def _replace_links(queries: Sequence[QueryView], dest: Path) -> None:
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".links."))
    try:
        width = len(str(len(queries)))
        for i, query in enumerate(queries, 1):  # numbered as on the page
            if query.error is not None:
                continue
            sub = "" if len(queries) == 1 else link_name(i, width, None, query.query)
            _make_links(query, staging / sub if sub else staging, dest / sub if sub else dest)
        make_folder_default(staging)
        swap_dir(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _make_links(query: QueryView, folder: Path, final: Path) -> None:
    folder.mkdir(exist_ok=True)
    width = max(2, len(str(len(query.results))))
    for result in query.results:
        name = link_name(result.rank, width, result.score, result.path)
        os.symlink(result.path, folder / name)
        result.link = str(final / name)
    query.links_dir = str(final)


def _check_links_dir(folder: Path) -> None:
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise FileExistsError(f"{folder} exists and is not a folder of result links")
    if folder.is_dir() and not _only_links(folder):
        raise FileExistsError(f"{folder} holds files that are not result links; move it "
                              "away or choose another --out folder")


def _only_links(folder: Path) -> bool:
    for entry in folder.iterdir():
        if entry.is_symlink():
            continue
        if not entry.is_dir() or not all(e.is_symlink() for e in entry.iterdir()):
            return False
    return True


# --- the result cache -------------------------------------------------------------------


def prune_old_results(folder: Path, keep: int, pattern: re.Pattern[str]) -> None:
    """Delete all but the ``keep`` newest result folders in ``folder`` (by the time of
    their page); only folders whose names match ``pattern`` are touched."""
    found = []
    for entry in folder.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            try:
                found.append(((entry / PAGE_NAME).stat().st_mtime, entry))
            except OSError:
                found.append((entry.stat().st_mtime, entry))
    for _, entry in sorted(found, reverse=True)[keep:]:
        shutil.rmtree(entry, ignore_errors=True)


# --- the page ---------------------------------------------------------------------------


def _render(queries: Sequence[QueryView], previews: dict[str, Preview], out: Path) -> str:
    answered = [q for q in queries if q.error is None]
    if len(queries) == 1:
        title = f"findsimilar: photos like {display(os.path.basename(queries[0].query))}"
    else:
        title = f"findsimilar: photos like {len(queries)} queries"
    parts = [PAGE_HEAD.format(title=esc(title), css=PAGE_CSS + _CSS),
             _header(title, queries, answered, out)]
    parts += [_section(i, q, previews) for i, q in enumerate(queries, 1)]
    parts.append(_FOOT.format(version=esc(__version__), script=PAGE_SCRIPT))
    return "\n".join(parts)


def _header(title: str, queries: Sequence[QueryView], answered: list[QueryView],
            out: Path) -> str:
    failed = len(queries) - len(answered)
    errors = f' · <strong class="error">{failed} failed</strong>' if failed else ""
    links = esc(thumbnail_uri(out / "links"))
    return (f'<header><h1>{esc(title)}</h1>\n'
            f'<p class="hint">Made {time.strftime("%Y-%m-%d %H:%M")}. {len(answered)} of '
            f'{len(queries)} queries answered{errors}. Click a picture or name to open the '
            f'file. The matches are also in the <a class="links" href="{links}">'
            f'folder of ranked links</a>.</p></header>\n<main>')


def _section(index: int, query: QueryView, previews: dict[str, Preview]) -> str:
    folder, name = os.path.split(query.query)
    href = esc(thumbnail_uri(query.query))
    head = (f'<section class="query" id="q{index}" data-query="{esc(display(query.query))}"'
            f'{" data-error" if query.error else ""}>\n<div class="query-head">\n'
            f'{picture(previews.get(query.query), href, name)}\n<div>\n'
            f'<h2><a href="#q{index}">Query {index}</a> '
            f'<a class="name" href="{href}">'
            f'{esc(display(name))}</a></h2>\n'
            f'<div class="folder">{esc(display(folder.rstrip("/") + "/"))}</div>\n')
    if query.error is not None:
        return head + (f'<p class="error">{esc(display(query.error))}</p>\n</div>\n</div>\n'
                       '</section>')
    cards = "\n".join(_card(r, previews.get(r.path)) for r in query.results)
    body = cards or '<p class="empty">No similar photos.</p>'
    return head + (f'<p class="facts">{esc(_facts(query))}</p>\n</div>\n</div>\n'
                   f'<div class="cards">\n{body}\n</div>\n</section>')


def _facts(query: QueryView) -> str:
    facts = [f"{len(query.results)} match{'es' if len(query.results) != 1 else ''}"]
    for tier, label in TIER_BADGES.items():
        n = sum(r.tier == tier for r in query.results)
        if n:
            facts.append(f"{n} {label}{'s' if n > 1 else ''}")
    if query.results:
        facts.append(f"best score {query.results[0].score:.3f}")
    return " · ".join(facts)


def _card(result: ResultView, preview: Preview | None) -> str:
    folder, name = os.path.split(result.path)
    badge = TIER_BADGES.get(result.tier)
    badge_html = f' <span class="badge tier-{result.tier}">{badge}</span>' if badge else ""
    return (f'<article class="card match-{esc(result.tier)}" data-rank="{result.rank}" '
            f'data-tier="{esc(result.tier)}" data-score="{result.score:.6f}" '
            f'data-path="{esc(display(result.path))}">\n'
            f'{picture(preview, esc(thumbnail_uri(result.path)), name)}\n'
            f'<div class="badges"><span class="rank">#{result.rank}</span> '
            f'<span class="score" title="cosine similarity">{result.score:.3f}</span>'
            f'{badge_html}</div>\n'
            f'<a class="name" href="{esc(thumbnail_uri(result.path))}">'
            f'{esc(display(name))}</a>\n'
            f'<div class="folder">{esc(display(folder.rstrip("/") + "/"))}</div>\n</article>')


_FOOT = """</main>
<footer>Made by findsimilar {version}.</footer>
<script>{script}</script>
</body>
</html>
"""

_CSS = """
.query { border-top: 1px solid var(--line); padding: 1rem 0; }
.query-head { display: grid; grid-template-columns: 256px 1fr; gap: 1rem; align-items: start;
  margin-bottom: 1rem; }
.query-head .thumb { width: 256px; }
.card.match-exact { border-color: var(--exact); }
.card.match-near { border-color: var(--near); }
.badge.tier-exact, .badge.tier-near { color: #fff; }
.badge.tier-exact { background: var(--exact); border-color: var(--exact); }
.badge.tier-near { background: var(--near); border-color: var(--near); }
.rank { font-weight: 700; margin-right: .3rem; }
.score { font-variant-numeric: tabular-nums; color: var(--muted); margin-right: .3rem; }
.error { color: var(--exact); font-weight: 600; white-space: pre-wrap; }
.empty { color: var(--muted); }
"""

