"""The duplicates review page, opened in a real headless Chromium: it renders, every
preview loads, the keeper is marked, odd file names survive, links open the files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pillow_heif
import pytest
from PIL import Image, ImageStat

from findsimilar.cli.pages.report import write_report
from findsimilar.thumbnails import thumbnail_uri

from ..conftest import shared

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian `chromium` is not on PATH (apt-get install chromium): the report is "
           "checked in a real browser")
TRICKY_NAME = "Storm <copy> & \"best\" 'one' ü ☃.jpg"
NEWLINE_NAME = "two\nlines.jpg"


# --- a small DOM, to ask the page what a user would see -------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)  # elements and text, in order

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find_all(self, tag: str | None = None, cls: str | None = None) -> Iterator[Node]:
        for child in self.children:
            if isinstance(child, str):
                continue
            if (tag is None or child.tag == tag) and (cls is None or cls in child.classes):
                yield child
            yield from child.find_all(tag, cls)

    def find(self, tag: str | None = None, cls: str | None = None) -> Node:
        found = list(self.find_all(tag, cls))
        assert len(found) == 1, f"expected one <{tag} class={cls}>, found {len(found)}"
        return found[0]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


class TreeBuilder(HTMLParser):
    VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        while len(self.stack) > 1 and self.stack.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


# --- a report built from real photos --------------------------------------------------------


@dataclass
class Built:
    result: dict
    out: Path
    with_preview: int  # members whose picture can be shown
    root: Path


def member(path: Path, match: str, *, protected: bool = False) -> dict:
    st = path.stat()
    width: int | None = None
    height: int | None = None
    fmt: str | None = None
    try:
        with Image.open(path) as im:
            width, height, fmt = im.width, im.height, im.format
    except Exception:  # the damaged file: the engine knows no size or format either
        pass
    return {"path": str(path), "hash": f"h{st.st_ino}", "size": st.st_size, "mtime": st.st_mtime,
            "width": width, "height": height, "format": fmt, "match": match,
            "protected": protected}


def group(tier: str, score: float | None, members: list[dict]) -> dict:
    return {"tier": tier, "keep": members[0]["path"], "files": [m["path"] for m in members],
            "score": score, "members": members}


def place(rel: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(shared(rel), dest)
    return dest


def build_photos(root: Path) -> dict:
    """Real photos in the shapes a library has: JPEG, PNG, HEIC, a damaged file, odd names,
    a reference folder; and one group in the old format (paths only)."""
    photos = root / "Pictures"
    storm = place("mate/Storm.jpg", photos / "2023" / "Storm.jpg")
    tricky = place("mate/Storm.jpg", photos / "odd & <names>" / TRICKY_NAME)
    newline = place("mate/Storm.jpg", photos / "odd & <names>" / NEWLINE_NAME)
    kept = place("imagededup/base/ukbench00120.jpg", root / "Reference" / "ukbench00120.jpg")
    resized = place("imagededup/variants/ukbench00120_resize.jpg", photos / "resized.jpg")
    png = photos / "as png.png"
    Image.open(kept).save(png)
    pillow_heif.register_heif_opener()
    heic = photos / "IMG_0120.HEIC"
    pillow_heif.from_pillow(Image.open(kept)).save(heic, quality=70)
    broken = place("imagededup/variants/ukbench09268_corrupt.jpg", photos / "broken.jpg")
    left = place("opencv/aloeL.jpg", photos / "aloe" / "left.jpg")
    right = place("opencv/aloeR.jpg", photos / "aloe" / "right.jpg")
    cat = place("skimage/chelsea.png", photos / "cat.png")
    cat_copy = place("skimage/chelsea.png", photos / "backup" / "cat.png")
    old_style = {"tier": "exact", "keep": str(cat), "files": [str(cat), str(cat_copy)]}
    return {"groups": [
        group("exact", 1.0, [member(storm, "keep"), member(tricky, "exact"),
                             member(newline, "exact")]),
        group("near", 0.91, [member(kept, "keep", protected=True), member(resized, "near"),
                             member(png, "near"), member(heic, "near"),
                             member(broken, "near")]),
        group("similar", 0.83, [member(left, "keep"), member(right, "similar")]),
        old_style,
    ], "tiers": ["exact", "near", "similar"]}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        result = build_photos(root)
        out = write_report(result, root / "out" / "dupes.html")
        yield Built(result=result, out=out, with_preview=11, root=root)


def chromium(page: Path, work: Path, *args: str) -> str:
    """Run headless Chromium on ``page`` with a fresh profile; returns its stdout."""
    profile = Path(os.path.join(work, f"profile-{time.monotonic_ns()}"))
    env = {**os.environ, "HOME": str(work), "XDG_CONFIG_HOME": str(work / "config"),
           "XDG_CACHE_HOME": str(work / "chromium-cache")}
    command = [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
               "--virtual-time-budget=5000", *args, thumbnail_uri(page)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def image_counts(dom: Node) -> tuple[int, int]:
    body = dom.find("body")
    assert "data-images-loaded" in body.attrs, "the page's load script did not run"
    return int(body.attrs["data-images-loaded"]), int(body.attrs["data-images-broken"])


@pytest.fixture(scope="module")
def dom(built: Built) -> Node:
    """The page as Chromium has it after loading every picture and running the script."""
    if CHROMIUM is None:
        pytest.skip("Debian `chromium` is not on PATH (apt-get install chromium)")
    return parse(chromium(built.out, built.root, "--dump-dom"))


def cards(dom: Node) -> dict[str, Node]:
    return {c.attrs["data-path"]: c for c in dom.find_all("article", "card")}


# --- in the browser -------------------------------------------------------------------------


@needs_chromium
def test_every_preview_loads_and_none_is_broken(built: Built, dom: Node) -> None:
    assert image_counts(dom) == (built.with_preview, 0)
    assert len(list(dom.find_all("img"))) == built.with_preview


@needs_chromium
def test_page_renders_something_to_look_at(built: Built) -> None:
    shot = built.root / "shot.png"
    chromium(built.out, built.root, f"--screenshot={shot}", "--window-size=1200,900")
    with Image.open(shot) as im:
        assert im.size == (1200, 900)
        spread = ImageStat.Stat(im.convert("L")).stddev[0]
    assert spread > 30, f"screenshot is nearly uniform (stddev {spread:.1f})"


@needs_chromium
def test_keeper_is_marked_in_every_group(built: Built, dom: Node) -> None:
    sections = list(dom.find_all("section", "group"))
    assert len(sections) == len(built.result["groups"])
    for section, raw in zip(sections, built.result["groups"], strict=True):
        keepers = [c for c in section.find_all("article", "card") if "keep" in c.classes]
        assert [k.attrs["data-path"] for k in keepers] == [raw["keep"]]
        assert keepers[0].find("span", "keep").text() == "KEEP"
        others = [c for c in section.find_all("article", "card") if "keep" not in c.classes]
        assert all(not list(c.find_all("span", "keep")) for c in others)


@needs_chromium
def test_tricky_names_show_exactly_as_on_disk(built: Built, dom: Node) -> None:
    by_path = cards(dom)
    for name in (TRICKY_NAME, NEWLINE_NAME):
        path = built.root / "Pictures" / "odd & <names>" / name
        card = by_path[str(path)]
        assert card.find("a", "name").text() == name
        assert card.find("div", "folder").text() == f"{path.parent}/"
        assert card.find("img").attrs["alt"] == name
    raw = built.out.read_text()
    assert "Storm &lt;copy&gt; &amp; &quot;best&quot; &#x27;one&#x27; ü ☃.jpg" in raw
    assert "<copy>" not in raw and "odd & <names>" not in raw


@needs_chromium
def test_links_are_file_uris_of_the_files(built: Built, dom: Node) -> None:
    for path, card in cards(dom).items():
        links = list(card.find_all("a"))
        assert links, path
        for link in links:
            href = link.attrs["href"]
            url = urlparse(href)
            assert url.scheme == "file" and url.netloc == ""
            assert unquote(url.path) == path and Path(path).exists()
            assert not set(href) & set(" <>\"\n"), href  # GLib keeps ' and &, as RFC 3986 allows
    tricky = str(built.root / "Pictures" / "odd & <names>" / TRICKY_NAME)
    assert cards(dom)[tricky].find("a", "name").attrs["href"] == thumbnail_uri(tricky)


@needs_chromium
def test_missing_preview_is_a_labelled_box_not_a_broken_image(built: Built, dom: Node) -> None:
    card = cards(dom)[str(built.root / "Pictures" / "broken.jpg")]
    assert not list(card.find_all("img"))
    assert card.find("div", "noimg").text() == "no preview"
    assert card.find("a", "name").text() == "broken.jpg"  # still listed and openable


@needs_chromium
def test_tiers_protection_and_facts_are_shown(built: Built, dom: Node) -> None:
    exact, near, similar, _old = dom.find_all("section", "group")
    assert "exact duplicates" in exact.find("h2").text()
    assert "similar — not duplicates" in similar.find("h2").text()
    assert "lowest similarity 0.830" in similar.find("h2").text()
    reference = cards(dom)[str(built.root / "Reference" / "ukbench00120.jpg")]
    assert "protected" in reference.classes
    assert reference.find("span", "ref").text() == "reference folder"
    heic = cards(dom)[str(built.root / "Pictures" / "IMG_0120.HEIC")]
    facts = [li.text() for li in heic.find("ul", "meta").find_all("li")]
    raw = next(m for m in built.result["groups"][1]["members"] if m["path"].endswith("HEIC"))
    assert facts[0] == f"{raw['width']}×{raw['height']}" and facts[2] == "HEIF"
    assert facts[1].endswith(" kB") and facts[3].startswith(time.strftime("%Y-"))


@needs_chromium
def test_header_counts_groups_files_and_reclaimable_bytes(built: Built, dom: Node) -> None:
    header = dom.find("header")
    text = " ".join(header.text().split())
    assert "4 groups" in text and "2 exact duplicates" in text
    assert "1 near duplicates" in text and "1 similar — not duplicates" in text
    assert "12 files" in text
    cat_copy = built.root / "Pictures" / "backup" / "cat.png"
    removable = [m["size"] for g in built.result["groups"][:2] for m in g["members"]
                 if m["match"] != "keep" and not m["protected"]]
    expected = sum(removable) + cat_copy.stat().st_size
    assert int(next(header.find_all(tag="strong")).text()) == 4
    assert [s.attrs["data-bytes"] for s in header.find_all("strong") if "data-bytes" in s.attrs
            ] == [str(expected)]


@needs_chromium
def test_old_results_without_members_still_show_their_files(built: Built, dom: Node) -> None:
    old = list(dom.find_all("section", "group"))[3]
    shown = [c.attrs["data-path"] for c in old.find_all("article", "card")]
    assert shown == built.result["groups"][3]["files"]
    copy = old.find_all("article", "card")
    assert "keep" in next(copy).classes
    size = [li.text() for li in list(old.find_all("ul", "meta"))[1].find_all("li")][0]
    assert size.endswith(" kB")  # read from the disk


@needs_chromium
def test_moved_report_keeps_its_pictures_and_a_lone_page_degrades(built: Built,
                                                                   tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(built.out, moved / built.out.name)
    shutil.copytree(built.out.with_name("dupes_files"), moved / "dupes_files")
    dom = parse(chromium(moved / built.out.name, tmp_path, "--dump-dom"))
    assert image_counts(dom) == (built.with_preview, 0)

    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(built.out, lone / built.out.name)
    dom = parse(chromium(lone / built.out.name, tmp_path, "--dump-dom"))
    assert image_counts(dom) == (0, built.with_preview)
    assert not list(dom.find_all("img"))  # each replaced by a labelled box
    assert "thumbnail missing" in dom.find("main").text()


# --- the files written ----------------------------------------------------------------------


def test_page_uses_no_external_resources(built: Built) -> None:
    page = parse(built.out.read_text())
    for node in page.find_all():
        for attr in ("src", "href"):
            if attr in node.attrs:
                value = node.attrs[attr]
                assert value.startswith(("file:///", "#", "dupes_files/")), value
    raw = built.out.read_text()
    assert "http:" not in raw and "https:" not in raw and "@import" not in raw
    assert "url(" not in raw and 'loading="lazy"' not in raw


def test_thumbnails_folder_holds_one_copy_per_picture(built: Built) -> None:
    folder = built.out.with_name("dupes_files")
    # The three Storm.jpg copies are separate files with separate thumbnails.
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:04d}.png" for i in range(1, 12)]
    for png in folder.iterdir():
        with Image.open(png) as im:
            assert max(im.size) <= 256
    leftovers = [p.name for p in built.out.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_writing_again_replaces_the_folder_and_page(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    photos = [place(rel, tmp_path / Path(rel).name) for rel in
              ("opencv/fruits.jpg", "opencv/baboon.jpg", "skimage/coffee.png")]
    first = {"groups": [group("near", 0.9, [member(p, "near") for p in photos])]}
    out = write_report(first, tmp_path / "r.html", title="first")
    second = {"groups": [group("exact", 1.0, [member(p, "exact") for p in photos[:2]])]}
    assert write_report(second, out, title="second <run>") == out
    assert sorted(os.listdir(tmp_path / "r_files")) == ["0001.png", "0002.png"]
    assert "<title>second &lt;run&gt;</title>" in out.read_text()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~current_umask())


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_refuses_to_delete_a_folder_it_did_not_make(tmp_path: Path) -> None:
    folder = tmp_path / "r_files"
    folder.mkdir()
    (folder / "my notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="did not make"):
        write_report({"groups": []}, tmp_path / "r.html")
    assert (folder / "my notes.txt").read_text() == "precious"
    assert not (tmp_path / "r.html").exists()


def test_empty_result_gives_a_page_that_says_so(tmp_path: Path) -> None:
    out = write_report({"groups": []}, tmp_path / "none.html")
    assert "No duplicate groups." in out.read_text()


@pytest.mark.slow  # ~4.5 s on 2 cores, mostly Chromium laying out 15,000 cards
@needs_chromium
def test_five_thousand_groups_write_and_open_quickly(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    members = [member(place(rel, tmp_path / "p" / Path(rel).name), "near") for rel in
               ("opencv/fruits.jpg", "opencv/baboon.jpg", "skimage/coffee.png")]
    tiers = ("exact", "near", "similar")
    result = {"groups": [group(tiers[i % 3], 0.95, members) for i in range(5000)]}
    started = time.monotonic()
    out = write_report(result, tmp_path / "big.html")
    written = time.monotonic() - started
    dom = chromium(out, tmp_path, "--dump-dom")  # 10 MB: read the counts, skip a full parse
    opened = time.monotonic() - started - written
    body = re.search(r"<body [^>]*>", dom)
    assert body is not None
    assert image_counts(parse(body.group(0))) == (15_000, 0)
    assert dom.count('<section class="group"') == 5000
    assert written < 10 and opened < 30, (written, opened)
