"""Duplicate tiers over edited copies: pairwise precision and recall of `findsimilar dupes`.

Corpus (cached in /tmp/findsimilar-bench-dupes/corpus-v1-every<N>): every decodable shared
photo (originals and distractors, `originals/<path in ../shared/photos>`), the 13 edits of
bench/edits.py applied to every N-th of them (`edits/<idx>_<edit>.<ext>`), and byte copies of
a few (`copies/<idx>_copy.<ext>`), so the exact tier has work beyond the shared set's own.

Ground truth: two files are duplicates when they show the same picture, that is
  * a photo, each of its edits and its byte copies (two edits of one photo included);
  * the files of a GROUPS.json `near_duplicate` group, and two same-picture pairs that
    GROUPS.json does not list, both checked by eye: `imagededup/formats/alpha_channel_image.png`
    is `imagededup/base/ukbench00120.jpg` with an opaque alpha channel (every alpha value 255;
    so it joins that group), and `imagededup/formats/baboon.pgm` is the greyscale of
    `opencv/baboon.jpg`.
Files from the two sides of a GROUPS.json `same_scene` pair (two shots of one scene, or edits
of them) must not be called duplicates: such pairs count as false pairs and are also counted
on their own. Every other pair is a negative.

Methods, on the same files:
  * findsimilar: `findsimilar index`, then `findsimilar dupes --json` (--no-daemon, a new data
    dir); its duplicate pairs are the pairs inside each `exact` or `near` group (`similar`
    groups are not duplicates). The default threshold, and each of --thresholds.
  * pHash, 64 bits (`imagehash.phash`, EXIF-transposed RGB): pairs at Hamming distance <= t,
    and "pHash grouped": the connected components of that graph, which is what a
    dedup tool built on it shows.

The extractor is the configured one (``FINDSIMILAR_EXTRACTOR``, passed on to the CLI) unless
``--extractor`` names another; its cosine thresholds (``ModelSpec``) are the ones `dupes`
applies. ``--similar-thresholds 0.7,0.75`` also lists the similar tier at those
``--similar-threshold`` values (warm runs: the verdicts are cached).

Usage: python bench/dupes_quality.py [--every 1] [--thresholds 0.8,0.9] [--misses] [--append]
       [--extractor NAME] [--similar-thresholds S1,S2]

Near-tier precision and recall by edit kind, pair by pair, on a generated set (every edit
of tests/photo_edits.NEAR_EDITS at several strengths, moved objects, same-scene pairs; a
calibration half and a held-out half): ``python bench/dupes_quality.py --edits [...]``,
which runs bench/dupes_edits.py (see its docstring).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edits import EDITS, SHARED, apply_edit, shared_groups, shared_photos  # noqa: E402

from findsimilar.config import load_config  # noqa: E402
from findsimilar.daemon.model.spec import model_spec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CORPUS_VERSION = "v1"
COPY_EVERY = 20  # byte copies of photos 0, 20, 40, ...
UNDECLARED_SAME_PICTURE = [
    ["imagededup/formats/alpha_channel_image.png", "imagededup/base/ukbench00120.jpg"],
    ["imagededup/formats/baboon.pgm", "opencv/baboon.jpg"],
]
DUPLICATE_TIERS = ("exact", "near")
EDIT_NAME = {fn.__name__: name for name, fn in EDITS.items()}
TWO_EDITS = "two edits of one photo"
BYTE_COPY = "byte-identical files"
SAME_PICTURE = "same picture, other file (GROUPS.json), or edits of it"
KINDS = [*EDITS, TWO_EDITS, BYTE_COPY, SAME_PICTURE]
HEADING = "## Duplicates: quality"


# -- corpus and ground truth ----------------------------------------------------------------
@dataclass
class Corpus:
    root: Path
    files: list[Path]  # absolute
    source: list[int]  # index into shared_photos() of the photo each file comes from
    form: list[str]  # "original", "copy", or the EDITS name
    picture: np.ndarray  # files with equal picture ids are duplicates
    scene: np.ndarray  # same_scene group per file, -1 for none
    digest: list[bytes] = field(default_factory=list)  # of the file
    origin: list[bytes] = field(default_factory=list)  # of the shared photo it comes from

    def describe(self, i: int) -> str:
        photo = str(shared_photos()[self.source[i]].relative_to(SHARED))
        return photo if self.form[i] == "original" else f"{self.form[i]} of {photo}"


def _sha256(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def picture_ids(photos: list[Path]) -> list[int]:
    """One id per shared photo, equal for photos that show the same picture."""
    rel = [str(p.relative_to(SHARED)) for p in photos]
    index = {r: i for i, r in enumerate(rel)}
    parent = list(range(len(photos)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_digest: dict[bytes, list[str]] = {}
    for r, p in zip(rel, photos, strict=True):
        by_digest.setdefault(_sha256(p), []).append(r)
    groups = [*shared_groups()["near_duplicate"], *UNDECLARED_SAME_PICTURE,  # type: ignore[misc]
              *by_digest.values()]
    for group in groups:
        members = [index[m] for m in group if m in index]
        for m in members[1:]:
            parent[find(m)] = find(members[0])
    return [find(i) for i in range(len(photos))]


def scene_ids(photos: list[Path], pictures: list[int]) -> dict[int, int]:
    """Picture id -> its GROUPS.json same_scene group (pictures in none are left out)."""
    index = {str(p.relative_to(SHARED)): i for i, p in enumerate(photos)}
    scenes: dict[int, int] = {}
    for k, group in enumerate(shared_groups()["same_scene"]):  # type: ignore[arg-type]
        for member in group:
            if member in index:
                scenes[pictures[index[member]]] = k
    return scenes


def _cached_copy(src: Path, dest: Path) -> Path:
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        shutil.copyfile(src, part)
        part.rename(dest)
    return dest


def _cached_edit(name: str, src: Path, stem: Path, scratch: Path) -> Path:
    found = sorted(stem.parent.glob(stem.name + ".*"))
    if found:
        return found[0]
    # Written outside the corpus and renamed in: an interrupted run leaves no half file.
    out = apply_edit(name, src, scratch / stem.name)
    dest = stem.with_suffix(out.suffix)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(out, dest)
    return dest


def build_corpus(workdir: Path, every: int) -> Corpus:
    """The corpus folder (made once, then reused) and who is a duplicate of whom."""
    photos = shared_photos()
    root = workdir / f"corpus-{CORPUS_VERSION}-every{every}"
    scratch = workdir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[Path, int, str]] = []
    for i, photo in enumerate(photos):
        plan.append((_cached_copy(photo, root / "originals" / photo.relative_to(SHARED)),
                     i, "original"))
        if i % COPY_EVERY == 0:
            plan.append((_cached_copy(photo, root / "copies" / f"{i:03d}_copy{photo.suffix}"),
                         i, "copy"))
        if i % every == 0:
            for name, fn in EDITS.items():
                stem = root / "edits" / f"{i:03d}_{fn.__name__}"
                plan.append((_cached_edit(name, photo, stem, scratch), i, name))
    wanted = {p for p, _, _ in plan}
    for stray in [p for p in root.rglob("*") if p.is_file() and p not in wanted]:
        stray.unlink()  # from an older layout: it would be indexed too
    pictures = picture_ids(photos)
    scenes = scene_ids(photos, pictures)
    picture = np.array([pictures[i] for _, i, _ in plan])
    return Corpus(root, [p for p, _, _ in plan], [i for _, i, _ in plan],
                  [f for _, _, f in plan], picture,
                  np.array([scenes.get(int(p), -1) for p in picture]),
                  [_sha256(p) for p, _, _ in plan], [_sha256(photos[i]) for _, i, _ in plan])


@dataclass
class Truth:
    same: np.ndarray  # upper-triangular bool: the pair shows one picture
    scene: np.ndarray  # upper-triangular bool: two shots of one scene
    pairs: tuple[np.ndarray, np.ndarray]  # the duplicate pairs, as (i, j) arrays
    kinds: np.ndarray  # the kind (KINDS) of each duplicate pair


def pair_kind(c: Corpus, i: int, j: int) -> str:
    """BYTE_COPY, an edit (the edited copy and its original, or a byte copy of it), TWO_EDITS
    (of one photo), else SAME_PICTURE (another file of the picture, or an edit of one)."""
    if c.digest[i] == c.digest[j]:
        return BYTE_COPY
    if c.origin[i] != c.origin[j]:
        return SAME_PICTURE
    edited = [f for f in (c.form[i], c.form[j]) if f in EDITS]
    return TWO_EDITS if len(edited) == 2 else edited[0]


def ground_truth(c: Corpus) -> Truth:
    n = len(c.files)
    upper = np.triu(np.ones((n, n), bool), 1)
    same = (c.picture[:, None] == c.picture[None, :]) & upper
    scene = ((c.scene[:, None] == c.scene[None, :]) & (c.scene[:, None] >= 0)
             & ~same & upper)
    ii, jj = np.nonzero(same)
    kinds = np.array([pair_kind(c, int(i), int(j)) for i, j in zip(ii, jj, strict=True)])
    return Truth(same, scene, (ii, jj), kinds)


# -- the methods ----------------------------------------------------------------------------
@dataclass
class Run:
    method: str
    setting: str
    pred: np.ndarray  # upper-triangular bool: the pairs called duplicates
    seconds: float | None = None


def phash_bits(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit pHash of each file as bools, and which files could be hashed."""
    import imagehash
    import pillow_heif

    pillow_heif.register_heif_opener()
    bits = np.zeros((len(files), 64), bool)
    ok = np.ones(len(files), bool)
    for k, f in enumerate(files):
        try:
            with Image.open(f) as im:
                rgb = ImageOps.exif_transpose(im).convert("RGB")
                bits[k] = imagehash.phash(rgb, hash_size=8).hash.ravel()
        except Exception as exc:  # noqa: BLE001 - a file pHash cannot read pairs with nothing
            ok[k] = False
            print(f"# pHash: cannot read {f}: {exc}", file=sys.stderr)
    return bits, ok


