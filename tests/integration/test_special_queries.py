"""Special files as queries (issue 12, case 7): `findsimilar fifo.jpg` used to block for
ever, and `findsimilar /dev/zero` (or a .jpg symlink to it) to read until the OOM killer
came, because the CLI retried what the daemon refused by reading the path itself.

Every query here is a real `findsimilar` process, through a real daemon and with
--no-daemon, under a subprocess timeout (a hang fails the test, it does not stall the
run) and an address-space cap (an endless read fails as MemoryError, not by the OOM
killer). Each must be answered at once, with a message naming the file and the exit
code the README documents; the daemon must stay up and answer a real query correctly.

When the tests run as root (as in CI) the daemon runs without CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH (setpriv), so a file only the CLI may read exists: the case the
CLI's retry-by-bytes is for.
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from findsimilar.errors import EXIT_MISSING_FILE, EXIT_UNREADABLE_IMAGE

from ..conftest import shared
from ..hostile_corpus import endless_writer
from .daemon_harness import DaemonProcess, module_daemon, top_paths

PHOTOS = ["opencv/butterfly.jpg", "skimage/coffee.png", "mate/Storm.jpg"]
CLI_TIMEOUT = 30  # seconds; answers take well under one, a hang takes for ever
# The CLI's address space: enough for torch (--no-daemon), far from the machine's RAM.
CLI_MEMORY = 4 << 30
PRIVILEGED = os.geteuid() == 0
SETPRIV = shutil.which("setpriv")


class Library(DaemonProcess):
    photos: Path
    queries: Path


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    """One daemon for the module: PHOTOS indexed, each with a byte-identical twin (so a
    query has one right answer); under setpriv when root (see the module docstring)."""
    base = tmp_path_factory.mktemp("special")
    photos, queries = base / "photos", base / "queries"
    photos.mkdir()
    queries.mkdir()
    for rel in PHOTOS:
        for name in (Path(rel).name, f"twin-{Path(rel).name}"):
            shutil.copyfile(shared(rel), photos / name)
    command = [sys.executable, "-m", "findsimilar", "daemon", "run"]
    if PRIVILEGED and SETPRIV:
        command = [SETPRIV, "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    with module_daemon(base, command, cls=Library, FINDSIMILAR_PRECHECK_AFTER="0") as daemon:
        daemon.photos, daemon.queries = photos, queries
        assert daemon.call("index", paths=[str(photos)])["new"] == 2 * len(PHOTOS)
        yield daemon


@pytest.fixture(scope="module")
def specials(library: Library) -> Iterator[dict[str, tuple[Path, str]]]:
    """Each special query -> (path, what the message must call it)."""
    q = library.queries
    os.mkfifo(q / "fifo.jpg")
    os.mkfifo(q / "streaming.jpg")
    writer = endless_writer(q / "streaming.jpg")
    (q / "zero.jpg").symlink_to("/dev/zero")
    (q / "folder.jpg").mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(q / "socket.jpg"))
    try:
        yield {"fifo": (q / "fifo.jpg", "FIFO (named pipe)"),
               "fifo with an endless writer": (q / "streaming.jpg", "FIFO (named pipe)"),
               "/dev/zero": (Path("/dev/zero"), "character device"),
               "a .jpg symlink to /dev/zero": (q / "zero.jpg", "character device"),
               "/dev/urandom": (Path("/dev/urandom"), "character device"),
               "socket": (q / "socket.jpg", "socket"),
               "folder": (q / "folder.jpg", "folder")}
    finally:
        listener.close()
        writer.kill()
        writer.wait(10)


def sparse(path: Path, size: int, head: bytes = b"") -> Path:
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)
    return path


def findsimilar(library: Library, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a process of its own, bounded in time and memory."""
    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CLI_MEMORY, CLI_MEMORY))

    try:
        return subprocess.run([sys.executable, "-m", "findsimilar", *args], env=library.env,
                              capture_output=True, text=True, timeout=CLI_TIMEOUT,
                              preexec_fn=cap_memory)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"`findsimilar {' '.join(args)}` still runs after "
                             f"{CLI_TIMEOUT} s") from None


def assert_still_serves(library: Library) -> None:
    assert library.alive(), library.log()
    photo = library.photos / "butterfly.jpg"
    assert top_paths(library.search(photo, k=3)) == {str(library.photos / "twin-butterfly.jpg")}


@pytest.mark.parametrize("kind", ["fifo", "fifo with an endless writer", "/dev/zero",
                                  "a .jpg symlink to /dev/zero", "/dev/urandom", "socket",
                                  "folder"])
