"""Edited copies of a photo, made in memory for the self-check (``selfcheck``): a crop,
a small copy, a heavy JPEG recompression, a brightness change; each a JPEG's bytes,
the same for the same photo, kind and seed.

The daemon process decodes here, which it otherwise leaves to the model worker (it
imports this module, and so Pillow, only once a self-check runs): only photos it indexed
(the worker decoded those very bytes once), Pillow's own formats, at most ``MAX_PIXELS``
declared pixels (checked before any pixel is decoded), and JPEGs through DCT-domain
downscaling (``Image.draft``), so a 12 MP photo costs ~2 MB here.
"""

from __future__ import annotations

import io
import random
from typing import Literal

from PIL import Image, ImageEnhance, ImageOps

__all__ = ["KINDS", "MAX_PIXELS", "MAX_SIDE", "EditError", "edited", "load_picture"]

Kind = Literal["crop", "small", "jpeg", "brightness"]
KINDS: tuple[Kind, ...] = ("crop", "small", "jpeg", "brightness")  # selfcheck.KINDS

# The picture edited: more than twice the model's 224 px (a crop keeps >= 358 px), and a
# 12 MP JPEG then decodes at 1/4 scale (at 1024 px, 1/2: 4x the cost).
MAX_SIDE = 512
MAX_PIXELS = 64_000_000  # a bigger picture is not checked (its decode would cost too much)


class EditError(Exception):
    """The photo cannot be edited here (the reason is the message)."""


def load_picture(data: bytes) -> Image.Image:
    """The photo in ``data`` upright, RGB, its longer side at most ``MAX_SIDE``.

    Raises EditError: not a format Pillow reads by itself, more than ``MAX_PIXELS``, or
    damaged."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > MAX_PIXELS:
                raise EditError(f"{width}x{height} is more than {MAX_PIXELS:,} pixels")
            if im.format == "JPEG":
                im.draft("RGB", (MAX_SIDE, MAX_SIDE))
            upright = ImageOps.exif_transpose(im) or im
            picture = upright.convert("RGB")
    except EditError:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError,
            Image.DecompressionBombWarning, MemoryError) as exc:
        raise EditError(str(exc) or type(exc).__name__) from None
    picture.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return picture


def edited(picture: Image.Image, kind: Kind, seed: int) -> bytes:
    """A JPEG of ``picture`` edited as ``kind`` says, its strength drawn from ``seed``:

    * crop: 70-90 % of each side kept, anywhere in the picture;
    * small: the longer side 160-320 px;
    * jpeg: quality 10-25;
    * brightness: ×0.6-0.8 or ×1.25-1.5.

    The other kinds are saved at quality 90."""
    rng = random.Random(f"{kind}:{seed}")
    quality = 90
    width, height = picture.size
    if kind == "crop":
        w, h = (max(1, round(side * rng.uniform(0.7, 0.9))) for side in (width, height))
        left, top = rng.randint(0, width - w), rng.randint(0, height - h)
        picture = picture.crop((left, top, left + w, top + h))
    elif kind == "small":
        scale = rng.uniform(160, 320) / max(width, height)
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            picture = picture.resize(size, Image.Resampling.BILINEAR)
    elif kind == "jpeg":
        quality = rng.randint(10, 25)
    elif kind == "brightness":
        factor = rng.uniform(0.6, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.5)
        picture = ImageEnhance.Brightness(picture).enhance(factor)
    else:
        raise ValueError(f"unknown edit {kind!r}")
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality)
    return out.getvalue()
