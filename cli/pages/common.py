"""What the two HTML pages share (the duplicates review of ``dupes --html`` and the
results page of ``show``): one look (head, style, the script that marks broken
pictures), thumbnails copied next to the page, escaping, and how files and folders are
put in place. Stdlib only (thumbnails import Pillow only when one must be made).
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from findsimilar.atomic import new_file_mode
from findsimilar.safeio import read_head
from findsimilar.thumbnails import thumbnail

__all__ = ["PAGE_CSS", "PAGE_HEAD", "PAGE_SCRIPT", "Preview", "display", "esc",
           "link_or_copy", "make_folder_default", "picture", "png_size", "swap_dir",
           "thumbnails_of"]


@dataclass(frozen=True)
class Preview:
    """A thumbnail copied next to the page: its relative URL and pixel size."""

    src: str
    width: int
    height: int


# --- thumbnails -------------------------------------------------------------------------


def thumbnails_of(paths: list[str], thread_name: str) -> list[Path | None]:
    """Each file's "large" freedesktop thumbnail (made if missing), in the order of
    ``paths``; None where there is none."""
    from concurrent.futures import ThreadPoolExecutor  # lazily: it imports logging

    # Thumbnails are made in threads: decoding and PNG compression release the GIL.
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=thread_name) as pool:
        return list(pool.map(_safe_thumbnail, paths))


def _safe_thumbnail(path: str) -> Path | None:
    try:
        return thumbnail(path, "large")
    except OSError:  # one odd file or cache folder must not sink the whole page
        return None


def link_or_copy(source: Path, dest: Path) -> None:
    """Put ``source`` at ``dest``: a hard link, else (another file system) a copy."""
    # A hard link costs no space (thumbnails of 15,000 photos are ~1.5 GB) and stays
    # intact: the cache replaces entries by renaming new files over them, never in place.
    try:
        os.link(source, dest)
    except OSError:  # another file system, or one without hard links
        shutil.copyfile(source, dest)


def png_size(png: Path) -> tuple[int, int] | None:
    """The width and height in a PNG's header, or None if it is not a PNG."""
    head = read_head(png, 24)
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# --- markup -----------------------------------------------------------------------------


def picture(preview: Preview | None, href: str, name: str) -> str:
    """A card's picture: the thumbnail linking to the file, or a "no preview" box."""
    if preview is None:
        return ('<div class="thumb"><div class="noimg" role="img" aria-label="no preview">'
                'no preview</div></div>')
    return (f'<a class="thumb" href="{href}" tabindex="-1"><img src="{esc(preview.src)}" '
            f'width="{preview.width}" height="{preview.height}" loading="eager" '
            f'alt="{esc(display(name))}"></a>')


def display(text: str) -> str:
    """``text`` for showing: a file name that is not valid UTF-8 arrives with surrogate
    escapes, shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def esc(text: str) -> str:
    """``text`` escaped for HTML text and attribute values."""
    return html.escape(text, quote=True)


# --- writing files ----------------------------------------------------------------------


def make_folder_default(path: Path) -> None:
    """Give a folder made by ``mkdtemp`` (0700) the mode any new folder of the user gets."""
    path.chmod(new_file_mode(0o777))


def swap_dir(new: Path, dest: Path) -> None:
    """Put the folder ``new`` in place of ``dest``: a folder cannot be renamed over a
    non-empty one, so the old one is first moved aside, then deleted."""
    if not dest.exists():
        os.rename(new, dest)
        return
    old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old."))
    os.rename(dest, old / dest.name)
    os.rename(new, dest)
    shutil.rmtree(old, ignore_errors=True)


PAGE_HEAD = """<!doctype html>
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

PAGE_CSS = """
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
PAGE_SCRIPT = """
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

