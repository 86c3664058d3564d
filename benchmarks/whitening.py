"""Whitening learnt on a collection, without labels: when does it help, when does it hurt?

Descriptors of the default model (VGG16 GAP, long side 224, OpenVINO FP32) for
  - ../shared/data/retrieval/paris5 (250 photos, 5 landmarks: mAP, INRIA-Holidays trapezoid, query excluded),
  - the sample photos (the stereo/viewpoint PAIRS of tests/conftest.py: recall@1 among the samples),
  - extra unlabeled real photos (vacation, pixabay, hymenoptera, flowers5: up to --extra images),
cached in --cache. Then whitening (``indexer.vectors.whitening.fit``) fitted on: paris5 alone (a small
collection); paris5 + N extra photos; the samples (+ N extra) for the pairs. Methods: plain
PCA-whitening (all dims or reduced), Ledoit-Wolf shrinkage, eigenvalue power laws lambda^-beta,
centring only; and small collections (subsets of paris5) fitted on themselves.

Run:  PYTHONPATH=$PWD python3 benchmarks/whitening.py [--extra 2000] [--cache /tmp/whitening-descriptors]

Result (``--extra 1250 --sizes 0 250 1000 1250``; "fit on M" = paris5 + M-250 extra photos; the
2000 column was not reached on the shared CPUs: ``--extra 2000`` resumes the cache):

    paris5 250 photos, samples 175, extra 1250; 512 dims

    mAP on paris5 (gallery paris5 / gallery paris5 + the N extra photos as distractors), whitening fitted on
    paris5 + N extra photos

    | method | fit on 250 | fit on 500 | fit on 1250 | fit on 1500 |
    |---|---:|---:|---:|---:|
    | none | 0.764 | 0.764 / 0.758 | 0.764 / 0.746 | 0.764 / 0.744 |
    | centre only (beta 0) | 0.790 | 0.778 / 0.768 | 0.769 / 0.751 | 0.768 / 0.749 |
    | PCA-whitening (plain) | 0.250 | 0.254 / 0.153 | 0.388 / 0.209 | 0.410 / 0.221 |
    | power 0.25, no shrinkage | 0.691 | 0.691 / 0.663 | 0.696 / 0.647 | 0.698 / 0.646 |
    | Ledoit-Wolf, beta 0.5 | 0.338 | 0.361 / 0.271 | 0.422 / 0.253 | 0.438 / 0.258 |
    | Ledoit-Wolf, beta 0.35 | 0.587 | 0.593 / 0.540 | 0.616 / 0.520 | 0.623 / 0.520 |
    | Ledoit-Wolf, beta 0.25 | 0.687 | 0.689 / 0.660 | 0.698 / 0.649 | 0.701 / 0.648 |
    | Ledoit-Wolf, beta 0.15 | 0.746 | 0.741 / 0.724 | 0.740 / 0.711 | 0.740 / 0.710 |
    | PCA-whitening, 64 dims | 0.417 | 0.538 / 0.461 | 0.669 / 0.558 | 0.696 / 0.585 |
    | PCA-whitening, 128 dims | 0.332 | 0.450 / 0.364 | 0.565 / 0.427 | 0.591 / 0.449 |
    | Ledoit-Wolf, beta 0.25, 128 dims | 0.671 | 0.687 / 0.656 | 0.720 / 0.671 | 0.729 / 0.678 |
    | centre only, 128 dims (PCA) | 0.790 | 0.778 / 0.768 | 0.776 / 0.753 | 0.777 / 0.753 |

    small collections: k photos per paris5 landmark (5k photos), whitening fitted on them alone, mAP on them
    (mean of 5 draws)

    | method | 15 photos | 25 photos | 50 photos | 100 photos | 250 photos |
    |---|---:|---:|---:|---:|---:|
    | none | 0.782 | 0.734 | 0.746 | 0.772 | 0.764 |
    | centre only (beta 0) | 0.805 | 0.761 | 0.771 | 0.797 | 0.790 |
    | Ledoit-Wolf, beta 0.15 | 0.801 | 0.760 | 0.753 | 0.765 | 0.746 |
    | Ledoit-Wolf, beta 0.25 | 0.795 | 0.752 | 0.730 | 0.725 | 0.687 |

    stereo/viewpoint pairs among the samples: recall@1 (mean rank), 8 queries, whitening fitted on the samples +
    N extra photos

    | method | fit on 175 | fit on 425 | fit on 1175 | fit on 1425 |
    |---|---:|---:|---:|---:|
    | none | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | centre only (beta 0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | PCA-whitening (plain) | 0.25 (86.5) | 0.00 (108.2) | 1.00 (1.0) | 1.00 (1.0) |
    | power 0.25, no shrinkage | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | Ledoit-Wolf, beta 0.5 | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | Ledoit-Wolf, beta 0.35 | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | Ledoit-Wolf, beta 0.25 | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | Ledoit-Wolf, beta 0.15 | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | PCA-whitening, 64 dims | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | PCA-whitening, 128 dims | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | Ledoit-Wolf, beta 0.25, 128 dims | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |
    | centre only, 128 dims (PCA) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) | 1.00 (1.0) |

Reading: every eigenvalue scaling (beta > 0) loses mAP at every size measured, most for plain
PCA-whitening fitted on the collection itself (0.764 -> 0.25: with N <= D each whitened photo is
about equally far from all others); it recovers with N (PCA to 64 dims: 0.42 -> 0.70 from 250 to
1500 photos) but stays below none. Centring alone is never below none: +0.026 on paris5 alone,
+0.02-0.03 on 15-100 photo subsets, shrinking to +0.004 when 1250 unrelated photos share the
collection (the mean is then mostly theirs). The pairs are at rank 1 either way (too easy to
separate the methods). Hence ``indexer.vectors.whitening``: BETA = 0, MIN_VECTORS = 100, refit at 2x.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
SAMPLES = DATA / "photos" / "samples"
PAIRS = [  # tests/conftest.py
    ("skimage/motorcycle_left.png", "skimage/motorcycle_right.png"),
    ("opencv/leuvenA.jpg", "opencv/leuvenB.jpg"),
    ("opencv/graf1.png", "opencv/graf3.png"),
    ("opencv/left01.jpg", "opencv/right01.jpg"),
]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
EXTRA_POOL = 2000  # vacation + pixabay + hymenoptera, filled up with flowers5 photos


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def photo_sets(extra: int, seed: int = 0) -> dict[str, list[Path]]:
    """paris5, the samples gallery (every sample folder but vacation), and the extra photos."""
    paris = _images(DATA / "retrieval" / "paris5")
    samples = [
        p for sub in ("opencv", "pixabay", "skimage", "sklearn", "scipy") for p in _images(SAMPLES / sub)
    ]
    others = (
        _images(SAMPLES / "vacation")
        + _images(SAMPLES / "pixabay")
        + _images(DATA / "photos" / "hymenoptera")
    )
    flowers = _images(DATA / "photos" / "flowers5")
    rng = np.random.default_rng(seed)
    need = max(0, EXTRA_POOL - len(others))  # the same pool whatever --extra: a smaller run reuses the cache
    others += [flowers[i] for i in sorted(rng.choice(len(flowers), min(need, len(flowers)), replace=False))]
    order = rng.permutation(len(others))[:extra]  # mixed, so any prefix is a mix of the sources
    return {"paris5": paris, "samples": samples, "extra": [others[i] for i in order]}


class Embedder:
    """The default model on OpenVINO FP32, exported once into a temporary folder."""

    def __init__(self):
        from retrieval.engines import load_embedder
        from retrieval.engines.export import export_model
        from retrieval.nets.builder import build

        self.spec, net = build("vgg16", str(WEIGHTS))
        self._tmp = tempfile.TemporaryDirectory()
        export_model(self.spec, net, self._tmp.name, formats=("openvino",))
        self.engine = load_embedder("openvino", self.spec, self._tmp.name, batch_size=8)

    def __call__(self, files: list[Path]) -> tuple[list[Path], np.ndarray]:
        """(the files that decoded, their descriptors)."""
        from retrieval.preprocess import ImageError, load_and_prepare

        kept, prepared = [], []
        for f in files:
            try:
                prepared.append(load_and_prepare(f, self.spec.input_size))
                kept.append(f)
            except ImageError:
                pass
        x = self.engine.embed_batch(
            np.stack([p.array for p in prepared]), np.array([p.valid for p in prepared], dtype=np.int64)
        )
        return kept, x.astype(np.float32)


def cached_descriptors(cache: Path, extra: int, chunk: int = 250) -> dict[str, tuple[list[Path], np.ndarray]]:
    """Descriptors of each set, cached in ``cache``/<set>-<chunk>.npz (chunks, so a stopped run resumes)."""
    cache.mkdir(parents=True, exist_ok=True)
    embedder = None
    result = {}
    for name, files in photo_sets(extra).items():
        kept, parts = [], []
        for start in range(0, len(files), chunk):
            path = cache / f"{name}-{start // chunk:03d}.npz"
            if not path.is_file():
                embedder = embedder or Embedder()
                f, x = embedder(files[start : start + chunk])
                np.savez(path, files=np.array([str(p) for p in f]), x=x)
                print(
                    f"  {name}: embedded {min(start + chunk, len(files))}/{len(files)}",
                    file=sys.stderr,
                    flush=True,
                )
            z = np.load(path)
            kept += [Path(p) for p in z["files"]]
            parts.append(z["x"])
        result[name] = (kept, np.concatenate(parts) if parts else np.zeros((0, 512), np.float32))
    return result


METHODS = {  # name: fit options (None: no whitening)
    "none": None,
    "centre only (beta 0)": {"method": "shrunk", "beta": 0.0},
    "PCA-whitening (plain)": {"method": "pca"},
    "power 0.25, no shrinkage": {"method": "shrunk", "beta": 0.25, "shrinkage": 0.0},
    "Ledoit-Wolf, beta 0.5": {"method": "shrunk", "beta": 0.5},
    "Ledoit-Wolf, beta 0.35": {"method": "shrunk", "beta": 0.35},
    "Ledoit-Wolf, beta 0.25": {"method": "shrunk", "beta": 0.25},
    "Ledoit-Wolf, beta 0.15": {"method": "shrunk", "beta": 0.15},
    "PCA-whitening, 64 dims": {"method": "pca", "dim_out": 64},
    "PCA-whitening, 128 dims": {"method": "pca", "dim_out": 128},
    "Ledoit-Wolf, beta 0.25, 128 dims": {"method": "shrunk", "beta": 0.25, "dim_out": 128},
    "centre only, 128 dims (PCA)": {"method": "shrunk", "beta": 0.0, "dim_out": 128},
}


def whitened(options: dict | None, fit_on: np.ndarray, *sets: np.ndarray) -> list[np.ndarray]:
    from indexer.vectors.whitening import fit

    if options is None:
        return list(sets)
    w = fit(fit_on, **options)
    return [w.apply(x) for x in sets]


def pair_ranks(x: np.ndarray, files: list[Path]) -> np.ndarray:
    """Rank of each pair's partner (both directions) among the other gallery photos."""
    where = {p.relative_to(SAMPLES).as_posix(): i for i, p in enumerate(files)}
    ranks = []
    for a, b in PAIRS:
        for q, t in ((where[a], where[b]), (where[b], where[a])):
            order = [i for i in np.argsort(-(x @ x[q]), kind="stable") if i != q]
            ranks.append(order.index(t) + 1)
    return np.array(ranks)


