"""The photo edits our tests and quality benchmarks apply to real photos, and the shared
photos themselves (``../shared/photos``, or ``$FINDSIMILAR_SHARED_PHOTOS``).

Each edit takes a Pillow RGB image and writes the edited copy to a path (the
extension says the format), because some edits (re-encoding, EXIF rotation)
only exist as files. The benchmarks import this module through bench/edits.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

__all__ = ["EDITS", "apply_edit", "shared_photos", "shared_groups"]

SHARED = Path(os.environ.get("FINDSIMILAR_SHARED_PHOTOS",
                            Path(__file__).resolve().parents[1].parent / "shared" / "photos"))


def _save_jpeg(im: Image.Image, out: Path, quality: int = 90, **kw: object) -> Path:
    out = out.with_suffix(".jpg")
    im.convert("RGB").save(out, "JPEG", quality=quality, **kw)
    return out


def resize30(im: Image.Image, out: Path) -> Path:
    w, h = im.size
    return _save_jpeg(im.resize((max(1, w * 3 // 10), max(1, h * 3 // 10)), Image.LANCZOS), out)


def jpeg_q15(im: Image.Image, out: Path) -> Path:
    return _save_jpeg(im, out, quality=15)


def crop75(im: Image.Image, out: Path) -> Path:
    w, h = im.size
    cw, ch = int(w * 0.75), int(h * 0.75)
    left, top = (w - cw) // 2, (h - ch) // 2
    return _save_jpeg(im.crop((left, top, left + cw, top + ch)), out)


def mirror(im: Image.Image, out: Path) -> Path:
    return _save_jpeg(ImageOps.mirror(im), out)


def greyscale(im: Image.Image, out: Path) -> Path:
    return _save_jpeg(ImageOps.grayscale(im), out)


def brighter40(im: Image.Image, out: Path) -> Path:
    return _save_jpeg(ImageEnhance.Brightness(im).enhance(1.4), out)


def blur(im: Image.Image, out: Path) -> Path:
    radius = max(1.0, max(im.size) / 400)  # a visible blur at any resolution
    return _save_jpeg(im.filter(ImageFilter.GaussianBlur(radius)), out)


def caption(im: Image.Image, out: Path) -> Path:
    w, h = im.size
    bar = max(12, h // 8)
    canvas = Image.new("RGB", (w, h + bar), (0, 0, 0))
    canvas.paste(im, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((bar // 3, h + bar // 4), "Holiday 2026 - best moments!", fill=(255, 255, 255),
              font_size=max(8, bar // 2))
    return _save_jpeg(canvas, out)


def letterbox(im: Image.Image, out: Path) -> Path:
    w, h = im.size
    side = max(w, h)
    canvas = Image.new("RGB", (side, int(side * 1.15)), (0, 0, 0))
    canvas.paste(im, ((side - w) // 2, (canvas.height - h) // 2))
    return _save_jpeg(canvas, out)


def png(im: Image.Image, out: Path) -> Path:
    out = out.with_suffix(".png")
    im.save(out, "PNG")
    return out


def webp(im: Image.Image, out: Path) -> Path:
    out = out.with_suffix(".webp")
    im.save(out, "WEBP", quality=75)
    return out


def heic(im: Image.Image, out: Path) -> Path:
    import pillow_heif

    pillow_heif.register_heif_opener()
    out = out.with_suffix(".heic")
    im.save(out, "HEIF", quality=60)
    return out


def exif_rotated(im: Image.Image, out: Path) -> Path:
    """Pixels stored sideways with EXIF orientation 6: displays like the original."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save_jpeg(im.transpose(Image.Transpose.ROTATE_90), out, exif=exif.tobytes())


EDITS: dict[str, Callable[[Image.Image, Path], Path]] = {
    "resize 30%": resize30,
    "JPEG quality 15": jpeg_q15,
    "centre crop 75%": crop75,
    "mirror": mirror,
    "greyscale": greyscale,
    "brightness +40%": brighter40,
    "blur": blur,
    "caption bar": caption,
    "letterbox border": letterbox,
    "PNG re-encode": png,
    "WebP re-encode": webp,
    "HEIC re-encode": heic,
    "EXIF-rotated": exif_rotated,
}


def apply_edit(name: str, src: Path, out_stem: Path) -> Path:
    """Apply edit ``name`` to the photo at ``src``; returns the written file."""
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return EDITS[name](im, out_stem)


def shared_groups() -> dict[str, object]:
    return json.loads((SHARED / "GROUPS.json").read_text())


def shared_photos() -> list[Path]:
    """Every decodable photo of ../shared/photos (the broken one excluded)."""
    broken = set(shared_groups()["broken"])  # type: ignore[arg-type]
    exts = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tiff", ".gif", ".pgm", ".pbm", ".svg"}
    return sorted(p for p in SHARED.rglob("*") if p.suffix.lower() in exts
                  and str(p.relative_to(SHARED)) not in broken)
