"""Match quality of a descriptor: edited copies at rank 1, and "more like this" by category.

One run measures registered extractors side by side on the same files: by default the
old ``efficientnet-lite0-gem`` (1280-d) and the new ``efficientnet-lite0-mirror-gem512``
and ``efficientnet-lite0-gem512`` (512-d; daemon/model/layer_gem.py):

* **Edited copies** (R@1): the 93 decodable photos of ../shared/photos are the library;
  each photo that is not itself a copy of another (82) is edited with every edit of
  ``tests/photo_edits.MATCH_EDITS`` (26 kinds: blur 3 px / 5 px / 1 % of the longer side,
  small copies 200 px and 10 %, JPEG quality 12 and 10, crops keeping 60 % and 50 % of the
  area, caption band and bar, rotations 90° and 180° in the pixels without EXIF and
  straightened by 5° and 10°, mirror, greyscale, a 15 % border, letterbox, brightness and
  contrast, PNG / WebP / HEIC re-encodes; placed by seed 17), and the copy is the query. Right
  = its nearest library photo is the original or a file showing the same picture (the
  GROUPS.json near-duplicate groups and the two pairs bench/quality.py adds). Almost every
  miss is the *other shot* of a GROUPS.json same-scene pair (stereo pairs, two frames of one
  video): the hardest distractor a library holds.
* **Similar photos** (mAP, P@1): bench/categories.json labels 69 of the photos into 18
  categories by eye (how, in its "about"); each labelled photo queries the library (one
  file per near-duplicate group, so re-encodings do not count), and the photos of its
  category are the relevant answers. mAP over those queries; P@1 = the top answer is of the
  query's category.

Search is exact cosine similarity over every library vector (what the flat index does for a
library this size). Pictures go through the daemon's decoder (``decode_for_model``) and the
extractor's ``embed``, as indexing does; ms/photo is the extractor's time alone, batches of
8, ``--threads`` torch threads (1 is what indexing gives the model beside 2 decode threads).

``--whiten`` adds a column for each new descriptor after PCA-whitening fitted on the
(unlabelled) library itself, as a daemon could fit on a user's library: what that would pay.

``--rerank`` adds each descriptor re-ranked as the engine's search does: near-tied first
results put in order by the pixel check (daemon/rerank.py; bench/rerank_quality.py).

Usage: python bench/match_quality.py [--old NAME] [--new NAME] [--threads 1]
       [--misses] [--whiten] [--rerank]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import SHARED, shared_groups, shared_photos  # noqa: E402
from quality import equivalents  # noqa: E402
from rerank_quality import Pixels, Reranker, Rule, engine_rule, first_of, rule_rows, sweep  # noqa: E402

from findsimilar.daemon.model.decode import decode_for_model  # noqa: E402
from findsimilar.daemon.model.features import FeatureExtractor, create_extractor  # noqa: E402
from findsimilar.daemon.model.spec import model_spec as extractor_spec  # noqa: E402
from tests.photo_edits import MATCH_EDITS, apply_match_edit  # noqa: E402

SEED = 17
CATEGORIES = Path(__file__).resolve().parent / "categories.json"
MAX_PIXELS = 250_000_000


@dataclass
class Corpus:
    photos: list[Path]  # the library
    same: dict[str, set[str]]  # path -> paths showing the same picture
    queries: list[tuple[str, Path, Path]]  # (edit, original, edited copy)
    labels: dict[str, str]  # path -> category
    distinct: list[Path]  # one photo per near-duplicate group (the labelled one if any)
    scene: dict[str, set[str]]  # path -> the other shots of its GROUPS.json same-scene group


def build_corpus(workdir: Path) -> Corpus:
    """Write the edited copies into ``workdir`` and gather what the measures need."""
    photos = shared_photos()
    same = equivalents()
    labels = {str(SHARED / p): c for c, ps in
              json.loads(CATEGORIES.read_text())["categories"].items() for p in ps}
    distinct: list[Path] = []
    covered: set[str] = set()
    for p in photos:
        if str(p) in covered:
            continue
        group = same.get(str(p), {str(p)})
        covered |= group
        distinct.append(Path(next((g for g in sorted(group) if g in labels), str(p))))
    sources = [p for p in photos if str(p) == min(same.get(str(p), {str(p)}))]
    queries = []
    for i, photo in enumerate(sources):
        for j, name in enumerate(MATCH_EDITS):
            copy = apply_match_edit(name, photo, workdir / f"{i:03d}-{j:02d}", SEED)
            queries.append((name, photo, copy))
    scene = {str(SHARED / m): {str(SHARED / o) for o in group}
             for group in shared_groups()["same_scene"] for m in group}  # type: ignore[union-attr]
    return Corpus(photos, same, queries, labels, distinct, scene)


def embed_files(extractor: FeatureExtractor, files: list[Path]) -> tuple[np.ndarray, float]:
    """Descriptors of ``files`` and the extractor's seconds per photo (decode excluded)."""
    pixels = np.stack([decode_for_model(f, extractor.input_size, max_pixels=MAX_PIXELS).pixels
                       for f in files])
    extractor.embed(pixels[:8])  # warm up: the first call builds the network
    out, spent = [], 0.0
    for i in range(0, len(pixels), 8):
        started = time.perf_counter()
        out.append(extractor.embed(pixels[i:i + 8]))
        spent += time.perf_counter() - started
    return np.concatenate(out), spent / len(pixels)


