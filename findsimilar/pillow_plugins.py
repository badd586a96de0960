"""The Pillow plugins findsimilar decodes with, registered once per process: HEIC/HEIF
(pillow-heif) and JPEG XL (``jxl``: its size checked before libjxl decodes it); AVIF is
in Pillow 11.3+. Used by the model's decoder and by the results page's thumbnails; the
daemon process never calls it (it decodes nothing)."""

from __future__ import annotations

import contextlib
import threading

from findsimilar import jxl

__all__ = ["register"]

_lock = threading.Lock()
_registered = False


def register() -> None:
    """Teach Pillow the formats above (a missing pillow-heif: HEIC files then fail with a
    reason, or get no thumbnail)."""
    global _registered
    with _lock:
        if _registered:
            return
        jxl.register()
        with contextlib.suppress(ImportError):
            import pillow_heif

            pillow_heif.register_heif_opener()
        _registered = True
