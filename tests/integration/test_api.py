"""The Python API (issue 15, item 7): ``from findsimilar import Client``.

Run both ways on real photos, as the `cli` fixture runs the commands: the engine in this
process (FINDSIMILAR_NO_DAEMON=1) and a real daemon shared by the module. Each answer is
compared with what the real command prints with --json on the same state; the README's
example is taken from README.md and run as a script.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from findsimilar import Client
from findsimilar.config import Config
from findsimilar.errors import (
    EXIT_NO_DAEMON,
    FindSimilarError,
    ImageDecodeError,
    MissingFileError,
    UsageError,
)
from tests.conftest import REPO, shared

from .daemon_harness import DaemonProcess, daemon_env, module_daemon

PHOTOS = ["skimage/chelsea.png", "opencv/fruits.jpg", "opencv/butterfly.jpg"]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with module_daemon(tmp_path_factory.mktemp("api")) as daemon:
        yield daemon


@pytest.fixture(params=["in-process", "daemon"])
def mode(request: pytest.FixtureRequest, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> str:
    """The settings `Client()` and the CLI read: this test's own data dir, in-process;
    or the module's daemon (its data dir and socket)."""
    monkeypatch.delenv("FINDSIMILAR_EXTRACTOR", raising=False)
    if request.param == "in-process":
        monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.delenv("FINDSIMILAR_SOCKET", raising=False)
        monkeypatch.setenv("FINDSIMILAR_NO_DAEMON", "1")
    else:
        daemon: DaemonProcess = request.getfixturevalue("daemon")
        monkeypatch.setenv("FINDSIMILAR_DATA_DIR", str(daemon.data_dir))
        monkeypatch.setenv("FINDSIMILAR_SOCKET", str(daemon.socket_path))
        monkeypatch.delenv("FINDSIMILAR_NO_DAEMON", raising=False)
    return request.param


def photos_with_a_copy(folder: Path, copied: str, copy_name: str = "") -> Path:
    """The PHOTOS in ``folder``, plus a byte-identical copy of ``copied``."""
    folder.mkdir(parents=True)
    for rel in PHOTOS:
        shutil.copy2(shared(rel), folder / Path(rel).name)
    shutil.copyfile(folder / copied, folder / (copy_name or f"copy of {copied}"))
    return folder


def cli_json(*args: str) -> dict:
    from findsimilar.cli.main import cli

    result: Result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- answers: the shapes of the --json outputs ------------------------------------------

def test_index_reports_new_files_and_search_answers_as_search_json(mode: str,
                                                                  tmp_path: Path) -> None:
    copy_name = b"copy of caf\xe9.png"  # not UTF-8: JSON shows it, and gives its bytes
    photos = photos_with_a_copy(tmp_path / "photos", "chelsea.png", os.fsdecode(copy_name))
    (photos / "notes.jpg").write_text("not a picture")
    (photos / "exports").mkdir()
    shutil.copy2(photos / "fruits.jpg", photos / "exports" / "fruits.jpg")
    query = photos / "chelsea.png"
    with Client() as fs:
        summary = fs.index(photos, exclude="exports")
        result = fs.search(query, k=3)
        with pytest.raises(ImageDecodeError) as bad:  # the daemon's error type, here too
            fs.search(photos / "notes.jpg")
    assert summary["new"] == 4 and summary["unchanged"] == 0
    assert [f["path"] for f in summary["failed"]] == [str(photos / "notes.jpg")]
    assert bad.value.exit_code == 4 and str(photos / "notes.jpg") in str(bad.value)
    assert result["query"] == str(query)
    top = result["results"][0]
    assert base64.b64decode(top["path_bytes"]) == os.fsencode(photos) + b"/" + copy_name
    assert top["path"] == f"{photos}/copy of caf\\xe9.png" and top["score"] > 0.99
    assert result == cli_json("--json", "-k", "3", str(query))


def test_duplicates_finds_the_copy_pair_as_dupes_json(mode: str, tmp_path: Path) -> None:
    photos = photos_with_a_copy(tmp_path / "photos", "fruits.jpg")
    with Client() as fs:
        fs.index([photos])
        listing = fs.duplicates(photos, keep_by="oldest,shortest-path")
        with pytest.raises(FindSimilarError, match="unknown tier"):
            fs.duplicates(photos, tiers="nearly")
    exact = [g for g in listing["groups"] if g["tier"] == "exact"]
    assert [sorted(g["files"]) for g in exact] == [
        [str(photos / "copy of fruits.jpg"), str(photos / "fruits.jpg")]]
    assert all(m["stat"] for m in exact[0]["members"])  # disk facts, as `dupes --json`
    printed = cli_json("dupes", "--json", "--keep-by", "oldest,shortest-path", str(photos))
    assert listing["groups"] == printed["groups"]
    assert listing["stats"].keys() == printed["stats"].keys()