def rank1(corpus: Corpus, library: np.ndarray, queries: np.ndarray,
          reranker: Reranker | None = None) -> tuple[dict[str, list[bool]], list[str], int]:
    """Per edit, whether each query's first result (nearest library photo, or with
    ``reranker`` the engine's re-ranked first) shows its picture; the misses; how many of
    them found the other shot of the original's same-scene pair instead."""
    names = [str(p) for p in corpus.photos]
    top = [first_of(reranker, q[2], names, row)
           for q, row in zip(corpus.queries, queries @ library.T, strict=True)]
    hits: dict[str, list[bool]] = defaultdict(list)
    misses, sibling = [], 0
    for (name, original, _), t in zip(corpus.queries, top, strict=True):
        found = str(corpus.photos[t])
        ok = found in corpus.same.get(str(original), {str(original)})
        hits[name].append(ok)
        sibling += not ok and found in corpus.scene.get(str(original), set())
        if not ok:
            misses.append(f"[{name}] {original.relative_to(SHARED)} -> "
                          f"{corpus.photos[t].relative_to(SHARED)}")
    return hits, misses, sibling


def category_map(corpus: Corpus, library: np.ndarray,
                 reranker: Reranker | None = None) -> tuple[float, float]:
    """mAP and P@1 of same-category retrieval among the distinct photos (``reranker``:
    in the engine's re-ranked order)."""
    index = {str(p): i for i, p in enumerate(corpus.photos)}
    names = [str(p) for p in corpus.distinct]
    vectors = library[[index[n] for n in names]]
    sizes = defaultdict(int)
    for n in names:
        if n in corpus.labels:
            sizes[corpus.labels[n]] += 1
    aps, firsts = [], []
    for q, name in enumerate(names):
        cat = corpus.labels.get(name)
        if cat is None or sizes[cat] < 2:
            continue
        scores = vectors @ vectors[q]
        scores[q] = -np.inf
        order = (np.argsort(-scores) if reranker is None
                 else reranker.order(name, names, scores))[:-1]
        relevant = np.array([corpus.labels.get(names[j]) == cat for j in order])
        precision = np.cumsum(relevant) / np.arange(1, len(relevant) + 1)
        aps.append(float((precision * relevant).sum() / relevant.sum()))
        firsts.append(bool(relevant[0]))
    return float(np.mean(aps)), float(np.mean(firsts))


