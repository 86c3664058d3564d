"""Retrieval quality of the descriptor settings: one table, one run, on every labelled set we have.

Rows: descriptor models (input policy and size, pooling, precision), then search-time options on the
default model (alpha query expansion, whitening fitted on the collection, rotation search).
Sets (../shared/data):
- ``paris5``: retrieval/paris5, 250 photos of 5 Paris landmarks; every photo a query, the other
  photos of its folder relevant (mAP as INRIA Holidays: trapezoid rule, the query left out);
- ``pairs``: the stereo/viewpoint pairs of photos/samples (both directions, 12 queries), in a gallery
  of all the samples photos (opencv, pixabay, skimage, sklearn; about 190);
- ``ukb``: the UKBench photos of dedup/ (10 originals) with the edited copies of ukbench00120 as
  queries (flip, resize, rotation, grey), in the same gallery;
- ``turned``: paris5 again with every query turned by 90 degrees (no EXIF): what photos without
  orientation metadata get, and what rotation search wins back. Measured only for the models of the
  rotation rows in the run (the turned queries cost a quarter of an embedding per row otherwise).
Columns: mAP, R@1 and R@10 (share of queries with a relevant photo in the first 1/10) per set, and
``img/s``: decoding + embedding the paris5 photos in the process that first embedded them (batch 8),
OpenVINO, under whatever else the machine ran then.
INT8 models are calibrated on 200 vacation photos (none of them in a measured set), as a new index
calibrates on its own photos.
Run:  PYTHONPATH=. python benchmarks/retrieval_quality.py [--quick] [--rows NAME ...] [--work DIR]
With --work, models and descriptors (and their img/s) are kept and reused: runs of one model each
can go in parallel into one folder, then one run over all the rows prints the table from them.
Speed figures are noisy on shared machines: compare rows measured together, idle.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.prune_distill import average_precision  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
CALIBRATION = DATA / "photos" / "samples" / "vacation"
SAMPLES = (
    "photos/samples/opencv",
    "photos/samples/pixabay",
    "photos/samples/skimage",
    "photos/samples/sklearn",
)
PAIRS = [
    ("skimage/motorcycle_left.png", "skimage/motorcycle_right.png"),
    ("opencv/leuvenA.jpg", "opencv/leuvenB.jpg"),
    ("opencv/graf1.png", "opencv/graf3.png"),
    ("opencv/left01.jpg", "opencv/right01.jpg"),
    ("opencv/aero1.jpg", "opencv/aero3.jpg"),
    ("opencv/box.png", "opencv/box_in_scene.png"),
]
UKB_QUERIES = [
    "dedup/mixed_images/ukbench00120_hflip.jpg",
    "dedup/mixed_images/ukbench00120_resize.jpg",
    "dedup/mixed_images/ukbench00120_rotation.jpg",
    "dedup/ukbench00120_gray.jpg",
]
UKB_TARGET = "dedup/base_images/ukbench00120.jpg"


@dataclass(frozen=True)
class Model:
    """A descriptor model to measure (keyword arguments of retrieval.nets.builder.build + precision)."""

    policy: str = "square"
    size: int = 224
    pooling: str = "gap"
    precision: str = "int8"
    scales: tuple = (1.0,)


@dataclass(frozen=True)
class Row:
    name: str
    model: Model
    qe: int = 0
    whiten: bool = False
    rotations: bool = False
    note: str = field(default="", compare=False)


def rows_to_measure(default: Model) -> list[Row]:
    old = Model("square", 224, "gap", "fp32")
    return [
        Row("square 224, GAP, FP32 (the default before)", old),
        Row("square 224, GAP, INT8", Model("square", 224, "gap")),
        Row("buckets 224, GAP, INT8", Model("buckets", 224, "gap")),
        Row("buckets 224, GeM p=3, FP32", Model("buckets", 224, "gem", "fp32")),
        Row("buckets 224, GeM p=3, INT8 (the default now)", Model("buckets", 224, "gem")),
        Row("default + QE 1 (on by default)", default, qe=1),
        Row("default + QE 2", default, qe=2),
        Row("default + QE 5", default, qe=5),
        Row("default + whitening (centring, fitted on the gallery)", default, whiten=True),
        Row("buckets 224, MAC, INT8", Model("buckets", 224, "mac")),
        Row("buckets 224, R-MAC, INT8", Model("buckets", 224, "rmac")),
        Row("buckets 224, R-MAC, INT8 + QE 1", Model("buckets", 224, "rmac"), qe=1),
        Row("buckets 224, R-MAC, INT8 + QE 2", Model("buckets", 224, "rmac"), qe=2),
        Row("buckets 288, GeM, INT8", Model("buckets", 288, "gem")),
        Row("buckets 224, GeM, 2 scales, INT8", Model("buckets", 224, "gem", scales=(1.0, 0.7071))),
        Row("buckets 320, GeM, INT8", Model("buckets", 320, "gem")),
        Row("default + rotation search", default, rotations=True),
    ]


def gallery() -> tuple[list[Path], dict]:
    """Every photo embedded once per model, and the sets as index lists into it."""
    from retrieval.compress.distill_data import photo_paths

    paris = [Path(p) for p in photo_paths([DATA / "retrieval" / "paris5"])]
    others = [Path(p) for sub in SAMPLES for p in photo_paths([DATA / sub])]
    others += [Path(p) for p in photo_paths([DATA / "dedup" / "base_images"])]
    others = [p for p in others if readable(p)]
    files = paris + others + [DATA / q for q in UKB_QUERIES]
    at = {p: i for i, p in enumerate(files)}
    names = sorted({p.parent.name for p in paris})
    sets = {
        "paris": (list(range(len(paris))), np.array([names.index(p.parent.name) for p in paris])),
        "gallery": list(range(len(paris), len(paris) + len(others))),
        "pairs": [
            (at[DATA / "photos/samples" / a], at[DATA / "photos/samples" / b])
            for x, y in PAIRS
            for a, b in ((x, y), (y, x))
        ],
        "ukb": [(at[DATA / q], at[DATA / UKB_TARGET]) for q in UKB_QUERIES],
    }
    return files, sets


def readable(path: Path) -> bool:
    from retrieval.preprocess import ImageError, open_image

    try:
        open_image(path)
        return True
    except (ImageError, OSError):
        return False


def scores(queries: np.ndarray, base: np.ndarray, qe: int) -> np.ndarray:
    """Cosine scores [Q, N] of queries against base vectors, after alpha-QE over the top ``qe``."""
    from indexer.search.query_expansion import SAME_IMAGE_SLACK, expand, others

    s = queries @ base.T
    if qe:  # as Index.search does: over the top qe hits that are not the query itself
        top = np.argsort(-s, axis=1)[:, : qe + SAME_IMAGE_SLACK]
        w, ids = others(np.take_along_axis(s, top, 1), top, qe)
        s = expand(queries, base[np.maximum(ids, 0)], np.where(ids >= 0, w, 0.0)) @ base.T
    return s


def ranked(s: np.ndarray, exclude: list[int], pool: list[int]) -> list[np.ndarray]:
    """For each query row, the pool's indexes best first, the query's own index left out."""
    pool = np.asarray(pool)
    out = []
    for row, own in zip(s, exclude):
        order = pool[np.argsort(-row[pool], kind="stable")]
        out.append(order[order != own])
    return out


def metrics(orders, relevant) -> tuple[float, float, float]:
    aps, r1, r10 = [], [], []
    for order, rel in zip(orders, relevant):
        hit = np.isin(order, list(rel))
        ranks = np.flatnonzero(hit)
        aps.append(average_precision(ranks, len(rel)))
        r1.append(bool(hit[:1].any()))
        r10.append(bool(hit[:10].any()))
    return float(np.mean(aps)), float(np.mean(r1)), float(np.mean(r10))


def paris_relevant(sets: dict) -> list[set]:
    """For each paris5 query, the other photos of its landmark."""
    idx, labels = sets["paris"]
    by_label = {lab: set(np.asarray(idx)[labels == lab]) for lab in set(labels)}
    return [by_label[lab] - {i} for i, lab in zip(idx, labels)]


def evaluate(v: np.ndarray, turned: np.ndarray | None, sets: dict, qe: int) -> dict:
    """The metrics of every set from descriptors ``v`` (one row per gallery file) and ``turned``
    (the paris5 queries turned by 90 degrees; None: no turned column)."""
    idx = sets["paris"][0]
    out = {}
    for name, q in (("paris", v[idx]), ("turned", turned)):
        if q is not None:
            out[name] = metrics(ranked(scores(q, v, qe), idx, idx), paris_relevant(sets))
    for name in ("pairs", "ukb"):
        qs = [a for a, _ in sets[name]]
        orders = ranked(scores(v[qs], v, qe), qs, sets["gallery"])
        out[name] = metrics(orders, [{b} for _, b in sets[name]])
    return out


class Embedded:
    """Descriptors of the gallery (and turned queries) for one model, and its embedding speed."""

    def __init__(self, model: Model, files: list[Path], paris_n: int, work: Path, quick: bool):
        from indexer.storage.creating import quantize_in_place
        from indexer.update.calibration import calibration_images
        from retrieval.engines import load_embedder
        from retrieval.engines.export import export_model
        from retrieval.nets.builder import build

        spec, net = build(
            "vgg16",
            str(WEIGHTS),
            pooling=model.pooling,
            input_size=model.size,
            input_policy=model.policy,
            scales=model.scales,
        )
        self.spec = spec
        model_dir = work / f"model-{spec.model_id}-{model.precision}{'-quick' if quick else ''}"
        if not (
            model_dir / "model.json"
        ).exists():  # made under another name: a killed run leaves no half model
            partial = model_dir.with_name(model_dir.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            export_model(spec, net, partial, formats=("onnx", "openvino"))
            if model.precision == "int8":
                calib = calibration_images([CALIBRATION], n=60 if quick else 200, size=spec.input_geometry)
                quantize_in_place(partial, calib)
            shutil.rmtree(model_dir, ignore_errors=True)
            partial.rename(model_dir)
        self.embedder = load_embedder("openvino", spec, model_dir, batch_size=8)
        self._paris = files[:paris_n]
        self._key = hashlib.sha256("\n".join(map(str, files)).encode()).hexdigest()[:12]
        self._dir = model_dir
        self._turned: dict = {}
        cached = model_dir / f"vectors-{self._key}.npz"
        if cached.exists():  # descriptors of an earlier run (--work): its img/s too
            with np.load(cached) as kept:
                self.vectors, self.img_s = kept["vectors"], float(kept["img_s"])
            return
        self.embed(files[:16])  # warm up: OpenVINO compiles each input shape on first use
        t = time.perf_counter()
        self.vectors = self.embed(files[:paris_n])
        self.img_s = paris_n / (time.perf_counter() - t)
        rest = self.embed(files[paris_n:])
        self.vectors = np.concatenate([self.vectors, rest])
        np.savez(cached, vectors=self.vectors, img_s=self.img_s)

    def embed(self, paths, turn=None) -> np.ndarray:
        """Descriptors of ``paths``, each turned by the PIL transpose ``turn`` when given."""
        from retrieval.preprocess import load_and_prepare, open_image, prepare

        out = []
        for i in range(0, len(paths), 8):
            if turn is not None:
                prep = [
                    prepare(open_image(p).transpose(turn), self.spec.input_geometry) for p in paths[i : i + 8]
                ]
            else:
                prep = [load_and_prepare(p, self.spec.input_geometry) for p in paths[i : i + 8]]
            out.append(self.embedder.embed_prepared(prep))
        return np.concatenate(out)

    def turned(self, turn=None) -> np.ndarray:
        """Descriptors of the paris5 photos turned by the PIL transpose ``turn`` (default: 90
        degrees), computed once (kept in the --work folder)."""
        from PIL import Image

        turn = Image.Transpose.ROTATE_90 if turn is None else turn
        if turn not in self._turned:
            name = "turned" if turn == Image.Transpose.ROTATE_90 else f"turned-{turn.name.lower()}"
            path = self._dir / f"{name}-{self._key}.npy"
            if not path.exists():
                np.save(path, self.embed(self._paris, turn))
            self._turned[turn] = np.load(path)
        return self._turned[turn]


def rotation_scores(emb: Embedded, sets: dict, qe: int) -> dict:
    """Metrics with rotation search: every query and its 90/180/270 rotations, the max score per
    gallery photo (what ``search --rotations`` does), on paris5 as is and on the turned queries.
    A query turned by 90 degrees has the same four views as the upright one (PIL transposes are
    exact), so both sets get the same numbers: the four views are embedded once (upright and 90
    are the descriptors already computed)."""
    from PIL import Image

    idx = sets["paris"][0]
    v = emb.vectors
    best = np.maximum(scores(v[idx], v, qe), scores(emb.turned(), v, qe))
    for turn in (Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270):
        best = np.maximum(best, scores(emb.turned(turn), v, qe))
    result = metrics(ranked(best, idx, idx), paris_relevant(sets))
    return {"paris": result, "turned": result}


def whitening_of(v: np.ndarray):
    """The whitening (indexer.vectors.whitening, its default method) fitted on all the embedded photos."""
    from indexer.vectors import whitening

    return whitening.fit(v).apply


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every 5th paris5 photo, 60 calibration photos")
    ap.add_argument("--rows", nargs="*", help="only the rows whose name contains one of these")
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="models and descriptors kept here and reused, img/s included (default: a temp dir)",
    )
    args = ap.parse_args()
    from retrieval.spec import DEFAULT_INPUT_POLICY, DEFAULT_INPUT_SIZE, DEFAULT_POOLING

    default = Model(DEFAULT_INPUT_POLICY, DEFAULT_INPUT_SIZE, DEFAULT_POOLING, "int8")
    work = args.work or Path(tempfile.mkdtemp(prefix="vgg-rq-"))
    work.mkdir(parents=True, exist_ok=True)
    files, sets = gallery()
    if args.quick:
        keep = set(sets["paris"][0][::5])
        n_paris = len(sets["paris"][0])
        drop = [i for i in range(n_paris) if i not in keep]
        mapping, kept = {}, []
        for i, f in enumerate(files):
            if i not in drop:
                mapping[i] = len(kept)
                kept.append(f)
        sets = {
            "paris": ([mapping[i] for i in sorted(keep)], sets["paris"][1][sorted(keep)]),
            "gallery": [mapping[i] for i in sets["gallery"]],
            "pairs": [(mapping[a], mapping[b]) for a, b in sets["pairs"]],
            "ukb": [(mapping[a], mapping[b]) for a, b in sets["ukb"]],
        }
        files = kept
    paris_n = len(sets["paris"][0])
    rows = [r for r in rows_to_measure(default) if not args.rows or any(s in r.name for s in args.rows)]
    embedded: dict[Model, Embedded] = {}
    turned_for = {r.model for r in rows if r.rotations}  # only models with a rotation row pay for it
    table = []
    for row in rows:
        if row.model not in embedded:
            print(f"embedding for {row.model} ...", file=sys.stderr, flush=True)
            embedded[row.model] = Embedded(row.model, files, paris_n, work, args.quick)
        emb = embedded[row.model]
        transform = whitening_of(emb.vectors) if row.whiten else (lambda x: x)
        turned = transform(emb.turned()) if row.model in turned_for else None
        result = evaluate(transform(emb.vectors), turned, sets, row.qe)
        if row.rotations:
            result.update(rotation_scores(emb, sets, row.qe))
        speed = emb.img_s / (4 if row.rotations else 1)
        table.append((row.name, result, speed, emb.spec.describe().split(" weights=")[0]))
        print(f"  {row.name}: {result}", file=sys.stderr, flush=True)
    print_table(table, default)
    return 0


def print_table(table, default) -> None:
    base = table[0][2]
    head = (
        "| row | model | paris5 mAP | R@1 | R@10 | pairs mAP | R@1 | R@10 | ukb R@1 | R@10 | turned mAP | "
        "img/s | x |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, r, speed, model in table:
        cells = [name, model]
        for key, cols in (("paris", (0, 1, 2)), ("pairs", (0, 1, 2)), ("ukb", (1, 2)), ("turned", (0,))):
            for c in cols:
                cells.append(f"{r[key][c]:.3f}" if key in r else "-")
        cells += [f"{speed:.2f}", f"{speed / base:.2f}"]
        print("| " + " | ".join(cells) + " |")
    print(
        f"\nDefault model now: {default}. img/s: decode + embed of the paris5 photos in one process "
        f"(rotation search: /4, every query embedded four times), under whatever else the machine ran: "
        f"compare rows of one run only (idle speed: benchmarks/model_variants.py). turned: only for the models "
        f"of the rotation rows measured in the run."
    )


if __name__ == "__main__":
    raise SystemExit(main())
