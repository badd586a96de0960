"""Thunar, Nemo and Geeqie run "Find similar photos" for real (issue 16, item 5).

Each host is the Debian program itself, started headless on a :class:`HostSession`
(Xvfb, a private session bus, a private HOME) on a folder of three photos: a plain name,
a hard one (space, both quotes, `$`, accents, CJK) and one with a newline. The
integrations are installed as a user installs them, `findsimilar integrate install
thunar nemo geeqie`, with a recorder standing in for the findsimilar executable (at a
path with a space, a % and an accent): it writes the argv it gets, NUL-separated. Then a
user's steps, through the accessibility bus (AT-SPI, host_probes_xfce/choose_menu_item.py):
Edit > Select All, then the keyboard's context-menu key (Thunar, Nemo), or Geeqie's
Plugins menu and then its right-click menu's Plugins submenu, then "Find similar
photos". So the host itself reads our file (Thunar's uca.xml, Nemo's .nemo_action,
Geeqie's desktop file) from where it looks, decides to offer the item for these files,
expands %F with its own quoting and starts the command: the recorder must get exactly
`show --notify -- FILE...`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..conftest import shared
from .hosts import SYSTEM_PYTHON, HostSession, host_session, needs_host, tail

PROBE = Path(__file__).resolve().parent / "host_probes_xfce" / "choose_menu_item.py"
PHOTOS = {"b plain.jpg": "opencv/baboon.jpg",
          "it's \"café\" $HOME 日本.jpg": "opencv/fruits.jpg",
          "two\nlines.jpg": "opencv/HappyFish.jpg"}
N = len(PHOTOS)
LABEL = "Find similar photos"
# What a user needs besides the host: AT-SPI's Python bindings and a key to press.
PROBE_TOOLS = ("xdotool", "/usr/lib/python3/dist-packages/pyatspi/__init__.py")
PROBE_PACKAGES = "xdotool python3-pyatspi at-spi2-core"


@dataclass
class Desktop:
    session: HostSession
    folder: Path
    photos: list[str]
    record: Path


@pytest.fixture(scope="module")
def desktop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Desktop]:
    """One headless desktop for the module, the three integrations installed into it."""
    base = tmp_path_factory.mktemp("desktop")
    with host_session(base) as session:
        folder = session.home / "My Photos"
        folder.mkdir()
        photos = []
        for name, rel in PHOTOS.items():
            shutil.copyfile(shared(rel), folder / name)
            photos.append(str(folder / name))
        record = base / "argv.bin"
        recorder = base / "opt 100% dir" / "find similär"
        recorder.parent.mkdir()
        recorder.write_text(
            "#!/bin/sh\n"
            f"printf '%s\\0' \"$@\" > {shlex.quote(str(record))}.tmp\n"
            f"mv {shlex.quote(str(record))}.tmp {shlex.quote(str(record))}\n")
        recorder.chmod(0o755)
        installed = subprocess.run(
            [sys.executable, "-m", "findsimilar", "integrate", "install", "--command",
             str(recorder), "thunar", "nemo", "geeqie"],
            capture_output=True, text=True, env=session.env(), timeout=120)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        yield Desktop(session, folder, photos, record)


def host_version(program: str, desktop: Desktop) -> str:
    """'thunar 4.18.4 (Xfce 4.18)', 'nemo 5.6.4', 'Geeqie 2.0.1 GTK3': for the report."""
    out = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=60,
                         env=desktop.session.env())
    found = re.search(rf"^{program}\b.*\d+\.\d+.*$", out.stdout + out.stderr, re.M | re.I)
    assert found, f"{program} --version said: {out.stdout}{out.stderr}"
    return found.group()


def run_host(desktop: Desktop, name: str, argv: list[str],
             *probes: list[str]) -> list[list[str]]:
    """Start the host; for each probe, choose the item as a user does and take the argv
    findsimilar got. One host start for all of them."""
    session = desktop.session
    log = session.base / f"{name}.log"
    # NO_AT_BRIDGE=0: GTK loads its accessibility bridge (HostSession turns it off).
    host = session.launch(argv, log, NO_AT_BRIDGE="0")
    got = []
    try:
        for probe_args in probes:
            desktop.record.unlink(missing_ok=True)
            probe = subprocess.run([SYSTEM_PYTHON, str(PROBE), name, *probe_args],
                                   capture_output=True, text=True,
                                   env=session.env(NO_AT_BRIDGE="0"), timeout=150)
            if probe.returncode != 0:
                state = "running" if host.poll() is None else f"exited ({host.returncode})"
                pytest.fail(f"{name} ({state}): {probe.stderr.strip()}\n{probe.stdout}"
                            f"--- {name} log:\n{tail(log)}")
            session.wait_for_file(desktop.record, host, log, timeout=30)
            got.append([os.fsdecode(a) for a in desktop.record.read_bytes().split(b"\0")[:-1]])
        return got
    finally:
        HostSession.stop(host)


def expect_show(argv: list[str], desktop: Desktop, version: str) -> None:
    assert argv[:3] == ["show", "--notify", "--"], (version, argv)
    assert sorted(argv[3:]) == sorted(desktop.photos), (version, argv)


@needs_host("thunar", *PROBE_TOOLS, package=f"thunar {PROBE_PACKAGES}")
def test_thunar_context_menu_runs_show_with_the_selected_files(
        desktop: Desktop, record_property: pytest.RecordProperty) -> None:
    version = host_version("thunar", desktop)
    record_property("host", version)
    [argv] = run_host(desktop, "thunar", ["thunar", str(desktop.folder)], [
        "Edit/Select all Files", rf"^Selection: {N} files", "--context-menu",
        f"{desktop.folder.name} - Thunar", LABEL])
    expect_show(argv, desktop, version)


@needs_host("nemo", *PROBE_TOOLS, package=f"nemo {PROBE_PACKAGES}")
def test_nemo_context_menu_runs_show_with_the_selected_files(
        desktop: Desktop, record_property: pytest.RecordProperty) -> None:
    version = host_version("nemo", desktop)
    record_property("host", version)
    [argv] = run_host(desktop, "nemo", ["nemo", "--no-desktop", str(desktop.folder)], [
        "Edit/Select All", rf"^{N} items selected", "--context-menu", desktop.folder.name, LABEL])
    expect_show(argv, desktop, version)


@needs_host("geeqie", *PROBE_TOOLS, package=f"geeqie {PROBE_PACKAGES}")
def test_geeqie_plugins_menus_run_show_with_the_selected_files(
        desktop: Desktop, record_property: pytest.RecordProperty) -> None:
    version = host_version("geeqie", desktop)
    record_property("host", version)
    # Geeqie's file list says "SIZE, N files (SELECTED SIZE, SELECTED COUNT)".
    select = ["Select/Select all", rf"\b{N} files \([^)]*, {N}\)"]
    from_menu, from_right_click = run_host(
        desktop, "geeqie", ["geeqie", desktop.photos[0]],
        [*select, "--menu", "Plugins", LABEL],  # the menu bar's Plugins menu
        [*select, "--right-click", Path(desktop.photos[0]).name, f"Plugins/{LABEL}"])
    expect_show(from_menu, desktop, version)
    expect_show(from_right_click, desktop, version)
