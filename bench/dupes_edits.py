"""Near-tier precision and recall by edit kind, pair by pair, in this process.

The generated set: one photo per distinct picture of ../shared/photos (GROUPS.json
duplicates and byte copies count once), each edited by every edit of
``tests/photo_edits.NEAR_EDITS`` (duplicates: the near tier should hold each copy with its
photo) and by ``SAME_SCENE_EDITS`` (a moved object: never near), placed by a seed. The
photos are split in two halves by their order: the *calibration* half (even positions,
seed 0) is the one the thresholds were tuned on, the *held-out* half (odd positions, seed
1) was only measured. Same-scene negatives also come from GROUPS.json's `same_scene`
pairs (video frames, stereo pairs, bursts), in both halves.

For each pair the two stages of `findsimilar dupes` are measured apart:
  * candidate: the CNN cosine of the two pictures reaches the extractor's candidate
    cosine (``ModelSpec.candidate_cosine``; dupes also keeps only each picture's 16
    nearest neighbours; with one copy per pair here that never binds);
  * verified: ``verify.compare`` reaches ``NEAR_SCORE``.
A pair is found when both hold. Negatives are the same-scene pairs and every pair of
different pictures that is a candidate (pairs below the cosine are never checked).

Each pair's check is timed on its own (one thread; the previews decoded beforehand,
each pair finding its own keypoints). ``--baseline FILE`` measures an older verify.py on
the same pairs beside the current one.

The extractor is the configured one (``FINDSIMILAR_EXTRACTOR``) unless ``--extractor``
names another. ``--candidates 0.45,0.50,...`` also prints, for each of those candidate
cosines, what the near tier would find (pixel checks are then computed down to the lowest),
and the cosine percentiles of copies and of different pictures: how a new extractor's
candidate cosine is calibrated.

Usage: python bench/dupes_edits.py [--half calibration|held-out|both] [--baseline FILE]
       [--misses] [--extractor NAME] [--candidates C1,C2,...]
       (or: python bench/dupes_quality.py --edits [the same options])
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import (  # noqa: E402
    NEAR_EDITS,
    SAME_SCENE_EDITS,
    SHARED,
    apply_seeded_edit,
    shared_groups,
    shared_photos,
)

from findsimilar.config import load_config  # noqa: E402
from findsimilar.daemon.model import verify  # noqa: E402
from findsimilar.daemon.model.spec import model_spec  # noqa: E402
from findsimilar.daemon.model.verify import NEAR_SCORE, load_preview  # noqa: E402

MAX_PIXELS = 250_000_000
HALVES = {"calibration": (0, 0), "held-out": (1, 1)}  # name -> (position parity, seed)
SCENE = "same scene (GROUPS.json)"
# Shared photos showing another shared photo's picture that GROUPS.json does not list
# (see bench/dupes_quality.py): left out, so no two photos of the set are one picture.
SAME_PICTURE = {"imagededup/formats/alpha_channel_image.png", "imagededup/formats/baboon.pgm"}
# The candidate cosine of the extractor measured (main sets it from its spec).
CANDIDATE_COSINE = 0.60


@dataclass
class Pair:
    kind: str  # the edit, SCENE, or "different pictures"
    a: Path
    b: Path
    duplicate: bool
    cosine: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)  # by verifier
    ms: dict[str, float] = field(default_factory=dict)

    def found(self, verifier: str, near: float) -> bool:
        return self.cosine >= CANDIDATE_COSINE and self.scores.get(verifier, -1.0) >= near


def distinct_photos() -> list[Path]:
    """One photo per picture (the first of each GROUPS.json near-duplicate group), no
    same-scene member (their pairs are negatives of their own)."""
    groups = shared_groups()
    later = {m for g in groups["near_duplicate"] for m in g[1:]}  # type: ignore[index]
    scene = {m for g in groups["same_scene"] for m in g}  # type: ignore[union-attr]
    seen: set[bytes] = set()
    out = []
    for p in shared_photos():
        rel = str(p.relative_to(SHARED))
        digest = p.read_bytes()
        if rel in later or rel in scene or rel in SAME_PICTURE or digest in seen \
                or p.suffix == ".pbm":
            continue
        seen.add(digest)
        out.append(p)
    return out


def generated_set(workdir: Path, half: str) -> tuple[list[Pair], list[Path]]:
    """The duplicate and same-scene pairs of one half, and every file of it."""
    parity, seed = HALVES[half]
    photos = distinct_photos()[parity::2]
    pairs, files = [], list(photos)
    for n, photo in enumerate(photos):
        for name in [*NEAR_EDITS, *SAME_SCENE_EDITS]:
            stem = workdir / f"{half}-{seed}" / f"{n:02d}-{_slug(name)}"
            found = sorted(stem.parent.glob(stem.name + ".*"))
            if found:
                out = found[0]
            else:
                stem.parent.mkdir(parents=True, exist_ok=True)
                out = apply_seeded_edit(name, photo, stem, seed)
            pairs.append(Pair(name, photo, out, name in NEAR_EDITS))
            files.append(out)
    scenes = shared_groups()["same_scene"]
    for a, b in scenes[parity::2]:  # type: ignore[index]
        pairs.append(Pair(SCENE, SHARED / a, SHARED / b, False))
        files += [SHARED / a, SHARED / b]
    return pairs, files


def _slug(name: str) -> str:
    name = name.replace("+", "plus").replace("-", "minus").replace("%", "pc")
    return "".join(c if c.isalnum() else "_" for c in name)


def embed(files: list[Path], cache: Path, extractor: str) -> dict[Path, np.ndarray]:
    """Each file's ``extractor`` descriptor (kept in ``cache`` by path, size and mtime)."""
    from findsimilar.daemon.model.decode import decode_for_model
    from findsimilar.daemon.model.features import create_extractor

    known = dict(np.load(cache)) if cache.exists() else {}
    net, out = None, {}
    for f in dict.fromkeys(files):
        key = f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
        if key not in known:
            net = net or create_extractor(extractor, threads=2)
            pixels = decode_for_model(f, net.input_size, max_pixels=MAX_PIXELS).pixels
            v = net.embed(pixels[None])[0]
            known[key] = v / np.linalg.norm(v)
        out[f] = known[key]
    if net is not None:
        np.savez(cache, **known)
    return out


