"""Sidecars: the edit files photo programs write beside a photo, told apart by name alone.

darktable writes ``photo.CR2.xmp``, digiKam ``photo.CR2.xmp`` or ``photo.xmp``,
RawTherapee ``photo.CR2.pp3``, DxO ``photo.CR2.dop``. Such a file is never a photo itself
(the scanner leaves it out) and travels with its photo when a duplicate is trashed or
moved (:mod:`findsimilar.cli.actions.relocate`). Extensions match in any case
(``photo.JPG.XMP``). Pure functions on the names in one folder; stdlib only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["SIDECAR_EXTENSIONS", "FolderNames", "extends", "is_sidecar", "own_sidecars",
           "sidecar_target", "stem_holders", "stem_sidecars"]

SIDECAR_EXTENSIONS = frozenset({".xmp", ".pp3", ".dop"})


def is_sidecar(name: str) -> bool:
    """True if ``name`` ends in a sidecar extension (any case)."""
    return os.path.splitext(name)[1].lower() in SIDECAR_EXTENSIONS


def _same_photo_name(base: str, photo: str) -> bool:
    """``base`` names ``photo``: the same stem, the extension in any case."""
    return _key(base) == _key(photo)


def extends(sidecar: str, photo: str) -> bool:
    """True if the name ``sidecar`` is ``photo``'s name plus a sidecar extension (its own
    form, ``NAME.EXT.xmp``), False for the shared form ``NAME.xmp``."""
    return is_sidecar(sidecar) and _same_photo_name(os.path.splitext(sidecar)[0], photo)


def _key(name: str) -> tuple[str, str]:
    stem, ext = os.path.splitext(name)
    return stem, ext.lower()


class FolderNames:
    """One folder's file names, indexed so that finding a photo's sidecars costs O(1)
    (a folder of 10 000 files with 5 000 duplicates is not 50 million comparisons)."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = set(names)
        self._sidecars: dict[tuple[str, str], list[str]] = {}  # by the name they extend
        self._files: dict[tuple[str, str], list[str]] = {}  # by name, extension in any case
        self._stems: dict[str, list[str]] = {}  # files (not sidecars) by stem
        for n in sorted(self.names):
            if is_sidecar(n):
                self._sidecars.setdefault(_key(os.path.splitext(n)[0]), []).append(n)
            else:
                self._files.setdefault(_key(n), []).append(n)
                self._stems.setdefault(os.path.splitext(n)[0], []).append(n)

    def own(self, photo: str) -> list[str]:
        """``photo``'s own sidecars, ``NAME.EXT.xmp`` (``.EXT`` in any case, unless that
        names another file here exactly, or several files match)."""
        return [n for n in self._sidecars.get(_key(photo), [])
                if os.path.splitext(n)[0] == photo or (
                    os.path.splitext(n)[0] not in self.names
                    and len(self._files.get(_key(photo), [])) == 1)]

    def shared(self, photo: str) -> list[str]:
        """The sidecars named by ``photo``'s stem, ``NAME.xmp`` for ``NAME.EXT``, unless a
        file ``NAME`` owns them; they belong to every file ``NAME.*`` (:meth:`holders`)."""
        stem, ext = os.path.splitext(photo)
        if not ext or _key(stem) in self._files:
            return []
        return [n for n in self._sidecars.get(_key(stem), []) if os.path.splitext(n)[0] == stem]

    def holders(self, sidecar: str) -> list[str]:
        """The files ``NAME.*`` (not sidecars) that the shared ``NAME.xmp`` belongs to."""
        return list(self._stems.get(os.path.splitext(sidecar)[0], []))


def own_sidecars(photo: str, names: Iterable[str]) -> list[str]:
    """The names among ``names`` (one folder's files) that are ``photo``'s own sidecars,
    ``NAME.EXT.xmp`` for the photo ``NAME.EXT``: they belong to it alone."""
    return FolderNames(names).own(photo)


def stem_sidecars(photo: str, names: Iterable[str]) -> list[str]:
    """The names among ``names`` that are sidecars named by ``photo``'s stem (``NAME.xmp``
    for ``NAME.EXT``): they belong to every photo of that stem (see :func:`stem_holders`)."""
    return FolderNames(names).shared(photo)


def stem_holders(sidecar: str, names: Iterable[str]) -> list[str]:
    """The files among ``names`` that the stem sidecar ``sidecar`` (``NAME.xmp``) belongs
    to: every file ``NAME.*`` that is not itself a sidecar (a RAW+JPEG pair is two)."""
    return FolderNames(names).holders(sidecar)


def sidecar_target(photo: str, photo_target: str, sidecar: str) -> str:
    """Where ``sidecar`` (a path beside ``photo``) goes when ``photo`` goes to
    ``photo_target``: beside it, renamed as the photo was (``a (1).jpg`` takes
    ``a (1).jpg.xmp`` or ``a (1).xmp``)."""
    folder, name = os.path.dirname(photo_target), os.path.basename(sidecar)
    if os.path.basename(photo_target) == os.path.basename(photo):
        return os.path.join(folder, name)
    ext = os.path.splitext(name)[1]
    own = _same_photo_name(os.path.splitext(name)[0], os.path.basename(photo))
    base = os.path.basename(photo_target)
    return os.path.join(folder, (base if own else os.path.splitext(base)[0]) + ext)
