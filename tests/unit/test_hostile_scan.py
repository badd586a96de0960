"""scan against what a folder holds besides photos: links the watcher reports, special
files named as roots, signatures of damaged files."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from findsimilar.daemon.indexing.scanner import scan, signature_format
from tests.hostile_corpus import encode, hostile_files

from ..conftest import shared


def paths(*roots: Path, explicit_files: bool) -> list[str]:
    return [f.path for f in scan([str(r) for r in roots], explicit_files=explicit_files)]


def test_a_link_to_its_own_folder_reported_by_the_watcher_is_not_followed(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(shared("opencv/fruits.jpg").read_bytes())
    (tmp_path / "loop").symlink_to(".", target_is_directory=True)

    assert paths(tmp_path / "loop", explicit_files=False) == []
    # The user naming the link is another matter: ~/Pictures may be one.
    assert paths(tmp_path / "loop", explicit_files=True) == [str(tmp_path / "loop/photo.jpg")]


@pytest.mark.timeout(10)
@pytest.mark.parametrize("explicit_files", [True, False])
def test_fifos_sockets_devices_and_dangling_links_named_as_roots_yield_nothing(
        tmp_path, explicit_files):
    os.mkfifo(tmp_path / "fifo.jpg")
    short = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(short / "s"))
        (tmp_path / "zeros.jpg").symlink_to("/dev/zero")
        (tmp_path / "self.jpg").symlink_to("self.jpg")
        roots = [tmp_path / n for n in ("fifo.jpg", "zeros.jpg", "self.jpg")]
        assert paths(*roots, short / "s", Path("/dev/null"),
                     explicit_files=explicit_files) == []
    os.unlink(short / "s")
    short.rmdir()


def test_damaged_files_of_every_format_are_named_by_their_signature():
    cases = {h.name: h.data for h in hostile_files(shared("opencv/fruits.jpg"))}

    assert signature_format(cases["random-after-jpeg-signature.jpg"]) == "JPEG"
    assert signature_format(cases["cut.webp"]) == "WebP"
    assert signature_format(cases["cut.heic"]) == "HEIF"
    assert signature_format(cases["cut.tif"]) == "TIFF"
    assert signature_format(cases["really-a-png.jpg"]) == "PNG"
    assert signature_format(encode(Image.new("RGB", (40, 30)), "AVIF")) == "AVIF"
    assert signature_format(cases["random-bytes.jpg"]) is None
    assert signature_format(b"") is None
