"""Every file name works end to end (issue 15, item 1): names that are not UTF-8 (an old
disk, a camera card, an archive from another system) are indexed, searched, grouped and
acted on as themselves, through the real CLI in its own process, with a real daemon and
with --no-daemon, on real photos. Text shows such a name as the shell would
(``$'caf\\xe9.jpg'``, which bash reads back as the exact bytes), ``--paths``/``-0`` write
the exact bytes, and JSON gives a displayable ``path`` plus ``path_bytes`` (base64)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import shared

from .daemon_harness import DaemonProcess, module_daemon

Run = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with module_daemon(tmp_path_factory.mktemp("names")) as daemon:
        yield daemon


@pytest.fixture(params=["daemon", "no-daemon"])
def run(request: pytest.FixtureRequest, tmp_path: Path) -> Run:
    """The CLI in its own process; output as bytes (a name need not decode)."""
    env = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    if request.param == "daemon":
        env.update(request.getfixturevalue("daemon").env)
    else:
        env = {k: v for k, v in env.items() if not k.startswith("FINDSIMILAR_")}
        env.update(FINDSIMILAR_DATA_DIR=str(tmp_path / "data"), FINDSIMILAR_NO_DAEMON="1")

    def cli(*args: str | bytes, code: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "findsimilar", *args], env=env,
                              capture_output=True, timeout=300)
        assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
        assert done.returncode == code, (args, done.stdout, done.stderr)
        return done
    return cli


def odd(folder: Path, name: bytes) -> str:
    return os.fsdecode(os.fsencode(folder) + b"/" + name)


@pytest.fixture
def lib(tmp_path: Path) -> dict[str, str]:
    """An exact pair (one named in Latin-1), and a near pair inside a folder whose own
    name is not UTF-8 (the copy named with bytes that are no encoding at all)."""
    root = tmp_path / "lib"
    root.mkdir()
    files = {"cafe": odd(root, b"caf\xe9.jpg"), "copy": str(root / "copy.jpg")}
    shutil.copy2(shared("opencv/fruits.jpg"), files["cafe"])
    shutil.copy2(shared("opencv/fruits.jpg"), files["copy"])
    os.utime(files["copy"], (2_000_000_000, 2_000_000_000))  # the Latin-1 one is older
    folder = odd(root, b"\xe9t\xe9")
    os.mkdir(folder)
    files["big"] = os.path.join(folder, "chelsea.png")
    shutil.copy2(shared("skimage/chelsea.png"), files["big"])
    files["small"] = os.path.join(folder, os.fsdecode(b"\xff\xfe.jpg"))
    with Image.open(files["big"]) as im:
        im.convert("RGB").resize((im.width // 2, im.height // 2)).save(files["small"],
                                                                      quality=92)
    files["root"] = str(root)
    return files


def exact(text: str) -> bytes:
    return base64.b64decode(text)


def test_names_that_are_not_utf8_are_indexed_searched_and_shown_as_the_shell_would(
        run: Run, lib: dict[str, str]) -> None:
    summary = json.loads(run("index", "--json", "-q", lib["root"]).stdout)
    assert (summary["new"], summary["failed"]) == (4, [])

    # A query by such a name; its twin under a fine name is found, and the other way.
    found = json.loads(run(lib["cafe"], "--json", "-k", "1").stdout)
    assert exact(found["query_bytes"]) == os.fsencode(lib["cafe"])
    assert found["query"].endswith("caf\\xe9.jpg")  # displayable: valid UTF-8
    assert [r["path"] for r in found["results"]] == [lib["copy"]]
    back = json.loads(run(lib["copy"], "--json", "-k", "1").stdout)["results"][0]
    assert exact(back["path_bytes"]) == os.fsencode(lib["cafe"]) and back["score"] == 1.0

    assert run("--paths", "-k", "1", lib["copy"]).stdout == os.fsencode(lib["cafe"]) + b"\n"
    assert run("-0", "-k", "1", lib["copy"]).stdout == os.fsencode(lib["cafe"]) + b"\0"
    line = run("-k", "1", lib["copy"]).stdout.decode("utf-8")  # text is valid UTF-8
    shown = line.split("  ", 1)[1].strip()
    assert shown.startswith("$'") and "caf\\xe9.jpg" in shown
    # ... which the shell reads back as the exact name.
    assert subprocess.run(["bash", "-c", f"printf %s {shown}"], capture_output=True,
                          check=True).stdout == os.fsencode(lib["cafe"])


def test_groups_of_such_names_are_listed_and_a_reviewed_plan_acts_on_the_exact_files(
        run: Run, lib: dict[str, str], tmp_path: Path) -> None:
    run("index", "-q", lib["root"])
    plan = tmp_path / "plan.json"
    plan.write_bytes(run("dupes", lib["root"], "--json").stdout)
    listing = json.loads(plan.read_text(encoding="utf-8"))
    assert listing["version"] == 1
    by_tier = {g["tier"]: g for g in listing["groups"]}
    pair = by_tier["exact"]
    assert exact(pair["keep_bytes"]) == os.fsencode(lib["cafe"])  # the older file
    assert [exact(b) for b in pair["files_bytes"]] == [os.fsencode(lib["cafe"]),
                                                       os.fsencode(lib["copy"])]
    near = by_tier["near"]
    members = {exact(m["path_bytes"]) if "path_bytes" in m else m["path"].encode(): m
               for m in near["members"]}
    assert set(members) == {os.fsencode(lib["big"]), os.fsencode(lib["small"])}

    text = run("dupes", lib["root"]).stdout.decode("utf-8")
    assert "KEEP $'" in text and "caf\\xe9.jpg'" in text

    done = run("dupes", "apply", str(plan), "--action", "trash", "--apply")
    assert b"2 done, 0 skipped, 0 failed" in done.stderr
    assert not os.path.exists(lib["copy"]) and not os.path.exists(lib["small"])
    assert os.path.exists(lib["cafe"]) and os.path.exists(lib["big"])
    run("dupes", "undo")
    assert os.path.exists(lib["copy"]) and os.path.exists(lib["small"])


def test_the_results_page_of_such_a_name_links_the_exact_file(run: Run, lib: dict[str, str]
                                                               ) -> None:
    # What every file-manager integration runs: `findsimilar show --notify -- %F`.
    run("index", "-q", lib["root"])
    page = Path(os.fsdecode(run("show", "--print-path", "--", lib["cafe"]).stdout.rstrip(b"\n")))
    html = page.read_text(encoding="utf-8")  # the page itself is valid UTF-8
    assert "file://" + os.fsencode(lib["cafe"]).decode("latin-1").replace("\xe9", "%E9") in html
    links = page.parent / "links"
    assert any(os.readlink(link) == lib["copy"] for link in links.iterdir())
