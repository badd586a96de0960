"""safeio, the one way findsimilar reads the bytes of a path: on real FIFOs, devices,
sockets, folders, symlinks and sparse files (issue 12, case 7)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest

from findsimilar.safeio import (
    FileTooBig,
    NotRegularFile,
    hash_regular,
    megabytes,
    open_regular,
    read_fd,
    read_head,
    read_regular,
)

from ..hostile_corpus import endless_writer

pytestmark = pytest.mark.timeout(30)  # a read that blocks fails the test, not the run

MB = 1 << 20


@pytest.fixture
def endless_fifo(tmp_path: Path):
    fifo = tmp_path / "streaming.jpg"
    os.mkfifo(fifo)
    writer = endless_writer(fifo)
    yield fifo
    writer.kill()
    writer.wait(10)


def special_files(tmp_path: Path) -> dict[str, Path]:
    """One of each kind of path that is not a file to read, named like a photo."""
    (tmp_path / "fifo.jpg").parent.mkdir(exist_ok=True)
    os.mkfifo(tmp_path / "fifo.jpg")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    (tmp_path / "folder.jpg").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "socket.jpg"))
    sock.close()
    return {"FIFO (named pipe)": tmp_path / "fifo.jpg", "character device": Path("/dev/zero"),
            "socket": tmp_path / "socket.jpg", "folder": tmp_path / "folder.jpg"}


def test_every_kind_of_special_file_is_refused_by_name_without_waiting(tmp_path):
    for kind, path in special_files(tmp_path).items():
        for read in (lambda p: open_regular(p), lambda p: read_regular(p, MB),
                     lambda p: read_head(p, 16), lambda p: hash_regular(p)):
            with pytest.raises(NotRegularFile) as caught:
                read(path)
            assert caught.value.strerror == f"not a regular file but a {kind}"
            assert caught.value.filename == str(path)


def test_a_symlink_to_a_device_is_refused_whether_followed_or_not(tmp_path):
    special_files(tmp_path)
    with pytest.raises(NotRegularFile, match="character device"):
        read_regular(tmp_path / "zero.jpg", MB)
    with pytest.raises(OSError):  # ELOOP: hash_regular does not follow links
        hash_regular(tmp_path / "zero.jpg")


def test_a_fifo_with_a_writer_that_never_stops_is_refused_not_read(endless_fifo):
    with pytest.raises(NotRegularFile, match="FIFO"):
        read_regular(endless_fifo, MB)
    with pytest.raises(NotRegularFile, match="FIFO"):
        read_head(endless_fifo, 16)


def test_a_huge_sparse_file_is_refused_before_a_byte_is_read(tmp_path):
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as fh:
        fh.truncate(1 << 40)  # 1 TB, no blocks
    with pytest.raises(FileTooBig) as caught:
        read_regular(huge, 48 * MB)
    assert (caught.value.size, caught.value.limit) == (1 << 40, 48 * MB)
    assert caught.value.filename == str(huge)
    assert "1,048,576 MB; the limit is 48 MB" in caught.value.strerror
    assert read_head(huge, 16) == bytes(16)


def test_a_file_that_holds_more_than_its_size_says_is_cut_at_the_limit():
    # /proc files are regular files of size 0 with bytes in them, like a file that
    # grows between the size check and the read.
    fd = open_regular("/proc/self/maps")
    try:
        with pytest.raises(FileTooBig, match="too big to read"):
            read_fd(fd, 64, "/proc/self/maps")
    finally:
        os.close(fd)


def test_regular_files_read_whole_from_where_the_descriptor_stands(tmp_path):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"0123456789")
    assert read_regular(photo, 10) == b"0123456789"
    with pytest.raises(FileTooBig):
        read_regular(photo, 9)
    assert read_head(photo, 4) == b"0123" and read_head(photo, 99) == b"0123456789"
    fd = open_regular(photo)
    try:
        os.lseek(fd, 6, os.SEEK_SET)
        assert read_fd(fd, 4, photo) == b"6789"
    finally:
        os.close(fd)
    digest, st = hash_regular(photo)
    assert digest == hashlib.blake2b(b"0123456789", digest_size=16).hexdigest()
    assert st.st_ino == photo.stat().st_ino


def test_sizes_are_said_in_megabytes():
    assert megabytes(48 * MB) == "48 MB"
    assert megabytes(1 << 40) == "1,048,576 MB"
    assert megabytes(MB // 2) == "512 KB" and megabytes(10) == "10 bytes"
