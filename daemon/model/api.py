"""The model as the engine sees it: pictures in, futures of vectors, facts and scores out.

Two implementations share this interface: ``local.LocalModel`` decodes and runs the
network in threads of the calling process (``--no-daemon``, and inside the worker), and
``client.WorkerModel`` hands the same work to a worker process (the daemon, which then
never imports torch). An embedding also carries the picture's facts (``PictureFacts``:
what a duplicate's keeper is chosen on); ``facts`` decodes a picture again for them
alone. No call blocks: work is queued by priority and batched for the network; the
future carries the result, or ``ImageDecodeError`` with the reason a picture could not
be read.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from findsimilar.daemon.model.spec import ModelSpec

__all__ = ["PRIORITY_CHECK", "PRIORITY_INDEX", "PRIORITY_QUERY", "Embedded", "Model",
           "Picture", "PictureFacts"]

# Lower runs first: a search someone waits for, then pixel checks, then indexing.
PRIORITY_QUERY = 0
PRIORITY_CHECK = 1
PRIORITY_INDEX = 2


@dataclass(frozen=True)
class PictureFacts:
    """What a keeper is chosen on, learnt while decoding (``facts.py``); kept per content."""

    width: int  # after EXIF orientation
    height: int
    format: str  # Pillow's name, from the content
    content: tuple[float, float]  # share of width, height inside solid borders
    colour: bool  # False: greyscale (however it is stored)
    alpha: bool  # an alpha channel or a transparent colour
    sharpness: float  # variance of the Laplacian at model size
    make: str | None  # the camera's, from EXIF
    model: str | None
    taken: str | None  # EXIF DateTimeOriginal (or DateTime), as written
    lossless: bool | None  # PNG, TIFF, BMP, GIF, lossless WebP; None: cannot tell
    pixel_digest: str | None = None  # of every pixel, upright RGB: lossless files, or asked

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "content": list(self.content)}

    def as_row(self) -> dict[str, object]:
        """The facts as the store keeps them (``storage.pictures.COLUMNS``)."""
        return {"width": self.width, "height": self.height, "format": self.format,
                "content_width": round(self.width * self.content[0]),
                "content_height": round(self.height * self.content[1]),
                "colour": self.colour, "alpha": self.alpha, "sharpness": self.sharpness,
                "make": self.make, "model": self.model, "taken": self.taken,
                "lossless": self.lossless, "pixel_digest": self.pixel_digest}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PictureFacts:
        return cls(**{**d, "content": tuple(d["content"])})


@dataclass(frozen=True)
class Embedded:
    """A picture's descriptor and what decoding it told about the original."""

    vector: np.ndarray  # float32 (dim,), L2-normalised
    width: int  # after EXIF orientation
    height: int
    format: str  # Pillow's name, from the content
    content: tuple[float, float] = (1.0, 1.0)  # share of width, height inside solid borders
    facts: PictureFacts | None = None


@dataclass(frozen=True)
class Picture:
    """One side of a pixel check: a key naming the picture while the caller's checks
    run (its previews are cached under it) and the files that hold it (any will do)."""

    key: str
    paths: tuple[str, ...]


class Model(Protocol):
    spec: ModelSpec

    def embed(self, source: bytes | Path, name: str, *,
              priority: int = PRIORITY_INDEX) -> Future[Embedded]:
        """The descriptor of ``source`` (file bytes, or a path to stream a big file from);
        ``name`` names it in reasons and in ``status``."""

    def compare(self, a: Picture, b: Picture, *,
                priority: int = PRIORITY_CHECK) -> Future[float | None]:
        """``verify.compare`` of the two pictures (rounded to 4 places), or None if one
        of them cannot be read (``priority``: a search's, ahead of listings' checks)."""

    def facts(self, picture: Picture, *, digest: bool = False,
              priority: int = PRIORITY_CHECK) -> Future[PictureFacts | None]:
        """The facts of ``picture`` (decoded again from any of its files; ``digest``:
        with its pixel digest, whatever its format), or None if none can be read."""

    def status(self) -> dict[str, object]:
        """Whether the model runs, where, and what it is working on."""

    def close(self) -> None:
        """Stop; work not done yet is dropped (its futures are cancelled)."""
