"""Sidecars: the edit files photo programs write beside a photo, told apart by name alone.

darktable writes ``photo.CR2.xmp``, digiKam ``photo.CR2.xmp`` or ``photo.xmp``,
RawTherapee ``photo.CR2.pp3``, DxO ``photo.CR2.dop``. Such a file is never a photo itself
(the scanner leaves it out) and travels with its photo when a duplicate is trashed or
moved (:mod:`findsimilar.cli.actions.relocate`). Extensions match in any case
(``photo.JPG.XMP``). Pure functions on names in one folder; stdlib only.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["SIDECAR_EXTENSIONS", "is_sidecar", "own_sidecars", "sidecar_target",
           "stem_holders", "stem_sidecars"]

SIDECAR_EXTENSIONS = frozenset({".xmp", ".pp3", ".dop"})


def is_sidecar(name: str) -> bool:
    """True if ``name`` ends in a sidecar extension (any case)."""
    return os.path.splitext(name)[1].lower() in SIDECAR_EXTENSIONS


def _same_photo_name(base: str, photo: str) -> bool:
    """``base`` names ``photo``: the same stem, the extension in any case."""
    (stem, ext), (pstem, pext) = os.path.splitext(base), os.path.splitext(photo)
    return base == photo or (stem == pstem and bool(ext) and ext.lower() == pext.lower())


def own_sidecars(photo: str, names: Iterable[str]) -> list[str]:
    """The names among ``names`` (one folder's files) that are ``photo``'s own sidecars,
    ``NAME.EXT.xmp`` for the photo ``NAME.EXT``: they belong to it alone."""
    return sorted(n for n in names if n != photo and is_sidecar(n)
                  and _same_photo_name(os.path.splitext(n)[0], photo))


def stem_sidecars(photo: str, names: Iterable[str]) -> list[str]:
    """The names among ``names`` that are sidecars named by ``photo``'s stem (``NAME.xmp``
    for ``NAME.EXT``): they belong to every photo of that stem (see :func:`stem_holders`)."""
    stem, ext = os.path.splitext(photo)
    if not ext:
        return []  # NAME.xmp is then the photo's own sidecar
    return sorted(n for n in names if is_sidecar(n) and os.path.splitext(n)[0] == stem
                  and n != photo)


def stem_holders(sidecar: str, names: Iterable[str]) -> list[str]:
    """The files among ``names`` that the stem sidecar ``sidecar`` (``NAME.xmp``) belongs
    to: every file ``NAME.*`` that is not itself a sidecar (a RAW+JPEG pair is two)."""
    stem = os.path.splitext(sidecar)[0]
    return sorted(n for n in names if not is_sidecar(n) and os.path.splitext(n)[0] == stem)


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