def hamming(bits: np.ndarray, ok: np.ndarray) -> np.ndarray:
    b = bits.astype(np.int32)
    dist = b @ (1 - b).T + (1 - b) @ b.T
    dist[~ok, :] = dist[:, ~ok] = 65  # beyond every threshold
    return dist


def components(adjacent: np.ndarray) -> np.ndarray:
    """Connected-component label per node of a symmetric boolean adjacency matrix."""
    parent = np.arange(len(adjacent))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    for i, j in zip(*np.nonzero(np.triu(adjacent, 1)), strict=True):
        parent[find(int(i))] = find(int(j))
    return np.array([find(i) for i in range(len(adjacent))])


def phash_runs(files: list[Path], thresholds: list[int]) -> tuple[list[Run], list[Run], float]:
    """pHash pair runs and grouped runs, one per threshold, and the hashing time."""
    t = time.perf_counter()
    dist = hamming(*phash_bits(files))
    took = time.perf_counter() - t
    upper = np.triu(np.ones(dist.shape, bool), 1)
    pairs, grouped = [], []
    for th in thresholds:
        pairs.append(Run("pHash 64-bit, pairs", f"distance ≤ {th}", (dist <= th) & upper))
        label = components(dist <= th)
        grouped.append(Run("pHash 64-bit, grouped", f"distance ≤ {th}",
                           (label[:, None] == label[None, :]) & upper))
    return pairs, grouped, took