def test_a_special_file_as_a_query_is_refused_at_once_naming_it(library, specials, kind):
    path, called = specials[kind]
    result = findsimilar(library, str(path))
    assert result.returncode == EXIT_MISSING_FILE, result.stderr
    assert result.stderr.strip() == \
        f"findsimilar: error: not a regular file but a {called}: {path}"
    assert_still_serves(library)


@pytest.mark.parametrize("daemon", [True, False], ids=["daemon", "no-daemon"])
def test_indexing_a_special_file_by_name_is_refused_naming_it(library, specials, daemon):
    """`findsimilar index fifo.jpg` used to answer "0 new, ... 0 failed" as if it had
    indexed something; a folder is what `index` takes, so it is not refused."""
    for kind in ("fifo", "a .jpg symlink to /dev/zero", "socket"):
        path, called = specials[kind]
        args = ["index", str(path)] if daemon else ["index", "--no-daemon", str(path)]
        result = findsimilar(library, *args)
        assert result.returncode == EXIT_MISSING_FILE, (kind, result.stdout, result.stderr)
        assert result.stderr.strip() == \
            f"findsimilar: error: not a photo or a folder but a {called}: {path}"
    assert_still_serves(library)


def test_a_huge_sparse_query_is_answered_as_not_an_image_without_being_read(library):
    huge = sparse(library.queries / "huge.jpg", 1 << 40)  # 1 TB, no blocks
    result = findsimilar(library, str(huge))
    assert result.returncode == EXIT_UNREADABLE_IMAGE, result.stderr
    assert result.stderr.strip() == f"findsimilar: error: {huge}: not a recognised image format"
    assert_still_serves(library)


def test_a_big_query_is_decoded_from_its_path_not_read_into_the_daemons_memory(library):
    # A real photo followed by 1 GB of nothing: a photo, but far past the size the
    # daemon reads into memory (64 MB). It used to be read whole.
    big = sparse(library.queries / "big.jpg", 1 << 30,
                 (library.photos / "butterfly.jpg").read_bytes())
    peak_before = vm_hwm_mb(library.pid)
    result = findsimilar(library, "--json", str(big))
    assert result.returncode == 0, result.stderr
    assert '"score": 1.0' in result.stdout and "twin-butterfly.jpg" in result.stdout
    assert vm_hwm_mb(library.pid) - peak_before < 256  # MB; reading it whole: 1024
    assert_still_serves(library)


def test_special_files_are_refused_without_a_daemon_too(library, specials):
    paths = [str(path) for path, _ in specials.values()]
    photo = str(library.photos / "coffee.png")
    result = findsimilar(library, "--no-daemon", *paths, photo)
    assert result.returncode == EXIT_MISSING_FILE, result.stderr
    for path, called in specials.values():
        assert f"not a regular file but a {called}: {path}\n" in result.stderr
    assert f"# {photo}\n1.0000  {library.photos / 'twin-coffee.png'}\n" in result.stdout
    huge = sparse(library.queries / "huge-local.jpg", 1 << 40)
    result = findsimilar(library, "--no-daemon", str(huge))
    assert result.returncode == EXIT_UNREADABLE_IMAGE, result.stderr
    assert result.stderr.strip() == f"findsimilar: error: {huge}: not a recognised image format"


needs_private_file = pytest.mark.skipif(
    not (PRIVILEGED and SETPRIV),
    reason="a file the CLI may read and the daemon may not needs root and setpriv")


@needs_private_file
def test_a_photo_only_the_cli_may_read_is_searched_by_its_bytes(library):
    private = library.queries / "private.jpg"
    shutil.copyfile(library.photos / "Storm.jpg", private)
    private.chmod(0)
    result = findsimilar(library, "--json", str(private))
    assert result.returncode == 0, result.stderr
    assert '"score": 1.0' in result.stdout and "twin-Storm.jpg" in result.stdout


@needs_private_file
def test_a_private_file_too_big_to_send_is_refused_naming_it(library):
    big = sparse(library.queries / "private-big.jpg", 100 << 20)
    big.chmod(0)
    result = findsimilar(library, str(big))
    assert result.returncode == EXIT_UNREADABLE_IMAGE, result.stderr
    assert result.stderr.strip() == (
        f"findsimilar: error: cannot read {big}: Permission denied; and at 100 MB the file "
        "is too big to send to the daemon instead (the limit is 48 MB): make it readable to "
        "the daemon's user, or search with --no-daemon")
    assert_still_serves(library)


def vm_hwm_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")