def paris_rows(data, sizes) -> list[list[str]]:
    """mAP on paris5 (gallery: paris5) and with the extra photos as distractors, per fit set."""
    from benchmarks.prune_distill import mean_ap

    files, xp = data["paris5"]
    labels = np.array([sorted({f.parent.name for f in files}).index(f.parent.name) for f in files])
    xe = data["extra"][1]
    rows = []
    for name, options in METHODS.items():
        cells = [name]
        for n in sizes:
            fit_on = np.concatenate([xp, xe[:n]])
            p, e = whitened(options, fit_on, xp, xe[:n])
            with_distractors = mean_ap(p, labels, distractors=e) if n else None
            cells.append(f"{mean_ap(p, labels):.3f}" + (f" / {with_distractors:.3f}" if n else ""))
        rows.append(cells)
    return rows


SMALL_METHODS = ("none", "centre only (beta 0)", "Ledoit-Wolf, beta 0.15", "Ledoit-Wolf, beta 0.25")


def small_collection_rows(data, per_class=(3, 5, 10, 20, 50), repeats: int = 5) -> list[list[str]]:
    """A small collection: ``k`` photos per landmark of paris5, whitening fitted on it alone, mAP on
    it (mean over ``repeats`` random draws)."""
    from benchmarks.prune_distill import mean_ap

    files, xp = data["paris5"]
    labels = np.array([sorted({f.parent.name for f in files}).index(f.parent.name) for f in files])
    rng = np.random.default_rng(0)
    rows = {name: [name] for name in SMALL_METHODS}
    for k in per_class:
        draws = [
            np.concatenate(
                [rng.choice(np.flatnonzero(labels == c), k, replace=False) for c in np.unique(labels)]
            )
            for _ in range(repeats if k < 50 else 1)
        ]
        for name in SMALL_METHODS:
            maps = [mean_ap(whitened(METHODS[name], xp[d], xp[d])[0], labels[d]) for d in draws]
            rows[name].append(f"{np.mean(maps):.3f}")
    return list(rows.values())