def check(pairs: list[Pair], vectors: dict[Path, np.ndarray],
          verifiers: dict[str, ModuleType], lowest: float) -> None:
    """Fill in each pair's cosine, and where it is a candidate (or a duplicate) its
    score by each verifier, timed (a candidate: cosine ≥ ``lowest``). Previews are decoded
    outside the timing (the check is a function of two decoded previews) and each pair
    computes its own keypoints."""
    previews: dict[Path, np.ndarray] = {}
    for p in pairs:
        p.cosine = float(vectors[p.a] @ vectors[p.b])
        if p.cosine < lowest and not p.duplicate:
            continue
        for f in (p.a, p.b):
            if f not in previews:
                previews[f] = load_preview(f, max_pixels=MAX_PIXELS).grey
        for name, module in verifiers.items():
            a, b = module.Preview(previews[p.a]), module.Preview(previews[p.b])
            t = time.perf_counter()
            p.scores[name] = module.compare(a, b)
            p.ms[name] = 1000 * (time.perf_counter() - t)


def load_verifier(path: Path) -> ModuleType:
    """A verify module from a file (e.g. ``git show COMMIT:daemon/model/verify.py``)."""
    spec = importlib.util.spec_from_file_location(f"verify_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def unrelated(photos_files: list[Path], vectors: dict[Path, np.ndarray], pairs: list[Pair],
              lowest: float) -> tuple[list[Pair], np.ndarray]:
    """Candidate pairs (cosine ≥ ``lowest``) of files showing different pictures, and the
    cosines of all pairs of different pictures."""
    origin: dict[Path, Path] = {}
    for p in pairs:
        if p.kind != SCENE:
            origin[p.a] = origin[p.b] = p.a
    files = [f for f in dict.fromkeys(photos_files) if f in origin]
    m = np.stack([vectors[f] for f in files])
    cos = m @ m.T
    source = np.array([hash(origin[f]) for f in files])
    other = np.triu(source[:, None] != source[None, :], 1)
    out = [Pair("different pictures", files[i], files[j], False)
           for i, j in zip(*np.nonzero(other & (cos >= lowest)), strict=True)]
    return out, cos[other]


def sweep(pairs: list[Pair], others: np.ndarray, candidates: list[float],
          near: float) -> list[str]:
    """Per candidate cosine: duplicates that are candidates, near-tier recall and false
    pairs, and how many pairs of different pictures would get a pixel check."""
    dup = [p for p in pairs if p.duplicate]
    lines = ["| candidate cosine | candidates among duplicates | near-tier recall | "
             "wrongly near | pairs of different pictures checked |", "|---:|---:|---:|---:|---:|"]
    for c in candidates:
        found = [p for p in pairs if p.cosine >= c and p.scores.get("now", -1.0) >= near]
        tp = sum(p.duplicate for p in found)
        lines.append(f"| {c:.2f} | {sum(p.cosine >= c for p in dup)}/{len(dup)} | "
                     f"{tp / len(dup):.3f} | {len(found) - tp} | {int((others >= c).sum())} |")
    copies = np.array([p.cosine for p in dup])
    scene = [p.cosine for p in pairs if p.kind == SCENE]
    lines += ["", "cosine percentiles: copies 1st / 5th / 50th "
              + " / ".join(f"{np.percentile(copies, q):.3f}" for q in (1, 5, 50))
              + "; different pictures 50th / 95th / 99th / 99.9th / max "
              + " / ".join(f"{np.percentile(others, q):.3f}" for q in (50, 95, 99, 99.9))
              + f" / {others.max():.3f}; same-scene pairs "
              + ", ".join(f"{c:.2f}" for c in sorted(scene))]
    return lines