def pca_whitening(library: np.ndarray, shrink: float = 0.2
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and projection of a shrunk PCA-whitening fitted on ``library``: eigenvalues
    plus ``shrink`` × the largest, so that a library of a few photos is not over-fitted."""
    mean = library.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(library - mean, rowvar=False))
    return mean, vectors / np.sqrt(values + shrink * values.max())


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


@dataclass
class Result:
    label: str
    hits: dict[str, list[bool]]
    misses: list[str]
    sibling_misses: int
    mean_ap: float
    p_at_1: float
    ms: float
    dim: int


def measure(label: str, corpus: Corpus, library: np.ndarray, queries: np.ndarray,
            ms: float) -> Result:
    hits, misses, sibling = rank1(corpus, library, queries)
    mean_ap, p1 = category_map(corpus, library)
    return Result(label, hits, misses, sibling, mean_ap, p1, ms, library.shape[1])


def run(names: list[str], threads: int, whiten: bool, workdir: Path,
        rerank: bool = False) -> list[Result]:
    """Measure each extractor of ``names`` (the first is the old one) on one corpus; with
    ``rerank`` also re-ranked as the engine does (``rerank_quality``)."""
    corpus = build_corpus(workdir)
    results = []
    for name in names:
        extractor = create_extractor(name, threads)
        library, ms = embed_files(extractor, corpus.photos)
        queries, _ = embed_files(extractor, [q[2] for q in corpus.queries])
        results.append(measure(extractor.id, corpus, library, queries, 1000 * ms))
        if rerank:
            results.append(reranked(extractor.id, corpus, library, queries, ms,
                                    engine_rule(extractor_spec(name).rerank)))
        if whiten and name != names[0]:
            mean, projection = pca_whitening(library)
            results.append(measure(f"{extractor.id} + library PCA-whitening", corpus,
                                   _unit((library - mean) @ projection),
                                   _unit((queries - mean) @ projection), 1000 * ms))
    return results


def reranked(label: str, corpus: Corpus, library: np.ndarray, queries: np.ndarray,
             ms: float, engine: Rule) -> Result:
    """The measures re-ranked by the ``engine``'s rule; a table of others (``sweep``)."""
    pixels, rows, first = Pixels(), [], None
    for rule in sweep(engine):
        reranker = Reranker(pixels, rule)
        hits, misses, sibling = rank1(corpus, library, queries, reranker)
        copies = reranker.share()
        mean_ap, p1 = category_map(corpus, library, reranker)
        result = Result(f"{label} + re-ranked", hits, misses, sibling, mean_ap, p1,
                        1000 * ms, library.shape[1])
        first = first or result
        every = [h for v in hits.values() for h in v]
        rows.append((rule, copies, reranker.share(), float(np.mean(every)),
                     min(float(np.mean(v)) for v in hits.values()), mean_ap))
    rule_rows(label, rows)
    print(f"pixel checks: {pixels.pairs} pairs, {1000 * pixels.seconds / max(1, pixels.pairs):.0f}"
          " ms a pair (previews decoded once)")
    assert first is not None
    return first


def _rate(v: list[bool]) -> str:
    return f"{np.mean(v):.3f}"


def report(results: list[Result], queries: int) -> None:
    print("| measure | " + " | ".join(r.label for r in results) + " |")
    print("|---|" + "---:|" * len(results))
    for name in MATCH_EDITS:
        print(f"| R@1 {name} | " + " | ".join(_rate(r.hits[name]) for r in results) + " |")
    print("| **R@1, all " + str(queries) + " edited copies** | "
          + " | ".join(f"**{_rate([h for v in r.hits.values() for h in v])}**"
                       for r in results) + " |")
    print("| misses that found the other shot of a same-scene pair | "
          + " | ".join(f"{r.sibling_misses} of {len(r.misses)}" for r in results) + " |")
    print("| R@1, weakest edit kind | "
          + " | ".join(f"{min(np.mean(v) for v in r.hits.values()):.3f}" for r in results)
          + " |")
    print("| **similar photos mAP** | " + " | ".join(f"**{r.mean_ap:.3f}**" for r in results)
          + " |")
    print("| similar photos P@1 | " + " | ".join(f"{r.p_at_1:.3f}" for r in results) + " |")
    print("| dimensions (bytes per photo) | "
          + " | ".join(f"{r.dim} ({4 * r.dim})" for r in results) + " |")
    print("| model ms/photo (decode excluded) | "
          + " | ".join(f"{r.ms:.1f}" for r in results) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default="efficientnet-lite0-gem")
    ap.add_argument("--new", default="efficientnet-lite0-mirror-gem512,efficientnet-lite0-gem512",
                    help="one or more extractors, comma-separated")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--whiten", action="store_true",
                    help="add the new descriptor PCA-whitened on the library")
    ap.add_argument("--misses", action="store_true", help="list every rank-1 miss")
    ap.add_argument("--rerank", action="store_true",
                    help="add each descriptor re-ranked as the engine does (near ties "
                         "checked by pixels, daemon/rerank.py)")
    args = ap.parse_args()
    os.environ["FINDSIMILAR_PRECISION"] = args.precision
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="fs-match-") as tmp:
        results = run([args.old, *args.new.split(",")], args.threads, args.whiten, Path(tmp),
                      args.rerank)
    queries = sum(len(v) for v in results[0].hits.values())
    print(f"# {len(shared_photos())} library photos, {queries} edited copies "
          f"({len(MATCH_EDITS)} kinds, seed {SEED}), precision={args.precision}, "
          f"{time.time() - started:.0f} s")
    report(results, queries)
    if args.misses:
        for r in results:
            for miss in r.misses:
                print(f"miss {r.label} {miss}")


if __name__ == "__main__":
    main()
