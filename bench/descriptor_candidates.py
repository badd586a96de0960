"""How the 512-d descriptor was chosen: candidate poolings of EfficientNet-Lite0, measured.

On bench/match_quality.py's corpus (the same edited copies, categories and measures),
each candidate is computed from one pass of the network (and one of the mirror image) at
``--size`` pixels, bfloat16 where the CPU has it, as indexing runs:

* pooling of the final 1280-channel map: GeM p=3 (today's ``efficientnet-lite0-gem/v1``),
  SPoC (p=1), MAC (max), R-MAC (GeM of 3 levels of square regions, each normalised, summed);
* GeM of earlier layers: the last stage's 320 channels (before the 1×1 head that widens
  them to 1280) and the 192 channels of the stage before it;
* "+ mirror": the descriptor of the picture plus that of its mirror image;
* "- mean": the ImageNet mean direction removed (daemon/model/layer_gem.py);
* reductions to 512 dimensions without training data: a fixed random ±1 projection;
* PCA-whitening fitted on the (unlabelled) library, shrunk by 0.2 × the largest eigenvalue.

Usage: python bench/descriptor_candidates.py [--size 224]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from match_quality import (  # noqa: E402
    MAX_PIXELS,
    Corpus,
    build_corpus,
    category_map,
    pca_whitening,
    rank1,
)

from findsimilar.daemon.model.decode import decode_for_model  # noqa: E402
from findsimilar.daemon.model.efficientnet_lite import (  # noqa: E402
    load_checkpoint,
    load_efficientnet_lite,
)
from findsimilar.daemon.model.features import EfficientNetLiteGeM  # noqa: E402
from findsimilar.daemon.model.layer_gem import (  # noqa: E402
    imagenet_mean_direction,
    stage_mean_direction,
)

Pooled = dict[str, np.ndarray]


def _gem(m: torch.Tensor, p: float = 3.0) -> torch.Tensor:
    return F.relu(m).clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1 / p)


def _rmac(m: torch.Tensor, levels: int = 3) -> torch.Tensor:
    """GeM of square regions at ``levels`` scales (~40 % overlap), normalised, summed."""
    h, w = m.shape[2:]
    total = torch.zeros(m.shape[:2])
    for level in range(1, levels + 1):
        side = max(1, round(2 * min(h, w) / (level + 1)))
        for top in np.linspace(0, h - side, level).round().astype(int):
            for left in np.linspace(0, w - side, level).round().astype(int):
                total += F.normalize(_gem(m[:, :, top:top + side, left:left + side]), dim=1)
    return total


def pooled(net: torch.nn.Module, x: torch.Tensor) -> Pooled:
    """Every candidate pooling of one batch."""
    blocks = list(net.blocks)
    before = torch.nn.Sequential(*blocks[:-1])(net.stem(x))
    last = blocks[-1](before)
    head = net.head(last).float()
    return {"gem": _gem(head), "spoc": head.mean(dim=(2, 3)), "mac": head.amax(dim=(2, 3)),
            "rmac": _rmac(head), "l320": _gem(last.float()), "l192": _gem(before.float())}


def features(net: torch.nn.Module, files: list[Path], size: int, dtype: torch.dtype
             ) -> tuple[Pooled, Pooled]:
    """Candidate poolings of each file and of its mirror image."""
    plain: dict[str, list[np.ndarray]] = {}
    mirror: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for i in range(0, len(files), 16):
            pixels = np.stack([decode_for_model(f, size, max_pixels=MAX_PIXELS).pixels
                               for f in files[i:i + 16]])
            x = (torch.from_numpy(pixels).float() - 127.0) / 128.0
            x = x.permute(0, 3, 1, 2)
            for out, batch in ((plain, x), (mirror, x.flip(3))):
                batch = batch.to(dtype).contiguous(memory_format=torch.channels_last)
                for k, v in pooled(net, batch).items():
                    out.setdefault(k, []).append(v.numpy())
    return ({k: np.concatenate(v) for k, v in plain.items()},
            {k: np.concatenate(v) for k, v in mirror.items()})


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def _deflate(x: np.ndarray, direction: np.ndarray) -> np.ndarray:
    x = _unit(x)
    return _unit(x - np.outer(x @ direction, direction))


def sign_projection(d_in: int, d_out: int) -> np.ndarray:
    """A fixed random ±1 projection from SHA-256 (the same on every machine and version)."""
    blocks = (d_in * d_out + 255) // 256
    raw = b"".join(hashlib.sha256(b"findsimilar" + i.to_bytes(4, "little")).digest()
                   for i in range(blocks))
    bits = np.unpackbits(np.frombuffer(raw, np.uint8))[:d_in * d_out].reshape(d_in, d_out)
    return (bits.astype(np.float32) * 2 - 1) / np.sqrt(d_out)


Candidate = Callable[[Pooled, Pooled], np.ndarray]


def candidates(means: dict[str, np.ndarray]) -> dict[str, Candidate]:
    def mirrored(k: str) -> Candidate:
        return lambda p, m: _unit(_unit(p[k]) + _unit(m[k]))

    def deflated(k: str, mirror: bool) -> Candidate:
        base = mirrored(k) if mirror else (lambda p, m: _unit(p[k]))
        return lambda p, m: _deflate(base(p, m), means[k])

    def two_layers(mirror: bool) -> Candidate:
        a, b = deflated("l320", mirror), deflated("l192", mirror)
        return lambda p, m: _unit(np.concatenate([a(p, m), b(p, m)], axis=1))

    projection = sign_projection(1280, 512)
    out: dict[str, Candidate] = {
        "1280: GeM (v1)": lambda p, m: _unit(p["gem"]),
        "1280: SPoC": lambda p, m: _unit(p["spoc"]),
        "1280: MAC": lambda p, m: _unit(p["mac"]),
        "1280: R-MAC": lambda p, m: _unit(p["rmac"]),
        "1280: GeM + mirror": mirrored("gem"),
        "1280: GeM - mean": deflated("gem", False),
        "1280: GeM + mirror - mean": deflated("gem", True),
        "512: GeM - mean, random ±1 projection": lambda p, m: _unit(
            deflated("gem", False)(p, m) @ projection),
        "320: last stage GeM": lambda p, m: _unit(p["l320"]),
        "320: last stage GeM - mean": deflated("l320", False),
        "192: stage 6 GeM - mean": deflated("l192", False),
        "512: 320 + 192 - mean (efficientnet-lite0-gem512)": two_layers(False),
        "512: 320 + 192 + mirror - mean (efficientnet-lite0-mirror-gem512)": two_layers(True),
    }
    return out


def imagenet_means(net: torch.nn.Module) -> dict[str, np.ndarray]:
    """The ImageNet mean directions layer_gem.py removes, per pooled layer."""
    state = load_checkpoint("lite0")
    blocks = list(net.blocks)
    width = blocks[-2].project.conv.out_channels
    stage = [i for i, b in enumerate(blocks) if b.project.conv.out_channels == width]
    head = imagenet_mean_direction(state["_bn1.bias"].double().numpy(),
                                   state["_bn1.weight"].double().numpy())
    return {"gem": head, "l320": stage_mean_direction(state, [len(blocks) - 1]),
            "l192": stage_mean_direction(state, stage)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    started = time.time()
    torch.set_num_threads(2)
    net = load_efficientnet_lite("lite0", args.size).to(memory_format=torch.channels_last)
    dtype = EfficientNetLiteGeM("lite0").dtype  # bfloat16 where the CPU has it, as indexing
    net = net.to(dtype)
    with tempfile.TemporaryDirectory(prefix="fs-candidates-") as tmp:
        corpus: Corpus = build_corpus(Path(tmp))
        lib = features(net, corpus.photos, args.size, dtype)
        queries = features(net, [q[2] for q in corpus.queries], args.size, dtype)
    print(f"# EfficientNet-Lite0 at {args.size} px, {dtype}, {len(corpus.queries)} edited "
          f"copies, {time.time() - started:.0f} s")
    print("| candidate | R@1 all | R@1 weakest kind | mAP | P@1 |"
          " R@1 all, library-whitened | mAP, library-whitened |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, make in candidates(imagenet_means(net)).items():
        library, query = make(*lib), make(*queries)
        mean, projection = pca_whitening(library)
        cells = []
        for a, b in ((library, query),
                     (_unit((library - mean) @ projection), _unit((query - mean) @ projection))):
            hits, _, _ = rank1(corpus, a, b)
            every = [h for v in hits.values() for h in v]
            mean_ap, p1 = category_map(corpus, a)
            cells.append((np.mean(every), min(np.mean(v) for v in hits.values()), mean_ap, p1))
        (r, w, m, p), (rw, _, mw, _) = cells
        print(f"| {name} | {r:.3f} | {w:.3f} | {m:.3f} | {p:.3f} | {rw:.3f} | {mw:.3f} |")


if __name__ == "__main__":
    main()