class FindSimilar:
    """The `findsimilar` CLI in subprocesses, on its own new data dir, without a daemon."""

    def __init__(self, workdir: Path, extractor: str) -> None:
        self.data = workdir / "data"
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FINDSIMILAR_")}
        self.env.update(FINDSIMILAR_DATA_DIR=str(self.data), FINDSIMILAR_NO_DAEMON="1",
                        FINDSIMILAR_SOCKET=str(workdir / "fs.sock"),
                        FINDSIMILAR_EXTRACTOR=extractor)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "findsimilar", *args], env=self.env,
                              cwd=REPO, text=True, capture_output=True,
                              stdin=subprocess.DEVNULL)
        if check and proc.returncode:
            sys.exit(f"findsimilar {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc

    def has_dupes(self) -> bool:
        # Not just the exit code: `findsimilar WORD` is a search for a photo named WORD.
        proc = self.cli("dupes", "--help", check=False)
        return proc.returncode == 0 and "findsimilar dupes" in proc.stdout

    def index(self, root: Path) -> tuple[float, str]:
        """Seconds to index ``root``, and a note on files that failed."""
        t = time.perf_counter()
        proc = self.cli("index", str(root), "--no-daemon", "-q", "--json")
        took = time.perf_counter() - t
        try:
            failed = json.loads(proc.stdout).get("failed", [])
        except (json.JSONDecodeError, AttributeError):
            return took, ""
        return took, f"{len(failed)} files failed to index: {failed}" if failed else ""

    def dupes(self, root: Path, threshold: str | None, *, all_tiers: bool = False,
              similar: str | None = None) -> tuple[list[dict[str, Any]], float]:
        """The groups of `findsimilar dupes --json`, and its wall time."""
        args = ["dupes", str(root), "--json", "--no-daemon"]
        args += ["--similar-threshold", similar] if similar else []
        args += ["--threshold", threshold] if threshold else []
        args += ["--all"] if all_tiers else []
        t = time.perf_counter()
        proc = self.cli(*args)
        took = time.perf_counter() - t
        try:
            return json.loads(proc.stdout)["groups"], took
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            sys.exit(f"findsimilar dupes: unexpected output ({exc}): {proc.stdout[:500]!r}")


def group_files(group: dict[str, Any]) -> list[str]:
    if "files" in group:
        return [str(f) for f in group["files"]]
    return [str(m["path"] if isinstance(m, dict) else m) for m in group.get("members", [])]


def groups_to_pairs(groups: list[dict[str, Any]], c: Corpus, tiers: tuple[str, ...]
                    ) -> np.ndarray:
    """Upper-triangular bool matrix of the pairs inside groups of ``tiers``."""
    where = {os.path.realpath(f): k for k, f in enumerate(c.files)}
    pred = np.zeros((len(c.files),) * 2, bool)
    unknown: set[str] = set()
    for group in groups:
        if group.get("tier") not in tiers:
            continue
        paths = [os.path.realpath(REPO / f) for f in group_files(group)]
        unknown |= {p for p in paths if p not in where}
        members = [where[p] for p in paths if p in where]
        pred[np.ix_(members, members)] = True
    if unknown:
        print(f"# dupes named {len(unknown)} files outside the corpus, e.g. "
              f"{sorted(unknown)[0]}", file=sys.stderr)
    return np.triu(pred, 1)


def findsimilar_runs(c: Corpus, truth: Truth, workdir: Path, thresholds: list[str],
                     extractor: str, similar_thresholds: list[str],
                     ) -> tuple[list[Run], list[str]]:
    """One run per threshold (None = the default), and notes on indexing and tiers."""
    fs = FindSimilar(workdir, extractor)
    if not fs.has_dupes():
        sys.exit("`findsimilar dupes` does not exist yet (or fails); use --skip-findsimilar")
    took, failed = fs.index(c.root)
    notes = [f"findsimilar index: {len(c.files)} files in {took:.1f} s "
             f"({len(c.files) / took:.0f} files/s, model load included)"]
    notes += [failed] if failed else []
    runs = []
    for th in [None, *thresholds]:
        groups, took = fs.dupes(c.root, th)
        runs.append(Run("findsimilar dupes", f"--threshold {th}" if th else "default",
                        groups_to_pairs(groups, c, DUPLICATE_TIERS), took))
    notes.append("the first dupes run is cold (every pixel check computed); later runs reuse "
                 "the verdicts it cached")
    for similar_threshold in [None, *similar_thresholds]:
        groups, _ = fs.dupes(c.root, None, all_tiers=True, similar=similar_threshold)
        tiers = {t: sum(g.get("tier") == t for g in groups)
                 for t in ("exact", "near", "similar")}
        similar = groups_to_pairs(groups, c, ("similar",)) & ~runs[0].pred
        unrelated = similar & ~truth.scene & ~truth.same
        notes.append(
            "findsimilar groups at the default threshold, with --all"
            + (f" --similar-threshold {similar_threshold}" if similar_threshold else "")
            + ": " + ", ".join(f"{n} {t}" for t, n in tiers.items())
            + f"; the similar tier holds {int((similar & truth.scene).sum())} of the "
            f"{int(truth.scene.sum())} same-scene pairs, "
            f"{int((similar & truth.same).sum())} of the missed duplicate pairs and "
            f"{int(unrelated.sum())} pairs of unrelated pictures")
    return runs, notes


# -- scores and tables ----------------------------------------------------------------------
@dataclass
class Scores:
    reported: int
    right: int
    precision: float
    recall: float
    f1: float
    false: int
    same_scene: int


def score(pred: np.ndarray, truth: Truth) -> Scores:
    reported, right = int(pred.sum()), int((pred & truth.same).sum())
    precision = right / reported if reported else 1.0
    recall = right / int(truth.same.sum())
    f1 = 2 * precision * recall / (precision + recall) if right else 0.0
    return Scores(reported, right, precision, recall, f1, reported - right,
                  int((pred & truth.scene).sum()))


def kind_recall(pred: np.ndarray, truth: Truth) -> dict[str, tuple[int, int]]:
    """Kind -> (found, total) duplicate pairs."""
    found = pred[truth.pairs]
    return {k: (int(found[truth.kinds == k].sum()), int((truth.kinds == k).sum()))
            for k in KINDS if (truth.kinds == k).any()}


def scores_table(runs: list[Run], truth: Truth) -> list[str]:
    lines = ["| method | setting | pairs called duplicates | precision | recall | F1 | "
             "false pairs | same-scene pairs among them | dupes time |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        s = score(r.pred, truth)
        took = f"{r.seconds:.1f} s" if r.seconds is not None else ""
        bold = "**" if r.method.startswith("findsimilar") and r.setting == "default" else ""
        lines.append(f"| {bold}{r.method}{bold} | {r.setting} | {s.reported} | "
                     f"{bold}{s.precision:.4f}{bold} | {bold}{s.recall:.4f}{bold} | {s.f1:.4f} | "
                     f"{s.false} | {s.same_scene} | {took} |")
    return lines


def kinds_table(runs: list[Run], truth: Truth) -> list[str]:
    per_run = [kind_recall(r.pred, truth) for r in runs]
    heads = [f"{r.method.replace(', pairs', '')} {r.setting}".replace(" default", "")
             for r in runs]
    lines = ["| duplicate pair | pairs | " + " | ".join(heads) + " |",
             "|---|---:|" + "---:|" * len(runs)]
    for kind, (_, total) in per_run[0].items():
        cells = [f"{100 * rec[kind][0] / total:.1f}%" for rec in per_run]
        lines.append(f"| {kind} | {total} | " + " | ".join(cells) + " |")
    cells = [f"{100 * score(r.pred, truth).recall:.1f}%" for r in runs]
    lines.append(f"| **all** | {int(truth.same.sum())} | " + " | ".join(cells) + " |")
    return lines


def describe_part(c: Corpus, part: np.ndarray) -> str:
    """Files named by photo: "a.jpg (original, mirror)", or "a.jpg (all 14)"."""
    forms: dict[int, list[str]] = {}
    for k in part:
        forms.setdefault(c.source[k], []).append(c.form[k])
    names = []
    for src, fs in forms.items():
        every = sum(s == src for s in c.source)
        names.append(f"{shared_photos()[src].relative_to(SHARED)} "
                     f"({f'all {every}' if len(fs) == every else ', '.join(fs)})")
    return "; ".join(names)


def misses(run: Run, c: Corpus, truth: Truth) -> list[str]:
    """Each picture the run split (its parts), and each pair of photos it wrongly joined."""
    out = []
    joined = run.pred | run.pred.T
    missed = truth.pairs[0][~run.pred[truth.pairs]]
    for picture in np.unique(c.picture[missed]):
        members = np.flatnonzero(c.picture == picture)
        label = components(joined[np.ix_(members, members)])
        parts = sorted((members[label == v] for v in np.unique(label)), key=len, reverse=True)
        out.append(f"split in {len(parts)}: " + "  |  ".join(describe_part(c, p) for p in parts))
    wrong: dict[tuple[str, str], int] = {}
    for i, j in zip(*np.nonzero(run.pred & ~truth.same), strict=True):
        key = tuple(sorted(str(shared_photos()[c.source[k]].relative_to(SHARED)) for k in (i, j)))
        wrong[key] = wrong.get(key, 0) + 1  # type: ignore[index]
    for (a, b), count in sorted(wrong.items(), key=lambda kv: -kv[1]):
        out.append(f"joined: {a} ~ {b} (and their edits): {count} false pairs")
    return out


def machine() -> str:
    info = dict(line.split(":", 1) for line in
                subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                if ":" in line)
    model = info.get("Model name", "?").strip()
    return f"{datetime.date.today()}, {len(os.sched_getaffinity(0))} cores of {model}"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout


def code_version() -> str:
    """HEAD, the package files that differ from it, and a digest of those differences."""
    package = ("findsimilar", "daemon", "cli")
    dirty = [line[3:] for line in _git("status", "--porcelain", "--", *package).splitlines()]
    digest = hashlib.sha256(_git("diff", "HEAD", "--", *package).encode()).hexdigest()[:8]
    return f"commit {_git('rev-parse', '--short', 'HEAD').strip()}" + (
        f" + uncommitted {', '.join(dirty)} (diff {digest})" if dirty else "")


def append_to_benchmarks(block: list[str]) -> None:
    """Add ``block`` at the end of the "Duplicates: quality" section of BENCHMARKS.md."""
    path = REPO / "BENCHMARKS.md"
    lines = path.read_text().rstrip("\n").split("\n")
    if HEADING not in lines:
        lines += ["", HEADING, "", "`python bench/dupes_quality.py --append`: see the "
                  "script's docstring for the corpus and the ground truth."]
    start = lines.index(HEADING)
    end = next((k for k in range(start + 1, len(lines)) if lines[k].startswith("## ")),
               len(lines))
    while lines[end - 1] == "":
        end -= 1
    lines[end:end] = ["", *block]
    path.write_text("\n".join(lines) + "\n")


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path,
                    default=Path(tempfile.gettempdir()) / "findsimilar-bench-dupes")
    ap.add_argument("--every", type=int, default=1, help="edit every N-th shared photo")
    ap.add_argument("--thresholds", default="",
                    help="extra findsimilar dupes --threshold values, comma-separated")
    ap.add_argument("--phash-thresholds", default="4,6,8,10,12,16")
    ap.add_argument("--kind-phash", type=int, default=10,
                    help="pHash distance shown in the per-kind table (imagededup's default)")
    ap.add_argument("--skip-findsimilar", action="store_true", help="pHash only")
    ap.add_argument("--misses", action="store_true",
                    help="list the pictures findsimilar split and the photos it wrongly joined")
    ap.add_argument("--append", action="store_true", help="append the tables to BENCHMARKS.md")
    ap.add_argument("--extractor", default=None,
                    help="the extractor to index with (default: FINDSIMILAR_EXTRACTOR's)")
    ap.add_argument("--similar-thresholds", default="",
                    help="extra --similar-threshold values for the similar tier's note")
    return ap.parse_args()


def corpus_note(c: Corpus, truth: Truth) -> str:
    n = len(c.files)
    edited = {s for s, f in zip(c.source, c.form, strict=True) if f in EDITS}
    return (f"{n} files: {len(shared_photos())} shared photos, "
            f"{sum(f in EDITS for f in c.form)} edits (the {len(EDITS)} edits of "
            f"{len(edited)} photos), {c.form.count('copy')} byte copies; "
            f"{n * (n - 1) // 2} pairs, {int(truth.same.sum())} duplicate, "
            f"{int(truth.scene.sum())} same-scene")


def goal_note(run: Run, truth: Truth) -> str:
    s = score(run.pred, truth)
    met = s.precision >= 0.99 and s.recall >= 0.90 and s.same_scene == 0
    return (f"goal (precision ≥ 0.99, recall ≥ 0.90, no same-scene pair), findsimilar "
            f"{run.setting}: {'met' if met else 'NOT met'}")


def main() -> None:
    if "--edits" in sys.argv[1:]:
        import dupes_edits

        dupes_edits.main([a for a in sys.argv[1:] if a != "--edits"])
        return
    args = parse_args()
    started, version, load = time.perf_counter(), code_version(), os.getloadavg()[0]
    c = build_corpus(args.workdir.absolute(), args.every)
    truth = ground_truth(c)
    notes = [corpus_note(c, truth)]
    phash_t = [int(t) for t in args.phash_thresholds.split(",")]
    pairs, grouped, hashing = phash_runs(c.files, sorted({*phash_t, args.kind_phash}))
    notes.append(f"pHash: {len(c.files)} files hashed in {hashing:.1f} s")
    fs_runs: list[Run] = []
    if not args.skip_findsimilar:
        extra = [t.strip() for t in args.thresholds.split(",") if t.strip()]
        similar = [t.strip() for t in args.similar_thresholds.split(",") if t.strip()]
        spec = model_spec(args.extractor or load_config().extractor)
        notes.append(f"extractor {spec.id}: candidate cosine {spec.candidate_cosine:.2f}, "
                     f"similar cosine {spec.similar_cosine:.2f}")
        fs_runs, fs_notes = findsimilar_runs(c, truth, args.workdir.absolute(), extra,
                                             spec.name, similar)
        notes += [*fs_notes, goal_note(fs_runs[0], truth)]
    notes.append(f"whole benchmark (corpus cached): {time.perf_counter() - started:.0f} s; "
                 f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    if code_version() != version:  # others may be editing the package while this runs
        notes.append(f"WARNING: the code changed during the run, to {code_version()}")
    shown = [r for r in pairs + grouped if int(r.setting.split()[-1]) in phash_t]
    kind_runs = fs_runs + [r for r in pairs + grouped
                           if r.setting == f"distance ≤ {args.kind_phash}"]
    block = [f"{machine()}, {version}; `python bench/dupes_quality.py --every {args.every}"
             + (f" --thresholds {args.thresholds}" if args.thresholds else "")
             + (f" --extractor {args.extractor}" if args.extractor else "")
             + (f" --similar-thresholds {args.similar_thresholds}"
                if args.similar_thresholds else "") + "`", "",
             *[f"- {note}" for note in notes], "",
             *scores_table(fs_runs + shown, truth), "",
             "Recall per kind of duplicate pair:", "", *kinds_table(kind_runs, truth)]
    print("\n".join(block))
    if args.misses and fs_runs:
        print("\n".join(["", *misses(fs_runs[0], c, truth)]))
    if args.append:
        append_to_benchmarks(block)


if __name__ == "__main__":
    main()
