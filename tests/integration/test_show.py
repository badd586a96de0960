"""`findsimilar show`: the results page, the folder of ranked links, duplicate badges,
opening the page and desktop notifications, with the real model, store and index; the
page is checked in a real headless Chromium. Only `xdg-open` and `notify-send` are fakes
(scripts on PATH that record how they were called)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from findsimilar.cli.pages.showpage import QueryView, ResultView, write_results
from findsimilar.thumbnails import thumbnail_uri

from ..conftest import PHOTO_SET, CliFn, _invoker, shared, stop_daemon
from ..photo_edits import apply_edit
from .test_report import CHROMIUM, Node, chromium, image_counts, needs_chromium, parse

ODD_NAME = "Storm <copy> & \"ü\" ☃\nsecond line.jpg"
TOP = 8


@dataclass
class Library:
    root: Path
    photos: Path
    cache: Path  # XDG_CACHE_HOME
    bin: Path  # fake xdg-open and notify-send live here, first on PATH
    storm: Path  # the query, indexed
    copy: Path  # the same bytes under an odd name
    small: Path  # resized to 30%
    outside: Path  # an edited photo that is not indexed

    @property
    def results_cache(self) -> Path:
        return self.cache / "findsimilar" / "show"


def fake_program(folder: Path, name: str, *, sleep: float = 0.0) -> Path:
    """A stand-in for a desktop program: records its argv, session and pid (one JSON line
    per call in ``<name>.calls``), then lingers ``sleep`` seconds."""
    record = folder / f"{name}.calls"
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys, time\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(json.dumps({'argv': sys.argv[1:], 'sid': os.getsid(0), "
        "'pid': os.getpid(), 'stdin': os.readlink('/proc/self/fd/0')}) + '\\n')\n"
        f"time.sleep({sleep})\n")
    script.chmod(0o755)
    return record


def calls(record: Path) -> list[dict]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    """Real photos indexed once for the module: a query, an exact copy of it under an
    odd name, a resized copy, other photos, and an edited photo outside the index."""
    root = tmp_path_factory.mktemp("show")
    photos = root / "photos"
    for rel in PHOTO_SET:
        (photos / Path(rel).name).parent.mkdir(parents=True, exist_ok=True)
        (photos / Path(rel).name).write_bytes(shared(rel).read_bytes())
    storm = photos / "Storm.jpg"
    copy = photos / "odd & <names>" / ODD_NAME
    copy.parent.mkdir()
    copy.write_bytes(storm.read_bytes())
    (photos / "edits").mkdir()
    small = apply_edit("resize 30%", storm, photos / "edits" / "storm small")
    (root / "outside").mkdir()
    outside = apply_edit("JPEG quality 15", shared("skimage/chelsea.png"),
                         root / "outside" / "chelsea, recompressed")
    lib = Library(root=root, photos=photos, cache=root / "cache", bin=root / "bin",
                  storm=storm, copy=copy, small=small, outside=outside)
    lib.bin.mkdir()
    fake_program(lib.bin, "xdg-open", sleep=30)  # no test may open a real browser
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINDSIMILAR_DATA_DIR", str(root / "data"))
        patch.delenv("FINDSIMILAR_EXTRACTOR", raising=False)
        patch.setenv("FINDSIMILAR_NO_DAEMON", "1")
        patch.setenv("XDG_CACHE_HOME", str(lib.cache))
        patch.setenv("PATH", f"{lib.bin}{os.pathsep}{os.environ['PATH']}")
        _invoker()("index", "-q", str(photos), ok=True)
        yield lib


@pytest.fixture(scope="module")
def run(library: Library) -> CliFn:
    return _invoker()


@pytest.fixture(scope="module")
def shown(library: Library, run: CliFn) -> dict:
    """`show --json` for the indexed query and the photo outside the index."""
    result = run("show", "--json", "-k", str(TOP), str(library.storm), str(library.outside),
                 ok=True)
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def dom(shown: dict, library: Library) -> Node:
    if CHROMIUM is None:
        pytest.skip("Debian `chromium` is not on PATH (apt-get install chromium)")
    return parse(chromium(Path(shown["page"]), library.root, "--dump-dom"))


def by_path(query: dict) -> dict[str, dict]:
    return {r["path"]: r for r in query["results"]}


def folders(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir()} if cache.exists() else set()


# --- what a user gets ------------------------------------------------------------------


def test_print_path_writes_the_page_and_prints_only_its_path(library: Library, run: CliFn):
    result = run("show", "--print-path", str(library.storm), ok=True)
    page = Path(result.stdout.rstrip("\n"))
    assert result.stdout.count("\n") == 1
    assert page.name == "index.html" and page.is_file()
    assert re.fullmatch(r"[0-9a-f]{12}", page.parent.name)
    assert page.parent.parent == library.results_cache
    assert "Storm.jpg" in page.read_text()
    assert calls(library.bin / "xdg-open.calls") == []  # printed, not opened


def test_json_gives_page_links_and_ranked_results_like_search(library: Library, run: CliFn,
                                                              shown: dict):
    assert set(shown) == {"version", "page", "links", "queries"} and shown["version"] == 1
    page = Path(shown["page"])
    assert page.is_file() and shown["links"] == str(page.parent / "links")
    assert [q["query"] for q in shown["queries"]] == [str(library.storm), str(library.outside)]
    searched = json.loads(run("search", "--json", "-k", str(TOP), str(library.storm),
                              ok=True).stdout)
    storm = shown["queries"][0]
    assert [(r["path"], r["score"]) for r in storm["results"]] == [
        (r["path"], r["score"]) for r in searched["results"]]
    for query in shown["queries"]:
        results = query["results"]
        assert len(results) == TOP
        assert [r["rank"] for r in results] == list(range(1, TOP + 1))
        assert all(set(r) == {"rank", "path", "score", "tier", "link"} for r in results)
        assert [r["score"] for r in results] == sorted((r["score"] for r in results),
                                                      reverse=True)


def test_links_folder_holds_the_matches_best_first(shown: dict):
    links = Path(shown["links"])
    subfolders = sorted(os.listdir(links))
    assert subfolders == ["1 Storm.jpg", "2 chelsea, recompressed.jpg"]  # one per query
    for query, sub in zip(shown["queries"], subfolders, strict=True):
        names = sorted(os.listdir(links / sub))  # how a file manager sorts them
        assert [str(links / sub / n) for n in names] == [r["link"] for r in query["results"]]
        for name, result in zip(names, query["results"], strict=True):
            assert os.readlink(links / sub / name) == result["path"]
            base = os.path.basename(result["path"])
            assert name == f"{result['rank']:02d} {result['score']:.3f} {base}"


def test_exact_and_resized_copies_are_marked_and_other_photos_are_not(library: Library,
                                                                     shown: dict, dom: Node):
    results = by_path(shown["queries"][0])
    assert results[str(library.copy)]["tier"] == "exact"
    assert results[str(library.small)]["tier"] == "near"
    others = [r for p, r in results.items() if p not in (str(library.copy), str(library.small))]
    assert others and all(r["tier"] == "similar" for r in others)

    cards = {c.attrs["data-path"]: c for c in dom.find_all("article", "card")
             if c.attrs["data-path"] in results}
    assert cards[str(library.copy)].find("span", "badge").text() == "exact copy"
    assert cards[str(library.small)].find("span", "badge").text() == "near duplicate"
    assert all(not list(cards[r["path"]].find_all("span", "badge")) for r in others)


def test_a_photo_outside_the_index_finds_its_original(library: Library, shown: dict):
    outside = shown["queries"][1]
    assert outside["query"] == str(library.outside)
    assert outside["results"][0]["path"] == str(library.photos / "chelsea.png")
    assert outside["results"][0]["tier"] == "near"  # a recompressed copy is the same picture


@needs_chromium
def test_query_and_result_pictures_all_load_in_chromium(shown: dict, dom: Node):
    shown_results = sum(len(q["results"]) for q in shown["queries"])
    assert image_counts(dom) == (2 + shown_results, 0)
    sections = list(dom.find_all("section", "query"))
    assert [s.attrs["data-query"] for s in sections] == [q["query"] for q in shown["queries"]]
    for section, query in zip(sections, shown["queries"], strict=True):
        assert section.find("div", "query-head").find("img")  # the query picture itself
        ranks = [c.attrs["data-rank"] for c in section.find_all("article", "card")]
        assert ranks == [str(r["rank"]) for r in query["results"]]


@needs_chromium
def test_page_renders_something_to_look_at(shown: dict, library: Library):
    shot = library.root / "shot.png"
    chromium(Path(shown["page"]), library.root, f"--screenshot={shot}", "--window-size=1200,900")
    with Image.open(shot) as im:
        assert im.size == (1200, 900)
        spread = ImageStat.Stat(im.convert("L")).stddev[0]
    assert spread > 30, f"screenshot is nearly uniform (stddev {spread:.1f})"


@needs_chromium
def test_odd_names_show_exactly_and_links_open_the_files(library: Library, shown: dict,
                                                         dom: Node):
    card = next(c for c in dom.find_all("article", "card")
                if c.attrs["data-path"] == str(library.copy))
    assert card.find("a", "name").text() == ODD_NAME
    assert card.find("img").attrs["alt"] == ODD_NAME
    for link in card.find_all("a"):
        assert link.attrs["href"] == thumbnail_uri(library.copy)
    raw = Path(shown["page"]).read_text()
    assert "Storm &lt;copy&gt; &amp; &quot;ü&quot; ☃" in raw and "<copy>" not in raw
    assert any(ODD_NAME in p.name for p in Path(shown["links"]).glob("1 */*"))


# --- failures ----------------------------------------------------------------------------


def test_missing_file_exits_3_with_a_clear_message_and_writes_nothing(library: Library,
                                                                      run: CliFn):
    before = folders(library.results_cache)
    missing = library.root / "no such.jpg"
    result = run("show", "--print-path", str(missing))
    assert result.exit_code == 3
    assert f"findsimilar: error: no such file: {missing}" in result.stderr
    assert result.stdout == "" and folders(library.results_cache) == before


def test_one_bad_query_is_shown_on_the_page_beside_the_good_ones(library: Library,
                                                                  run: CliFn, tmp_path: Path):
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a picture")
    result = run("show", "--print-path", str(not_an_image), str(library.small))
    assert result.exit_code == 4  # as `search`: the code of the first failure
    assert "not a recognised image format" in result.stderr
    page = parse(Path(result.stdout.strip()).read_text())
    bad, good = page.find_all("section", "query")
    assert "data-error" in bad.attrs and "not a recognised image format" in bad.find(
        "p", "error").text()
    assert "data-error" not in good.attrs and len(list(good.find_all("article", "card"))) == 13
    # (all 13 other indexed photos: fewer than the default 20)
    links = Path(result.stdout.strip()).parent / "links"
    assert os.listdir(links) == ["2 storm small.jpg"]  # numbered as on the page


def test_notify_tells_the_desktop_about_every_kind_of_failure(
        library: Library, run: CliFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    record = fake_program(tmp_path, "notify-send")
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a picture")
    assert run("show", "--notify", "--", str(tmp_path / "gone.jpg")).exit_code == 3
    assert run("show", "--notify", "--", str(not_an_image)).exit_code == 4
    monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(tmp_path / "empty"))
    assert run("show", "--notify", str(library.storm)).exit_code == 5
    # No daemon can be started: its data dir is a file.
    monkeypatch.delenv("FINDSIMILAR_NO_DAEMON")
    monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(not_an_image))
    failed = run("show", "--notify", str(library.storm))
    assert failed.exit_code == 8 and "Traceback" not in failed.output
    assert "cannot start the daemon" in failed.stderr

    sent = [c["argv"] for c in calls(record)]
    assert len(sent) == 4
    assert all(argv[:2] == ["--app-name=findsimilar", "--"] for argv in sent)
    messages = [argv[2] for argv in sent]
    assert messages[0] == f"findsimilar: no such file: {tmp_path / 'gone.jpg'}"
    assert "not a recognised image format" in messages[1]
    assert "empty" in messages[2] and "cannot start the daemon" in messages[3]
    assert all(m.startswith("findsimilar: ") for m in messages)


def test_a_stuck_notify_send_does_not_hang_the_command(library: Library, run: CliFn,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    record = fake_program(tmp_path, "notify-send", sleep=60)
    started = time.monotonic()
    assert run("show", "--notify", str(tmp_path / "gone.jpg")).exit_code == 3
    assert time.monotonic() - started < 10
    [call] = calls(record)
    assert not Path(f"/proc/{call['pid']}").exists()  # killed at the timeout, reaped


def test_without_notify_nothing_is_sent(library: Library, run: CliFn, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    record = fake_program(tmp_path, "notify-send")
    assert run("show", str(tmp_path / "gone.jpg")).exit_code == 3
    assert calls(record) == []


# --- opening the page --------------------------------------------------------------------


def test_page_is_opened_with_xdg_open_without_waiting_for_it(library: Library, run: CliFn):
    record = library.bin / "xdg-open.calls"
    started = time.monotonic()
    result = run("show", str(library.small), ok=True)
    took = time.monotonic() - started
    deadline = time.monotonic() + 10
    while not calls(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    [call] = calls(record)
    try:
        assert took < 20  # the fake lingers 30 s: we did not wait for it
        page = Path(call["argv"][0])
        assert call["argv"] == [str(page)] and page.name == "index.html" and page.is_file()
        assert "storm small.jpg" in page.read_text()
        assert call["sid"] != os.getsid(0)  # its own session: detached from ours
        assert call["stdin"] == "/dev/null"
        assert result.stdout == "" and str(page) in result.stderr
    finally:
        os.kill(call["pid"], signal.SIGTERM)
        record.unlink()


def test_without_xdg_open_the_path_is_printed_with_a_note(library: Library, run: CliFn,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    result = run("show", str(library.storm))
    page = Path(result.stdout.strip())
    assert page.is_file() and "xdg-open is not installed" in result.stderr
    assert result.exit_code == 1  # no browser was opened: a script can tell


def desktop_without_display(monkeypatch: pytest.MonkeyPatch, library: Library,
                            home: Path) -> None:
    """The real xdg-open (Debian xdg-utils) first on PATH, no display, a fresh HOME."""
    path = [p for p in os.environ["PATH"].split(os.pathsep) if p != str(library.bin)]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    if shutil.which("xdg-open") is None:
        pytest.skip("Debian `xdg-utils` is not installed (apt-get install xdg-utils)")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "XDG_CURRENT_DESKTOP",
                 "DESKTOP_SESSION", "KDE_FULL_SESSION", "GNOME_DESKTOP_SESSION_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))


def test_xdg_open_that_finds_no_browser_is_reported_with_the_page_path(
        library: Library, run: CliFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    desktop_without_display(monkeypatch, library, tmp_path)
    result = run("show", str(library.small))
    page = Path(result.stdout.strip())
    assert result.exit_code == 1 and page.is_file() and page.name == "index.html"
    assert "findsimilar: opened" not in result.stderr
    assert "cannot open the page in a browser: xdg-open failed (exit code 3)" in result.stderr
    assert "no method available" in result.stderr and str(page) in result.stderr


def test_xdg_open_that_opens_a_browser_is_waited_for_and_succeeds(
        library: Library, run: CliFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    desktop_without_display(monkeypatch, library, tmp_path)
    record = fake_program(tmp_path, "browser")  # exits at once, as a browser's remote does
    monkeypatch.setenv("BROWSER", str(tmp_path / "browser"))
    result = run("show", str(library.small), ok=True)
    [call] = calls(record)
    page = Path(call["argv"][0])
    assert page.is_file() and result.stdout == ""
    assert f"findsimilar: opened {page}" in result.stderr


def test_a_failing_opener_is_a_notification_for_a_file_manager(
        library: Library, run: CliFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "xdg-open").write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 4\n")
    (tmp_path / "xdg-open").chmod(0o755)
    sent = fake_program(tmp_path, "notify-send")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    result = run("show", "--notify", str(library.small))
    assert result.exit_code == 1
    why = "xdg-open failed (exit code 4): cannot open display"
    assert why in result.stderr
    [note] = calls(sent)
    assert why in note["argv"][-1] and result.stdout.strip() in note["argv"][-1]


# --- where pages live --------------------------------------------------------------------


def test_same_photos_reuse_their_folder_and_only_the_newest_20_are_kept(library: Library,
                                                                       run: CliFn):
    first = Path(run("show", "--print-path", str(library.storm), ok=True).stdout.strip())
    cache = library.results_cache
    for i in range(25):  # older pages of other queries
        old = cache / f"{i:012x}"
        old.mkdir(exist_ok=True)
        (old / "index.html").write_text("old")
        os.utime(old / "index.html", (1_000_000 + i, 1_000_000 + i))
    (cache / "not-ours").mkdir(exist_ok=True)
    again = Path(run("show", "--print-path", str(library.storm), ok=True).stdout.strip())
    assert again == first and again.is_file()
    ours = {p.name for p in cache.iterdir() if re.fullmatch(r"[0-9a-f]{12}", p.name)}
    assert len(ours) == 20 and first.parent.name in ours
    assert f"{0:012x}" not in ours and f"{24:012x}" in ours  # the oldest went first
    assert (cache / "not-ours").is_dir()
    leftovers = [p.name for p in first.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [".lock"]


def test_out_folder_is_rewritten_in_place(library: Library, run: CliFn, tmp_path: Path):
    out = tmp_path / "my results"
    first = json.loads(run("show", "--json", "-k", "5", "--out", str(out), str(library.storm),
                           ok=True).stdout)
    assert first["page"] == str(out / "index.html")
    second = json.loads(run("show", "--json", "-k", "2", "--out", str(out), str(library.storm),
                            ok=True).stdout)
    assert len(os.listdir(out / "links")) == 2  # one query: the links are right there
    assert [r["link"] for r in second["queries"][0]["results"]] == [
        str(out / "links" / n) for n in sorted(os.listdir(out / "links"))]
    assert len(os.listdir(out / "thumbs")) == 3  # the query and two results; no stale ones
    assert sorted(p.name for p in out.iterdir()) == [".lock", "index.html", "links", "thumbs"]


def test_a_links_folder_with_other_files_is_never_deleted(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    photo = tmp_path / "coffee.png"
    photo.write_bytes(shared("skimage/coffee.png").read_bytes())
    (tmp_path / "out" / "links").mkdir(parents=True)
    (tmp_path / "out" / "links" / "my notes.txt").write_text("precious")
    query = QueryView(str(photo), [ResultView(1, str(photo), 0.5, "similar")])
    with pytest.raises(FileExistsError, match="not result links"):
        write_results([query], tmp_path / "out")
    assert (tmp_path / "out" / "links" / "my notes.txt").read_text() == "precious"


# --- through the daemon ------------------------------------------------------------------


def test_the_daemon_gives_the_same_page(library: Library, shown: dict,
                                        monkeypatch: pytest.MonkeyPatch,
                                        request: pytest.FixtureRequest):
    monkeypatch.delenv("FINDSIMILAR_NO_DAEMON")
    request.addfinalizer(stop_daemon)
    result = _invoker()("show", "--json", "-k", str(TOP), str(library.storm), ok=True)
    assert "started the daemon" in result.stderr
    via_daemon = json.loads(result.stdout)["queries"][0]
    in_process = shown["queries"][0]
    assert [(r["path"], r["tier"]) for r in via_daemon["results"]] == [
        (r["path"], r["tier"]) for r in in_process["results"]]
