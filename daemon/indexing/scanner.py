"""Find candidate image files under folders, cheaply.

A file is a candidate when its extension is an image extension *or* its first
bytes are an image signature: mislabeled pictures are found, and a ``.jpg``
that is not a picture is tried (and recorded as failed with a reason). Files
with neither are not images and are ignored silently, and so are sidecars
(``.xmp``, ``.pp3``, ``.dop``: :mod:`findsimilar.sidecars`), even when named. Only ``stat`` and a
16-byte read are spent per file here; hashing happens later and only for
files that changed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from findsimilar.errors import MissingFileError, NotRegularFileError
from findsimilar.rawpairs import RAW_EXTENSIONS
from findsimilar.safeio import file_kind
from findsimilar.sidecars import is_sidecar

__all__ = ["IMAGE_EXTENSIONS", "RAW_EXTENSIONS", "ScannedFile", "ScanProblem", "check_index_paths",
           "is_excluded_dir", "looks_like_image", "scan", "signature_format"]

IMAGE_EXTENSIONS = RAW_EXTENSIONS | frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".tif", ".tiff", ".bmp",
    ".dib", ".gif", ".pnm", ".pbm", ".pgm", ".ppm", ".pam", ".heic", ".heif", ".hif",
    ".avif", ".avifs",
    ".jxl",
})

# Folders that hold caches, trash or NAS metadata, never the user's photos.
EXCLUDED_DIRS = ("@eaDir", ".thumbnails", "#recycle", "$RECYCLE.BIN", "lost+found")
EXCLUDED_DIR_GLOBS = (".Trash-*",)

_FTYP_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs",
                b"mif1", b"msf1", b"avif", b"avis")


@dataclass(frozen=True)
class ScannedFile:
    path: str
    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int = 0


@dataclass(frozen=True)
class ScanProblem:
    path: str
    reason: str


def looks_like_image(head: bytes) -> bool:
    """True if ``head`` (the first 16+ bytes) starts like a format we decode."""
    return signature_format(head) is not None


def signature_format(head: bytes) -> str | None:
    """The image format ``head`` (the first 16+ bytes) starts like, or None."""
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"1234567" and head[2:3].isspace():
        return "PNM"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "JPEG XL"  # a bare codestream, or the ISO BMFF container
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00", b"FOVb") or head[:8] == b"FUJIFILM" \
            or head[4:12] == b"ftypcrx ":
        return "RAW"  # non-TIFF camera RAW (ORF, RW2, X3F, RAF, CR3)
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return "AVIF" if head[8:12] in (b"avif", b"avis") else "HEIF"
    return None


def is_excluded_dir(name: str, extra_globs: Iterable[str] = ()) -> bool:
    if name.startswith(".") or name in EXCLUDED_DIRS:
        return True
    return any(fnmatch.fnmatch(name, g) for g in (*EXCLUDED_DIR_GLOBS, *extra_globs))


def _read_head(path: str) -> bytes:
    # O_NONBLOCK: never hang on a FIFO that slipped past the type check.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    try:
        return os.read(fd, 16)
    finally:
        os.close(fd)


def scan(roots: Iterable[str], *, known: dict[str, tuple[int, int]] | None = None,
         exclude: Iterable[str] = (), problems: list[ScanProblem] | None = None,
         explicit_files: bool = True,
         skip: Callable[[str], bool] | None = None) -> Iterator[ScannedFile]:
    """Yield candidate image files under ``roots`` (absolute paths).

    ``known`` maps already-stored paths to (size, mtime_ns): such files skip the
    signature read. Unreadable folders and files go to ``problems``.
    Symlinks found while walking are not followed, but a root that is a
    symlink to a folder is when ``explicit_files`` (``~/Pictures`` often points
    at another disk). Hidden and cache folders are skipped. A root that is a
    file is always a candidate when ``explicit_files`` (the user named it), else
    only when it looks like an image (the watcher reporting any file that
    changed: a symlink it reports is one found in a folder, so it is not
    followed either, or a link to ``.`` would index the folder again under it).
    ``skip(path)`` True leaves a file or a folder (and all under it) out, roots too
    (``index --exclude``: ``dupes.scope.excluder``).
    """
    known = known or {}
    exclude = tuple(exclude)
    for root in roots:
        if skip is not None and skip(root):
            continue
        try:
            st = os.stat(root, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode) and explicit_files and os.path.isdir(root):
                st = os.stat(root)
        except OSError as exc:
            _note(problems, root, exc)
            continue
        if stat.S_ISREG(st.st_mode):
            yield from _consider(root, st, known, problems, explicit=explicit_files)
        elif stat.S_ISDIR(st.st_mode):
            yield from _walk(root, known, exclude, problems, skip)


def _walk(top: str, known: dict[str, tuple[int, int]], exclude: tuple[str, ...],
          problems: list[ScanProblem] | None,
          skip: Callable[[str], bool] | None = None) -> Iterator[ScannedFile]:
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            _note(problems, folder, exc)
            continue
        subdirs = []
        for entry in entries:
            if skip is not None and skip(entry.path):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not is_excluded_dir(entry.name, exclude):
                        subdirs.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    yield from _consider(entry.path, entry.stat(follow_symlinks=False), known,
                                         problems)
            except OSError as exc:
                _note(problems, entry.path, exc)
        stack.extend(reversed(subdirs))


def _consider(path: str, st: os.stat_result, known: dict[str, tuple[int, int]],
              problems: list[ScanProblem] | None, explicit: bool = False) -> Iterator[ScannedFile]:
    if not stat.S_ISREG(st.st_mode) or is_sidecar(path):  # an edit file is never a photo
        return
    record = ScannedFile(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    if path in known:
        yield record
        return
    if explicit or os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS:
        yield record
        return
    try:
        if looks_like_image(_read_head(path)):
            yield record
    except OSError as exc:
        _note(problems, path, exc)


def _note(problems: list[ScanProblem] | None, path: str, exc: OSError) -> None:
    if problems is not None:
        problems.append(ScanProblem(path, exc.strerror or str(exc)))


def check_index_paths(paths: Sequence[str]) -> None:
    """Refuse what `index` is asked for by name that cannot be indexed at all: a path that
    is not there (MissingFileError) or a FIFO, device or socket (NotRegularFileError).
    An unreadable path passes: the indexer records why it failed."""
    for p in paths:
        if not os.path.lexists(p):
            raise MissingFileError(f"no such file or folder: {p}")
        with contextlib.suppress(OSError):
            mode = os.stat(p).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise NotRegularFileError(f"not a photo or a folder but a {file_kind(mode)}: {p}")
