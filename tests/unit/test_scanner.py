"""scan: every picture in the user's folders is found; caches and trash are not; nothing hangs."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from findsimilar.daemon.indexing.scanner import ScanProblem, looks_like_image, scan
from findsimilar.daemon.model.decode import register_plugins
from tests.conftest import SHARED  # honours FINDSIMILAR_SHARED_PHOTOS

PHOTOS = SHARED
register_plugins()  # lets Pillow write HEIC test files


# -- helpers -------------------------------------------------------------------

def picture_bytes(fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 30, 30)).save(buffer, fmt, **options)
    return buffer.getvalue()


def put(path: Path, data: bytes | str = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def found(*roots: Path, **options: object) -> set[str]:
    """Paths that scan yields, relative to the first root."""
    return {os.path.relpath(f.path, roots[0]) for f in scan([str(r) for r in roots], **options)}


# -- what counts as a picture ----------------------------------------------------

def test_pictures_are_found_in_nested_folders_by_extension_in_any_case(tmp_path):
    for name in ("a.jpg", "2024/b.JPEG", "2024/june/c.png", "2024/june/d.HEIC", "e.webp",
                 "f.tif", "g.avif", "h.gif", "i.bmp", "j.pgm"):
        put(tmp_path / name, picture_bytes())

    assert found(tmp_path) == {"a.jpg", "2024/b.JPEG", "2024/june/c.png", "2024/june/d.HEIC",
                               "e.webp", "f.tif", "g.avif", "h.gif", "i.bmp", "j.pgm"}


def test_scanned_file_carries_the_files_size_mtime_and_inode(tmp_path):
    photo = put(tmp_path / "photo.jpg", picture_bytes())

    (scanned,) = scan([str(tmp_path)])

    st = photo.stat()
    assert scanned.path == str(photo)
    assert (scanned.size, scanned.mtime_ns, scanned.inode) == (st.st_size, st.st_mtime_ns,
                                                              st.st_ino)


def test_mislabeled_jpeg_named_txt_is_found_by_its_signature(tmp_path):
    put(tmp_path / "scan0001.txt", picture_bytes("JPEG"))
    put(tmp_path / "shopping.txt", "milk, eggs\n")

    assert found(tmp_path) == {"scan0001.txt"}


@pytest.mark.parametrize(("fmt", "options"), [
    ("JPEG", {}), ("PNG", {}), ("GIF", {}), ("BMP", {}), ("TIFF", {}), ("WEBP", {}),
    ("PPM", {}), ("AVIF", {}), ("HEIF", {}),
])
def test_every_decodable_format_is_recognised_by_its_first_bytes(tmp_path, fmt, options):
    data = picture_bytes(fmt, **options)
    put(tmp_path / "download.bin", data)

    assert looks_like_image(data[:16])
    assert found(tmp_path) == {"download.bin"}


def test_greyscale_and_bilevel_netpbm_files_are_recognised_by_their_first_bytes():
    for mode, fmt in (("L", "PPM"), ("1", "PPM")):
        buffer = io.BytesIO()
        Image.new(mode, (8, 8)).save(buffer, fmt)
        assert looks_like_image(buffer.getvalue()[:16]), mode


def test_text_and_other_files_are_not_taken_for_pictures(tmp_path):
    put(tmp_path / "README", "Photos from the trip\n")
    put(tmp_path / "notes.md", "# P1 is the best one\n")
    put(tmp_path / "Plan.doc", "P1anning")  # starts with P1 but is no PBM
    put(tmp_path / "song.mp3", b"ID3\x03\x00" + bytes(100))
    put(tmp_path / "movie.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    put(tmp_path / "empty.dat", b"")

    assert found(tmp_path) == set()
    assert not looks_like_image(b"")


def test_jpg_that_is_really_text_is_still_yielded_so_it_can_be_recorded_as_failed(tmp_path):
    put(tmp_path / "IMG_0001.jpg", "this is not a picture\n")

    assert found(tmp_path) == {"IMG_0001.jpg"}


def test_real_photo_folder_with_wrong_extensions_is_found_completely(tmp_path):
    shutil.copytree(PHOTOS / "imagededup/formats", tmp_path / "formats")

    names = found(tmp_path / "formats")

    # .svg holds JPEG bytes: it is found by its signature, not its name.
    assert names == {p.name for p in (PHOTOS / "imagededup/formats").iterdir()}
    assert "ukbench09380.svg" in names


def test_a_file_named_as_root_is_yielded_whatever_its_name(tmp_path):
    notes = put(tmp_path / "picked-by-the-user.txt", "hello\n")

    assert [f.path for f in scan([str(notes)])] == [str(notes)]


def test_known_file_is_yielded_without_looking_at_its_content(tmp_path):
    renamed = put(tmp_path / "holiday.backup", "no signature here")
    known = {str(renamed): (1, 1)}

    assert found(tmp_path, known=known) == {"holiday.backup"}


XMP = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
       '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">\n'
       ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
       '  <rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/" '
       'darktable:xmp_version="5"/>\n </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end="w"?>\n')


def test_sidecars_are_never_taken_for_photos_even_when_named_or_already_known(tmp_path):
    """XMP (darktable, digiKam), RawTherapee .pp3 and DxO .dop edit files beside photos:
    none is a candidate, found in a folder, named as a root, or stored before (issue 16)."""
    photo = put(tmp_path / "IMG_1.JPG", picture_bytes())
    sidecars = [put(tmp_path / "IMG_1.JPG.xmp", XMP), put(tmp_path / "IMG_1.xmp", XMP),
                put(tmp_path / "IMG_1.JPG.XMP", XMP), put(tmp_path / "IMG_1.JPG.pp3",
                                                          "[Version]\nAppVersion=5.9\n"),
                put(tmp_path / "IMG_1.JPG.dop", "Sidecar = {\n}\n")]

    assert not looks_like_image(XMP.encode()[:16])
    assert found(tmp_path) == {"IMG_1.JPG"}
    assert [f.path for f in scan([str(s) for s in [photo, *sidecars]])] == [str(photo)]
    known = {str(s): (1, 1) for s in sidecars}
    assert found(tmp_path, known=known) == {"IMG_1.JPG"}


# -- folders that never hold the user's photos ------------------------------------------

@pytest.mark.parametrize("folder", [
    ".hidden", ".thumbnails", "@eaDir", ".Trash-1000", "#recycle", "$RECYCLE.BIN", "lost+found",
    "album/.thumbnails/normal", "album/@eaDir/IMG_1.jpg",
])
def test_hidden_cache_and_trash_folders_are_skipped(tmp_path, folder):
    put(tmp_path / "album/kept.jpg", picture_bytes())
    put(tmp_path / folder / "skipped.jpg", picture_bytes())

    assert found(tmp_path) == {"album/kept.jpg"}


def test_extra_exclude_patterns_skip_matching_folders(tmp_path):
    put(tmp_path / "kept/a.jpg", picture_bytes())
    put(tmp_path / "export-2024/b.jpg", picture_bytes())

    assert found(tmp_path, exclude=["export-*"]) == {"kept/a.jpg"}


def test_root_itself_may_be_a_hidden_folder(tmp_path):
    put(tmp_path / ".photos/a.jpg", picture_bytes())

    assert found(tmp_path / ".photos") == {"a.jpg"}


# -- symlinks, FIFOs, missing and unreadable folders ------------------------------------

def test_symlinked_file_and_folder_inside_a_root_are_not_followed(tmp_path):
    outside = tmp_path / "elsewhere"
    put(outside / "linked-folder-photo.jpg", picture_bytes())
    target = put(outside / "target.jpg", picture_bytes())
    root = tmp_path / "root"
    put(root / "real.jpg", picture_bytes())
    (root / "link.jpg").symlink_to(target)
    (root / "linked-folder").symlink_to(outside, target_is_directory=True)

    assert found(root) == {"real.jpg"}


def test_symlink_loop_does_not_trap_the_scan(tmp_path):
    put(tmp_path / "a/photo.jpg", picture_bytes())
    (tmp_path / "a/loop").symlink_to(tmp_path, target_is_directory=True)

    assert found(tmp_path) == {"a/photo.jpg"}


def test_root_that_is_a_symlink_to_a_folder_is_scanned(tmp_path):
    # ~/Pictures -> /mnt/data/Pictures is a common setup; the user named the link.
    put(tmp_path / "disk/Pictures/a.jpg", picture_bytes())
    pictures = tmp_path / "Pictures"
    pictures.symlink_to(tmp_path / "disk/Pictures", target_is_directory=True)

    assert [f.path for f in scan([str(pictures)])] == [str(pictures / "a.jpg")]


@pytest.mark.timeout(10)
def test_fifo_named_like_a_picture_does_not_hang_and_is_not_yielded(tmp_path):
    put(tmp_path / "real.jpg", picture_bytes())
    os.mkfifo(tmp_path / "x.jpg")
    os.mkfifo(tmp_path / "no-extension")

    assert found(tmp_path) == {"real.jpg"}
    assert list(scan([str(tmp_path / "x.jpg")])) == []


def test_missing_root_is_a_problem_not_a_crash(tmp_path):
    put(tmp_path / "here/a.jpg", picture_bytes())
    problems: list[ScanProblem] = []

    names = found(tmp_path / "here", tmp_path / "gone", problems=problems)

    assert names == {"a.jpg"}
    assert [p.path for p in problems] == [str(tmp_path / "gone")]
    assert "No such file" in problems[0].reason


def scan_as_unprivileged(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Scan in a child process that file permissions apply to, even when tests run as root."""
    code = (
        "import json, sys\n"
        "from findsimilar.daemon.indexing.scanner import scan\n"
        "problems = []\n"
        "paths = [f.path for f in scan([sys.argv[1]], problems=problems)]\n"
        "print(json.dumps([paths, [vars(p) for p in problems]]))\n"
    )
    command = [sys.executable, "-c", code, str(root)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root and setpriv is missing: permissions cannot be tested")
        # Root without these capabilities obeys file modes like any other user.
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    paths, problems = json.loads(result.stdout)
    return paths, problems


def test_unreadable_folder_is_recorded_as_a_problem_and_the_rest_is_scanned(tmp_path):
    put(tmp_path / "open/a.jpg", picture_bytes())
    locked = tmp_path / "locked"
    put(locked / "b.jpg", picture_bytes())
    locked.chmod(0)
    try:
        paths, problems = scan_as_unprivileged(tmp_path)
    finally:
        locked.chmod(0o755)

    assert paths == [str(tmp_path / "open/a.jpg")]
    assert problems == [{"path": str(locked), "reason": "Permission denied"}]


def test_unreadable_file_without_an_image_extension_is_recorded_as_a_problem(tmp_path):
    put(tmp_path / "a.jpg", picture_bytes())
    secret = put(tmp_path / "mystery", picture_bytes())
    secret.chmod(0)

    paths, problems = scan_as_unprivileged(tmp_path)

    assert paths == [str(tmp_path / "a.jpg")]
    assert problems == [{"path": str(secret), "reason": "Permission denied"}]
