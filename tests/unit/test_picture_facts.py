"""Picture facts: what decoding tells a keeper (daemon/model/facts.py through decode.py),
and how the store keeps them per content (daemon/storage/pictures.py). Real photos,
real encoders, a real SQLite store."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageFilter, ImageOps

from findsimilar.daemon.model.api import PictureFacts
from findsimilar.daemon.model.decode import decode_for_model
from findsimilar.daemon.storage.store import Store
from tests.conftest import shared

MP = 100_000_000


def facts_of(data: bytes | Path, digest: bool | None = None) -> PictureFacts:
    facts = decode_for_model(data, 224, max_pixels=MP, digest=digest).facts
    assert facts is not None
    return facts


def encode(im: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **options)
    return out.getvalue()


@pytest.fixture(scope="module")
def baboon() -> Image.Image:
    with Image.open(shared("opencv/baboon.jpg")) as im:
        return im.convert("RGB")


def test_a_greyscale_picture_is_greyscale_however_it_is_stored(baboon: Image.Image) -> None:
    assert facts_of(shared("opencv/baboon.jpg")).colour is True
    grey = ImageOps.grayscale(baboon)
    assert facts_of(encode(grey, "PNG")).colour is False
    assert facts_of(encode(grey.convert("RGB"), "JPEG", quality=90)).colour is False


def test_alpha_and_the_lossless_origin_come_from_the_file(baboon: Image.Image) -> None:
    png = facts_of(encode(baboon.convert("RGBA"), "PNG"))
    assert (png.alpha, png.lossless, png.format) == (True, True, "PNG")
    jpeg = facts_of(encode(baboon, "JPEG"))
    assert (jpeg.alpha, jpeg.lossless) == (False, False)
    assert facts_of(encode(baboon, "WEBP", lossless=True)).lossless is True
    assert facts_of(encode(baboon, "WEBP", quality=80)).lossless is False
    # A lossy WebP with alpha starts with an ALPH chunk: still lossy.
    assert facts_of(encode(baboon.convert("RGBA"), "WEBP", quality=80)).lossless is False
    assert facts_of(encode(baboon, "TIFF")).lossless is True
    assert facts_of(encode(baboon, "BMP")).lossless is True


def test_camera_make_model_and_date_come_from_exif() -> None:
    storm = facts_of(shared("mate/Storm.jpg"))
    assert (storm.make, storm.model) == ("Canon", "Canon EOS 400D DIGITAL")
    assert storm.taken == "2008:04:20 19:12:06"
    assert (facts_of(shared("opencv/fruits.jpg")).make, facts_of(
        shared("opencv/fruits.jpg")).taken) == (None, None)


def test_a_lossless_conversion_has_the_pixel_digest_of_the_jpeg_it_was_made_from(
        baboon: Image.Image) -> None:
    jpeg = shared("opencv/baboon.jpg").read_bytes()
    with Image.open(io.BytesIO(jpeg)) as im:
        converted = encode(im.convert("RGBA"), "PNG")
    png = facts_of(converted)
    assert png.pixel_digest is not None  # lossless: always computed
    assert facts_of(jpeg).pixel_digest is None  # lossy: only when asked
    assert facts_of(jpeg, digest=True).pixel_digest == png.pixel_digest
    edited = baboon.copy()
    edited.putpixel((0, 0), (0, 0, 0))
    assert facts_of(encode(edited, "PNG")).pixel_digest != png.pixel_digest


def test_the_digest_is_of_the_upright_picture(baboon: Image.Image) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways = encode(baboon.transpose(Image.Transpose.ROTATE_90), "PNG", exif=exif.tobytes())
    facts = facts_of(sideways)
    assert facts.pixel_digest == facts_of(encode(baboon, "PNG")).pixel_digest


def test_a_blurred_copy_is_less_sharp(baboon: Image.Image) -> None:
    blurred = baboon.filter(ImageFilter.GaussianBlur(3))
    assert facts_of(encode(blurred, "PNG")).sharpness < 0.5 * facts_of(
        encode(baboon, "PNG")).sharpness


def test_the_store_keeps_facts_per_content_and_a_digest_once_learnt(tmp_path: Path) -> None:
    store = Store(tmp_path / "store.db")
    try:
        jpeg = facts_of(shared("opencv/baboon.jpg"), digest=True)
        # A file relinked by an older version: its own sizes unknown.
        store.upsert_files([{"path": "/p/b.jpg", "status": "ok", "content_hash": "h",
                             "size": 1, "mtime_ns": 1}])
        store.save_picture_facts({"h": jpeg.as_row()})
        # Decoded again later without a digest: the one learnt is kept.
        store.save_picture_facts({"h": facts_of(shared("opencv/baboon.jpg")).as_row()})
        kept = store.picture_facts(["h", "unknown"])
        assert list(kept) == ["h"]
        assert kept["h"]["pixel_digest"] == jpeg.pixel_digest
        assert (kept["h"]["colour"], kept["h"]["lossless"]) == (1, 0)
        [row] = store.ok_files()
        assert (row["width"], row["height"], row["format"], row["facts_known"]) == (
            512, 512, "JPEG", 1)
        assert store.image_info(["h"])["h"]["width"] == 512
    finally:
        store.close()
