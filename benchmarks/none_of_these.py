"""The folder classifier's "none of these" rule (indexer.classify.descriptor_classifier.calibrate):
how often it answers "none of these" for held-out photos of the index's own folders (they should keep
their class) and for photos from outside the folders (they should not get one).

  W=../shared/data/weights/vgg16_features_imagenet_like.pth
  vgg-retrieval index ../shared/data/photos/samples/vacation ../shared/data/photos/hymenoptera \\
      ../shared/data/retrieval/paris5 --index /tmp/vhp --weights $W
  PYTHONPATH=. python benchmarks/none_of_these.py --index /tmp/vhp \\
      --outside ../shared/data/photos/samples/pixabay ../shared/data/photos/samples/opencv \\
      ../shared/data/photos/flowers5

In the folders: stratified 5-fold; each fold's classifier (the logistic fit and its bounds) is fitted
on the other four folds, and its held-out photos are counted "kept" when the rule recognises them
and their top class is their folder. Outside: one classifier on every labelled photo; each outside
set's share answered "none of these" (higher is better). Rules compared: the default (a bound per
class: the 5% quantile of its photos' held-out similarity to the class, the mean cosine similarity of
their 5 nearest photos of it) at other keep shares, and the cosine similarity to the class's mean
descriptor (a photo held out of its class's mean) with per-class bounds at 95%.

``--min-per-class N`` for an index of small folders (the demo: 3).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from indexer import Index
from indexer.classify import index_classes as ic
from indexer.classify.descriptor_classifier import (
    KEEP_SHARE,
    NEIGHBOURS,
    calibrate,
    class_closeness,
    fit,
    folds_of,
    neighbours_per_class,
)
from retrieval.descriptors import unit_rows

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def outside_photos(folder: Path, limit: int, seed: int = 0) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    random.Random(seed).shuffle(files)
    return sorted(files[:limit])


def embed(idx, paths: list[Path]) -> np.ndarray:  # one by one: a bad sample is left out, said
    out = []
    for p in paths:
        try:
            out.append(idx.embed_queries([str(p)])[0])
        except Exception as e:  # an unreadable sample: left out, said
            print(f"  left out {p}: {e}")
    return np.asarray(out, np.float32)


def rules(x, y, n_classes):
    """name -> a function: descriptor rows -> recognised (bool per row)."""
    out = {}
    for keep in (0.90, 0.95, 0.99):
        members, member_class, bounds = calibrate(x, y, n_classes, keep)
        k = neighbours_per_class(member_class, n_classes)

        def rule(q, members=members, member_class=member_class, bounds=bounds, k=k):
            sims = unit_rows(q, np.float32) @ members.T
            return (class_closeness(sims, member_class, n_classes, k) >= bounds).any(axis=1)

        out[
            f"{NEIGHBOURS} nearest per class, keep {keep:.0%}" + (" (default)" if keep == KEEP_SHARE else "")
        ] = rule
    # baseline: cosine similarity to the class's mean, each photo held out of its class's mean
    sums = np.zeros((n_classes, x.shape[1]))
    np.add.at(sums, y, x)
    rest = sums[y] - x
    own = np.einsum("ij,ij->i", x, rest) / np.maximum(np.linalg.norm(rest, axis=1), 1e-12)
    bounds = np.array([np.quantile(own[y == c], 1 - KEEP_SHARE) for c in range(n_classes)])
    centroids = unit_rows(sums, np.float64)
    out["class mean, keep 95%"] = lambda q: ((unit_rows(q, np.float64) @ centroids.T) >= bounds).any(axis=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", required=True, type=Path)
    ap.add_argument("--outside", nargs="*", type=Path, default=[])
    ap.add_argument("--per-set", type=int, default=100, help="photos at most per outside set (seeded)")
    ap.add_argument("--min-per-class", type=int, default=ic.MIN_PER_CLASS)
    ap.add_argument("--folds", type=int, default=5)
    a = ap.parse_args()
    with Index.open(a.index) as idx:
        _, vectors, labels = ic.index_labels(idx)
        counts = ic.eligible_labels(labels, a.min_per_class)
        use = np.array([lab in counts for lab in labels])
        x = unit_rows(vectors[use], np.float64)
        labs = np.array([lab for lab in labels if lab in counts])
        classes = sorted(counts)
        y = np.searchsorted(np.array(classes), labs)
        print(f"index {a.index}: {len(x)} photos in {len(classes)} classes {counts}")
        sets = {}
        for folder in a.outside:
            t0 = time.perf_counter()
            paths = outside_photos(folder, a.per_set)
            sets[folder.name] = embed(idx, paths)
            print(
                f"outside {folder}: {len(sets[folder.name])} photos embedded in {time.perf_counter() - t0:.1f} s"
            )

    folds = min(a.folds, min(counts.values()))
    fold = folds_of(labs, folds)
    held = {}  # rule -> (kept, recognised, right) over held-out rows
    for f in range(folds):
        tr, te = fold != f, fold == f
        clf = fit(x[tr], labs[tr])
        right = np.array(clf.predict(x[te])) == labs[te]
        for name, rule in rules(x[tr], y[tr], len(classes)).items():
            k = rule(x[te])
            acc = held.setdefault(name, [[], [], []])
            acc[0].extend(k & right)
            acc[1].extend(k)
            acc[2].extend(right)
    full = rules(x, y, len(classes))
    header = ["rule", "in folders: kept class", "recognised", "top-1 (no rule)"] + [
        f"{s}: none of these" for s in sets
    ]
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, rule in full.items():
        kept, rec, right = (np.mean(v) for v in held[name])
        outs = [f"{1 - rule(v).mean():.3f} ({len(v)})" for v in sets.values()]
        print(f"| {name} | {kept:.3f} | {rec:.3f} | {right:.3f} | " + " | ".join(outs) + " |")
    _, _, bounds = calibrate(x, y, len(classes))
    print("\nper-class bounds (default rule, fitted on every labelled photo):")
    print("  " + ", ".join(f"{c} {b:.3f}" for c, b in zip(classes, bounds)))


if __name__ == "__main__":
    main()