def table(pairs: list[Pair], verifiers: list[str], near: float) -> list[str]:
    """Per kind: pairs, candidates, and per verifier the pairs verified and found (for
    duplicates) or wrongly put in the near tier (for the others)."""
    by_kind: dict[str, list[Pair]] = defaultdict(list)
    for p in pairs:
        by_kind[p.kind].append(p)
    heads = " | ".join(f"{v}: verified | {v}: found / false" for v in verifiers)
    lines = [f"| edit | pairs | candidates | {heads} |",
             "|---|---:|---:|" + "---:|---:|" * len(verifiers)]
    for kind, ps in by_kind.items():
        cells = [f"{kind}", str(len(ps)), str(sum(p.cosine >= CANDIDATE_COSINE for p in ps))]
        for v in verifiers:
            verified = sum(p.scores.get(v, -1.0) >= near for p in ps)
            found = sum(p.found(v, near) for p in ps)
            cells += [str(verified), str(found) if ps[0].duplicate else f"**{found}**"
                      if found else "0"]
        lines.append("| " + " | ".join(cells) + " |")
    for v in verifiers:
        lines.append("")
        lines.append(summary(pairs, v, near))
    return lines


def summary(pairs: list[Pair], verifier: str, near: float) -> str:
    tp = sum(p.found(verifier, near) and p.duplicate for p in pairs)
    fp = sum(p.found(verifier, near) and not p.duplicate for p in pairs)
    dup = sum(p.duplicate for p in pairs)
    candidates = sum(p.cosine >= CANDIDATE_COSINE and p.duplicate for p in pairs)
    ms = [p.ms[verifier] for p in pairs if verifier in p.ms]
    same = [p.ms[verifier] for p in pairs if verifier in p.ms and p.duplicate]
    other = [p.ms[verifier] for p in pairs if verifier in p.ms and not p.duplicate]
    return (f"{verifier}: recall {tp / dup:.3f} ({tp}/{dup}; candidates {candidates}), "
            f"precision {tp / max(1, tp + fp):.4f} ({fp} false); pixel check "
            f"{np.mean(ms):.1f} ms a pair (median {np.median(ms):.1f}, {len(ms)} pairs; "
            f"duplicates {np.mean(same):.1f}, others {np.mean(other):.1f})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench/dupes_edits.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/findsimilar-bench-edits"))
    ap.add_argument("--half", choices=[*HALVES, "both"], default="both")
    ap.add_argument("--baseline", type=Path,
                    help="also measure the verify.py in this file (e.g. from "
                         "`git show COMMIT:daemon/model/verify.py`), on the same pairs")
    ap.add_argument("--misses", action="store_true", help="list each wrong pair")
    ap.add_argument("--extractor", default=None,
                    help="the extractor to measure (default: FINDSIMILAR_EXTRACTOR's)")
    ap.add_argument("--candidates", default="",
                    help="candidate cosines to compare, comma-separated")
    args = ap.parse_args(argv)
    global CANDIDATE_COSINE
    spec = model_spec(args.extractor or load_config().extractor)
    CANDIDATE_COSINE = spec.candidate_cosine
    sweeping = [float(c) for c in args.candidates.split(",") if c.strip()]
    lowest = min([CANDIDATE_COSINE, *sweeping])
    print(f"extractor {spec.id}: candidate cosine {CANDIDATE_COSINE:.2f}")
    verifiers = {"now": verify}
    if args.baseline:
        verifiers = {"before": load_verifier(args.baseline), **verifiers}
    for half in HALVES if args.half == "both" else [args.half]:
        pairs, files = generated_set(args.workdir, half)
        vectors = embed(files, args.workdir / f"vectors-{spec.id.replace('/', '-')}.npz",
                        spec.name)
        negatives, others = unrelated(files, vectors, pairs, lowest)
        pairs += negatives
        load = os.getloadavg()[0]
        check(pairs, vectors, verifiers, lowest)
        print(f"\n### {half} half: {len(files)} files, {len(pairs)} pairs; load average "
              f"{load:.1f} before the checks, {os.getloadavg()[0]:.1f} after\n")
        print("\n".join(table(pairs, list(verifiers), NEAR_SCORE)))
        if sweeping:
            print("\n".join(["", *sweep(pairs, others, sweeping, NEAR_SCORE)]))
        if args.misses:
            for p in pairs:
                for v in verifiers:
                    if p.found(v, NEAR_SCORE) != p.duplicate:
                        print(f"{v} wrong: {p.kind}: {p.a.name} ~ {p.b.name}: cosine "
                              f"{p.cosine:.2f} score {p.scores.get(v, -1.0):.3f}")


if __name__ == "__main__":
    main()