def test_status_has_what_status_json_prints(mode: str) -> None:
    with Client() as fs:
        info = fs.status()
    printed = cli_json("status", "--json")
    assert "indexed" in info and info["indexed"] == printed["indexed"]
    # (a "version" as every JSON output has: issue 15, item 5)
    assert info.keys() == {**printed, "version": 1}.keys() and info["version"] == 1
    assert (info["daemon"] is None) == (mode == "in-process")


# -- errors: typed, naming the file ------------------------------------------------------

def test_a_missing_file_raises_an_error_naming_it(mode: str, tmp_path: Path) -> None:
    gone = tmp_path / "gone.jpg"
    with Client() as fs:
        for call in (lambda: fs.search(gone), lambda: fs.index([tmp_path, gone]),
                     lambda: fs.duplicates(keep_in=gone)):
            with pytest.raises(MissingFileError, match=re.escape(str(gone))) as err:
                call()
            assert err.value.exit_code == 3
        with pytest.raises(UsageError):
            fs.search(tmp_path, k=0)


def test_without_a_daemon_nor_autostart_status_reads_the_store_and_search_says_so(
        tmp_path: Path, sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FINDSIMILAR_NO_DAEMON", raising=False)
    photo = photos_with_a_copy(tmp_path / "photos", "chelsea.png") / "chelsea.png"
    config = Config(data_dir=tmp_path / "data", socket_path=sock_dir / "none.sock")
    with Client(config=config, autostart=False) as fs:
        assert fs.status()["daemon"] is None and fs.status()["indexed"] == 0
        with pytest.raises(FindSimilarError, match="no findsimilar daemon") as err:
            fs.search(photo)
    assert err.value.exit_code == EXIT_NO_DAEMON
    assert not (sock_dir / "none.sock").exists()  # nothing was started


def test_import_findsimilar_leaves_the_api_and_the_cli_unimported() -> None:
    """The command line imports the package: it must not pay for the API."""
    code = ("import sys, findsimilar, findsimilar.cli.main\n"
            "print(sorted(m for m in sys.modules if m in ('findsimilar.api', "
            "'findsimilar.cli.backends', 'findsimilar.cli.commands.dupes')))\n"
            "from findsimilar import Client\n"
            "print(Client.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["[]", "findsimilar.api"]


# -- the README's example -----------------------------------------------------------------

def readme_example() -> str:
    section = (REPO / "README.md").read_text().split("### Python API\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "README's Python API section has no python example"
    return found.group(1)


def test_the_readme_example_runs_on_real_photos(tmp_path: Path) -> None:
    pictures = tmp_path / "home" / "Pictures"
    pictures.mkdir(parents=True)
    for rel in ("opencv/fruits.jpg", "opencv/butterfly.jpg"):
        shutil.copy2(shared(rel), pictures / Path(rel).name)
    shutil.copyfile(pictures / "fruits.jpg", pictures / "fruits-copy.jpg")
    env = daemon_env(tmp_path / "data", None, HOME=str(tmp_path / "home"),
                     FINDSIMILAR_NO_DAEMON="1", XDG_CONFIG_HOME=str(tmp_path / "config"),
                     XDG_STATE_HOME=str(tmp_path / "state"))
    done = subprocess.run([sys.executable, "-c", readme_example()], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "3 new, 0 failed"
    matches = [line.split("  ", 1)[1] for line in lines if re.match(r"\d\.\d{3}  ", line)]
    assert sorted(matches) == [str(pictures / "fruits-copy.jpg"), str(pictures / "fruits.jpg")]
    assert f"exact keep {pictures / 'fruits.jpg'} of 2 files" in lines
    assert "3 photos indexed" in lines
    assert lines[-1] == ("error (exit code 3): no such file: "
                         f"{pictures / 'no-such-photo.jpg'}")
    assert os.listdir(tmp_path / "data")  # the store went where FINDSIMILAR_DATA_DIR said
