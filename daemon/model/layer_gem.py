"""A 512-d descriptor from EfficientNet-Lite's last two stages, mirror-invariant.

Chosen by measurement (bench/match_quality.py, BENCHMARKS.md "Match quality (issue 17)")
over GeM / SPoC / MAC / R-MAC of the final 1280-channel map, input sizes 224 and 320,
both sizes together, library PCA-whitening and projections of the 1280-d vector:

* **Two layers, 512 values.** GeM (p=3) of the output of the last stage (320 channels,
  before the 1×1 head convolution that widens it to 1280) and of the stage before it
  (192 channels, 14×14 at 224 px: finer places), each L2-normalised, side by side. The
  head convolution adds no information to the 320 channels it widens, and at 512 values
  the vector stays within 2 KB per photo (float32), less than half of the 1280-d GeM's.
* **The ImageNet mean direction removed** from each part. Every ImageNet descriptor leans
  towards the average picture, which says nothing about any one photo; the network's own
  BatchNorm statistics (gathered on ImageNet, so no data of ours) give that average, and
  taking it out spreads photos apart: the largest single gain for "more like this".
* **Mirror-invariant** (the ``mirror`` variant): the descriptor of the picture plus that of
  its mirror image, so a mirrored copy has the same vector as its original. It costs a
  second pass of the network per photo.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from findsimilar.daemon.model.efficientnet_lite import (
    LITE_VARIANTS,
    EfficientNetLite,
    load_checkpoint,
)

__all__ = ["LAYER_GEM_DIM", "LayerGeMHead", "imagenet_mean_direction", "stage_mean_direction"]

LAYER_GEM_DIM = 512  # 320 + 192 channels, for every Lite variant (their last two stages)
_P = 3.0  # GeM exponent, as in the 1280-d descriptor
# Standard-normal quadrature nodes for expectations under a Gaussian.
_NODES = np.linspace(-8.0, 8.0, 1601)
_WEIGHTS = np.exp(-_NODES ** 2 / 2) / np.exp(-_NODES ** 2 / 2).sum()


def imagenet_mean_direction(beta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Unit vector of the GeM (p=3) of ``relu(x)`` where each channel's ``x`` is normal with
    mean ``beta`` and standard deviation ``gamma`` (what BatchNorm makes of ImageNet)."""
    values = np.maximum(beta[None, :] + np.abs(gamma)[None, :] * _NODES[:, None], 0.0)
    mean = ((_WEIGHTS[:, None] * values ** _P).sum(axis=0)) ** (1 / _P)
    mean = np.maximum(mean, 1e-6)
    return (mean / np.linalg.norm(mean)).astype(np.float32)


def stage_mean_direction(state: dict[str, torch.Tensor], blocks: list[int]) -> np.ndarray:
    """ImageNet mean direction of a stage's output: the sum of its blocks' projections
    (the first block's, then each residual), so the means add; the spreads are taken as
    independent."""
    beta = sum(state[f"_blocks.{i}._bn2.bias"].double().numpy() for i in blocks)
    var = sum(state[f"_blocks.{i}._bn2.weight"].double().numpy() ** 2 for i in blocks)
    return imagenet_mean_direction(np.asarray(beta), np.sqrt(np.asarray(var)))


def _gem(fmap: torch.Tensor) -> torch.Tensor:
    return F.relu(fmap).clamp(min=1e-6).pow(_P).mean(dim=(2, 3)).pow(1.0 / _P)


def _deflate(v: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    v = F.normalize(v, dim=1)
    return F.normalize(v - (v @ direction)[:, None] * direction[None, :], dim=1)


class LayerGeMHead(torch.nn.Module):
    """EfficientNet-Lite without its head: (N, 3, S, S) -> (N, 512) unit descriptors.

    ``mirror``: each picture and its mirror image go through the network together and
    their descriptors are added, so a picture and its mirror image get the same vector.
    """

    def __init__(self, variant: str, size: int, mirror: bool) -> None:
        super().__init__()
        net = EfficientNetLite(LITE_VARIANTS[variant], size)
        state = load_checkpoint(variant)
        net.load_checkpoint(state)
        self.stem, self.mirror = net.stem, mirror
        blocks = list(net.blocks)
        # The last stage is one block (Lite keeps it fixed); the stage before it ends
        # just before, and is every block with its width.
        width = blocks[-2].project.conv.out_channels
        stage = [i for i, b in enumerate(blocks) if b.project.conv.out_channels == width]
        self.body = torch.nn.Sequential(*blocks[:-1])
        self.last = blocks[-1]
        last = len(blocks) - 1
        # Plain tensors, not buffers: they stay float32 when the network goes bfloat16.
        self.last_mean = torch.from_numpy(stage_mean_direction(state, [last]))
        self.stage_mean = torch.from_numpy(stage_mean_direction(state, stage))
        assert blocks[-1].project.conv.out_channels + width == LAYER_GEM_DIM
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        before = self.body(self.stem(x))
        return _gem(self.last(before).float()), _gem(before.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        if self.mirror:
            x = torch.cat([x, x.flip(3)])
        last, before = self._parts(x)
        if self.mirror:
            last = F.normalize(last[:n], dim=1) + F.normalize(last[n:], dim=1)
            before = F.normalize(before[:n], dim=1) + F.normalize(before[n:], dim=1)
        parts = [_deflate(last, self.last_mean), _deflate(before, self.stage_mean)]
        return F.normalize(torch.cat(parts, dim=1), dim=1)
