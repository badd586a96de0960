"""The photo edits our tests and quality benchmarks apply to real photos, and the shared
photos themselves (``../shared/photos``, or ``$FINDSIMILAR_SHARED_PHOTOS``).

Each edit takes a Pillow RGB image and writes the edited copy to a path (the
extension says the format), because some edits (re-encoding, EXIF rotation)
only exist as files. The benchmarks import this module through bench/edits.py.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

__all__ = ["EDITS", "MATCH_EDITS", "NEAR_EDITS", "SAME_SCENE_EDITS", "apply_edit",
           "apply_match_edit", "apply_seeded_edit", "shared_groups", "shared_photos"]

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


# -- edits at several strengths, placed by a seed ------------------------------------------
# The near-tier benchmark (bench/dupes_quality.py --edits) and the duplicate tests apply
# these: each takes the picture, the output stem and a random generator (where an overlay
# goes, which part a crop keeps), so one seed set calibrates and another is held out.

Rng = random.Random


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int,
          fill: tuple[int, ...]) -> None:
    draw.text(xy, text, fill=fill, font_size=max(8, size))


def caption_band(share: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """An opaque band over the top or bottom ``share`` of the picture, with a caption."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        im = im.copy()
        w, h = im.size
        bar = max(10, int(h * share))
        top = 0 if rng.random() < 0.3 else h - bar
        draw = ImageDraw.Draw(im)
        shade = rng.choice([(0, 0, 0), (255, 255, 255), (30, 30, 120)])
        draw.rectangle((0, top, w, top + bar), fill=shade)
        ink = (0, 0, 0) if shade == (255, 255, 255) else (255, 255, 255)
        _text(draw, (bar // 3, top + bar // 5), rng.choice(CAPTIONS), bar // 2, ink)
        return _save_jpeg(im, out)
    return edit


CAPTIONS = ["Holiday 2026 - best moments!", "When the cat sees Monday", "SALE -50% today",
            "Grandma's garden, June", "me_irl", "Photo: J. Smith / Agency"]


def watermark(opacity: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """Large semi-transparent text across the middle (a stock-photo watermark)."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        w, h = im.size
        layer = Image.new("RGBA", im.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        size = max(10, w // 9)
        x, y = int(w * rng.uniform(0.05, 0.3)), int(h * rng.uniform(0.3, 0.6))
        _text(draw, (x, y), rng.choice(["© SAMPLE", "PREVIEW", "stockphoto"]), size,
              (255, 255, 255, int(255 * opacity)))
        return _save_jpeg(Image.alpha_composite(im.convert("RGBA"), layer), out)
    return edit


def logo(side: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """An opaque two-colour logo with a name, ``side`` of the width, in a corner."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        im = im.copy()
        w, h = im.size
        s = max(12, int(w * side))
        x = int(w * 0.03) if rng.random() < 0.5 else w - s - int(w * 0.03)
        y = int(h * 0.03) if rng.random() < 0.5 else h - s // 2 - int(h * 0.03)
        draw = ImageDraw.Draw(im)
        draw.rectangle((x, y, x + s, y + s // 2), fill=(200, 30, 40))
        draw.ellipse((x + 4, y + 4, x + s // 2 - 4, y + s // 2 - 4), fill=(255, 220, 0))
        _text(draw, (x + s // 2, y + s // 8), "TV5", s // 5, (255, 255, 255))
        return _save_jpeg(im, out)
    return edit


def sticker(side: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """A round sticker (a face) ``side`` of the width across, anywhere on the picture."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        im = im.copy()
        w, h = im.size
        s = max(12, int(w * side))
        x, y = rng.randrange(0, max(1, w - s)), rng.randrange(0, max(1, h - s))
        draw = ImageDraw.Draw(im)
        draw.ellipse((x, y, x + s, y + s), fill=(255, 205, 40), outline=(0, 0, 0), width=3)
        e = s // 5
        draw.ellipse((x + e, y + e, x + 2 * e, y + 2 * e), fill=(0, 0, 0))
        draw.ellipse((x + 3 * e, y + e, x + 4 * e, y + 2 * e), fill=(0, 0, 0))
        draw.arc((x + e, y + 2 * e, x + 4 * e, y + 4 * e), 20, 160, fill=(0, 0, 0), width=3)
        return _save_jpeg(im, out)
    return edit


def crop_area(area: float, stretch: float = 1.0) -> Callable[[Image.Image, Path, Rng], Path]:
    """A crop keeping ``area`` of the picture, anywhere in it; its aspect ratio is the
    picture's, made ``stretch`` times wider or taller."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        w, h = im.size
        s = stretch if rng.random() < 0.5 else 1 / stretch
        cw, ch = min(w, int(w * (area * s) ** 0.5)), min(h, int(h * (area / s) ** 0.5))
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return _save_jpeg(im.crop((left, top, left + cw, top + ch)), out)
    return edit


def border(share: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """A plain frame, ``share`` of the width on every side (white, black or grey)."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        pad = max(2, int(im.width * share))
        colour = rng.choice([(255, 255, 255), (0, 0, 0), (128, 128, 128)])
        return _save_jpeg(ImageOps.expand(im, pad, fill=colour), out)
    return edit


def enhance(kind: str, factor: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """Brightness or contrast times ``factor``."""
    tool = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast}[kind]

    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        return _save_jpeg(tool(im).enhance(factor), out)
    return edit


def scaled(share: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """A small copy, ``share`` of each side (never under 64 pixels on the shorter one)."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        w, h = im.size
        f = max(share, 64 / min(w, h))
        return _save_jpeg(im.resize((max(1, round(w * f)), max(1, round(h * f))),
                                    Image.LANCZOS), out)
    return edit


def blurred(per_side: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """A Gaussian blur of radius ``per_side`` × the longer side."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        return _save_jpeg(im.filter(ImageFilter.GaussianBlur(max(1.0, max(im.size) * per_side))),
                          out)
    return edit


def rotated(degrees: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """Straightened by ``degrees`` either way, cropped to the largest upright rectangle
    (as a photo editor's straighten tool does)."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        angle = degrees * rng.choice([-1, 1])
        w, h = im.size
        turned = im.rotate(angle, Image.BICUBIC, expand=False)
        a = math.radians(abs(angle))
        # The upright rectangle of the frame's aspect ratio inside the turned picture.
        f = 1 / (math.cos(a) + math.sin(a) * max(w / h, h / w))
        cw, ch = int(w * f), int(h * f)
        return _save_jpeg(turned.crop(((w - cw) // 2, (h - ch) // 2,
                                       (w - cw) // 2 + cw, (h - ch) // 2 + ch)), out)
    return edit


def _fixed(fn: Callable[[Image.Image, Path], Path]) -> Callable[[Image.Image, Path, Rng], Path]:
    return lambda im, out, rng: fn(im, out)


def _jpeg(quality: int) -> Callable[[Image.Image, Path, Rng], Path]:
    return lambda im, out, rng: _save_jpeg(im, out, quality=quality)


# Edits that keep the picture: a duplicate finder should call each copy a duplicate.
NEAR_EDITS: dict[str, Callable[[Image.Image, Path, Rng], Path]] = {
    "caption band 10%": caption_band(0.10),
    "caption band 20%": caption_band(0.20),
    "watermark 35%": watermark(0.35),
    "watermark 70%": watermark(0.70),
    "logo 12%": logo(0.12),
    "logo 20%": logo(0.20),
    "sticker 12%": sticker(0.12),
    "sticker 20%": sticker(0.20),
    "crop 75% area": crop_area(0.75),
    "crop 60% area": crop_area(0.60),
    "crop 50% area": crop_area(0.50),
    "crop 60% area, other shape": crop_area(0.60, 1.5),
    "border 5%": border(0.05),
    "letterbox": _fixed(letterbox),
    "caption bar": _fixed(caption),
    "brightness +40%": enhance("brightness", 1.4),
    "brightness -40%": enhance("brightness", 0.6),
    "contrast +40%": enhance("contrast", 1.4),
    "contrast -40%": enhance("contrast", 0.6),
    "greyscale": _fixed(greyscale),
    "JPEG quality 12": _jpeg(12),
    "JPEG quality 6": _jpeg(6),
    "blur 0.25%": blurred(0.0025),
    "blur 0.5%": blurred(0.005),
    "small 30%": scaled(0.30),
    "small 15%": scaled(0.15),
    "mirror": _fixed(mirror),
    "rotation 2°": rotated(2.0),
    "rotation 5°": rotated(5.0),
}


def moved_object(im: Image.Image, out: Path, rng: Rng) -> Path:
    """A different shot in one respect: a part of the picture (a sixth of each side)
    moved by 30-60% of its size, the place it left filled in from its surroundings
    (OpenCV's inpainting), as when an arm or a head moves between two shots. The part
    is the most detailed of eight places drawn at random: an object, not a patch of
    plain sky, whose move would change nothing one could see."""
    import cv2
    import numpy as np

    w, h = im.size
    pw, ph = max(8, w // 6), max(8, h // 6)
    grey = np.asarray(im.convert("L"), np.float32)
    places = [(rng.randrange(pw, w - 2 * pw), rng.randrange(ph, h - 2 * ph)) for _ in range(8)]
    x, y = max(places, key=lambda p: grey[p[1]:p[1] + ph, p[0]:p[0] + pw].std())
    dx = int(pw * rng.uniform(0.3, 0.6)) * rng.choice([-1, 1])
    dy = int(ph * rng.uniform(0.0, 0.4)) * rng.choice([-1, 1])
    pixels = np.asarray(im).copy()
    part = pixels[y:y + ph, x:x + pw].copy()
    left = np.zeros((h, w), np.uint8)
    left[y:y + ph, x:x + pw] = 255
    left[y + dy:y + dy + ph, x + dx:x + dx + pw] = 0
    pixels = cv2.inpaint(pixels, left, 5, cv2.INPAINT_TELEA)
    pixels[y + dy:y + dy + ph, x + dx:x + dx + pw] = part
    return _save_jpeg(Image.fromarray(pixels), out)


# Edits that make another picture of the scene: never a duplicate.
SAME_SCENE_EDITS: dict[str, Callable[[Image.Image, Path, Rng], Path]] = {
    "moved object": moved_object,
}


def blurred_px(radius: float) -> Callable[[Image.Image, Path, Rng], Path]:
    """A Gaussian blur of ``radius`` pixels at the photo's own size."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        return _save_jpeg(im.filter(ImageFilter.GaussianBlur(radius)), out)
    return edit


def small_side(pixels: int) -> Callable[[Image.Image, Path, Rng], Path]:
    """A small copy whose longer side is ``pixels`` (a thumbnail sent in a message)."""
    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        w, h = im.size
        f = min(1.0, pixels / max(w, h))
        return _save_jpeg(im.resize((max(1, round(w * f)), max(1, round(h * f))),
                                    Image.LANCZOS), out)
    return edit


def quarter_turn(turns: int) -> Callable[[Image.Image, Path, Rng], Path]:
    """Turned by ``turns`` × 90° anticlockwise in the pixels, with no EXIF orientation (a
    photo turned and saved by an editor that drops EXIF, or scanned the wrong way up)."""
    op = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180,
          3: Image.Transpose.ROTATE_270}[turns]

    def edit(im: Image.Image, out: Path, rng: Rng) -> Path:
        return _save_jpeg(im.transpose(op), out)
    return edit


# The edited copies of bench/match_quality.py (issue 17): every kind of edit a user's
# library holds, at the strengths where a held-out measurement found the weakest
# results (blur, small copies, JPEG quality 10-12), placed by a seed like NEAR_EDITS.
MATCH_EDITS: dict[str, Callable[[Image.Image, Path, Rng], Path]] = {
    "blur 3 px": blurred_px(3.0),
    "blur 5 px": blurred_px(5.0),
    "blur 1%": blurred(0.01),
    "small 200 px": small_side(200),
    "small 10%": scaled(0.10),
    "JPEG quality 12": _jpeg(12),
    "JPEG quality 10": _jpeg(10),
    "crop 60% area": crop_area(0.60),
    "crop 50% area": crop_area(0.50),
    "caption band 20%": caption_band(0.20),
    "caption bar": _fixed(caption),
    "rotation 90°": quarter_turn(1),
    "rotation 180°": quarter_turn(2),
    "rotation 5°": rotated(5.0),
    "rotation 10°": rotated(10.0),
    "mirror": _fixed(mirror),
    "greyscale": _fixed(greyscale),
    "border 15%": border(0.15),
    "letterbox": _fixed(letterbox),
    "brightness -40%": enhance("brightness", 0.6),
    "brightness +40%": enhance("brightness", 1.4),
    "contrast +60%": enhance("contrast", 1.6),
    "contrast -50%": enhance("contrast", 0.5),
    "PNG re-encode": _fixed(png),
    "WebP re-encode": _fixed(webp),
    "HEIC re-encode": _fixed(heic),
}


def apply_match_edit(name: str, src: Path, out_stem: Path, seed: int) -> Path:
    """Apply ``MATCH_EDITS`` edit ``name`` to the photo at ``src``, placed by ``seed``;
    returns the written file."""
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return MATCH_EDITS[name](im, out_stem, random.Random(f"{seed}:{name}:{src.name}"))


def apply_seeded_edit(name: str, src: Path, out_stem: Path, seed: int) -> Path:
    """Apply ``NEAR_EDITS`` or ``SAME_SCENE_EDITS`` edit ``name`` to the photo at ``src``,
    placed by ``seed``; returns the written file."""
    edit = NEAR_EDITS.get(name) or SAME_SCENE_EDITS[name]
    with Image.open(src) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return edit(im, out_stem, random.Random(f"{seed}:{name}:{src.name}"))