def pair_rows(data, sizes) -> list[list[str]]:
    files, xs = data["samples"]
    xe = data["extra"][1]
    rows = []
    for name, options in METHODS.items():
        cells = [name]
        for n in sizes:
            (s,) = whitened(options, np.concatenate([xs, xe[:n]]), xs)
            r = pair_ranks(s, files)
            cells.append(f"{(r == 1).mean():.2f} ({r.mean():.1f})")
        rows.append(cells)
    return rows


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [title, "", "| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--extra", type=int, default=2000)
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[0, 250, 500, 1000, 2000],
        help="extra photos added to the fit set (0: the labelled set alone)",
    )
    ap.add_argument("--cache", type=Path, default=Path("/tmp/whitening-descriptors"))
    args = ap.parse_args()
    data = cached_descriptors(args.cache, args.extra)
    sizes = [n for n in args.sizes if n <= len(data["extra"][0])]
    print(
        f"paris5 {len(data['paris5'][0])} photos, samples {len(data['samples'][0])}, extra {len(data['extra'][0])}; "
        f"{data['paris5'][1].shape[1]} dims\n"
    )
    n_p, n_s = len(data["paris5"][0]), len(data["samples"][0])
    print(
        table(
            "mAP on paris5 (gallery paris5 / gallery paris5 + the N extra photos as distractors), "
            "whitening fitted on paris5 + N extra photos",
            ["method"] + [f"fit on {n_p + n}" for n in sizes],
            paris_rows(data, sizes),
        )
    )
    per_class = (3, 5, 10, 20, 50)
    print(
        table(
            "small collections: k photos per paris5 landmark (5k photos), whitening fitted on them alone, "
            "mAP on them (mean of 5 draws)",
            ["method"] + [f"{5 * k} photos" for k in per_class],
            small_collection_rows(data, per_class),
        )
    )
    print(
        table(
            "stereo/viewpoint pairs among the samples: recall@1 (mean rank), 8 queries, whitening "
            "fitted on the samples + N extra photos",
            ["method"] + [f"fit on {n_s + n}" for n in sizes],
            pair_rows(data, sizes),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
