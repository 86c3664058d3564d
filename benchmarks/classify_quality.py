"""How well the descriptor classifier (indexer.index_classifier) classifies held-out photos, and the
numbers behind its defaults (L2 strength, class balancing, the photos-per-label rule).

Needs indexes built with the CLI at the default input size (the descriptors are read back, nothing
is embedded here):

  W=../shared/data/weights/vgg16_features_imagenet_like.pth
  vgg-retrieval index ../shared/data/photos/flowers5 --index /tmp/flowers5 --weights $W
  vgg-retrieval index ../shared/data/photos/hymenoptera/train ../shared/data/photos/hymenoptera/val \\
      --index /tmp/hymenoptera --weights $W
  python benchmarks/classify_quality.py --flowers /tmp/flowers5 --hymenoptera /tmp/hymenoptera

flowers5: a seeded 80/20 split by file (stratified by folder); hymenoptera: fitted on train/, tested
on val/. Reported: held-out top-1 (and per class) of the classifier with the defaults, against a
nearest-class-mean baseline and a 10-nearest-neighbour vote over the training photos (what a search
of the index would say); top-1 for each L2 strength, with and without class balancing; and top-1
against the number of training photos per label (10 seeded draws each), for the automatic rule.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer import Index  # noqa: E402
from indexer import descriptor_classifier as dc  # noqa: E402
from indexer.index_classifier import index_labels  # noqa: E402


def rows_of(index_dir: str):
    """(vectors, labels, paths) of an index's photos, labelled by folder name."""
    with Index.open(index_dir) as idx:
        ids, vectors, labels = index_labels(idx)
        rows = idx.store.rows_by_id(ids.tolist())
        paths = [rows[int(i)].path for i in ids]
        model = idx.spec.describe()
    return vectors, np.asarray(labels), np.asarray(paths), model


def split_80_20(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """True for the test rows: 20% of each label's files, seeded."""
    return dc.folds_of(labels, 5, seed) == 0


def top1(pred, truth) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(truth)))


def nearest_mean(xtr, ytr, xte) -> np.ndarray:
    classes = np.unique(ytr)
    xtr, xte = dc._normalised(xtr), dc._normalised(xte)
    means = dc._normalised(np.stack([xtr[ytr == c].mean(axis=0) for c in classes]))
    return classes[np.argmax(xte @ means.T, axis=1)]


def knn_vote(xtr, ytr, xte, k: int = 10) -> np.ndarray:
    classes, y = np.unique(ytr, return_inverse=True)
    sims = dc._normalised(xte) @ dc._normalised(xtr).T
    nearest = np.argsort(-sims, axis=1)[:, :k]
    votes = np.zeros((len(xte), len(classes)))
    for j in range(k):
        np.add.at(votes, (np.arange(len(xte)), y[nearest[:, j]]), sims[np.arange(len(xte)), nearest[:, j]])
    return classes[np.argmax(votes, axis=1)]


def evaluate(name, xtr, ytr, xte, yte, l2s, per_class_ns, draws: int) -> dict:
    t = time.perf_counter()
    clf = dc.fit(xtr, ytr)
    fit_s = time.perf_counter() - t
    pred = np.asarray(clf.predict(xte))
    out = {"set": name, "train": int(len(ytr)), "test": int(len(yte)), "classes": list(clf.classes),
           "top1": top1(pred, yte), "fit_seconds": round(fit_s, 2),
           "per_class": {c: top1(pred[yte == c], yte[yte == c]) for c in clf.classes},
           "nearest_mean_top1": top1(nearest_mean(xtr, ytr, xte), yte),
           "knn10_top1": top1(knn_vote(xtr, ytr, xte), yte),
           "cv_on_train": dc.cross_validate(xtr, ytr)["accuracy"]}
    out["l2"] = {f"{l2:g}": {"balanced": top1(dc.fit(xtr, ytr, l2=l2).predict(xte), yte),
                             "unbalanced": top1(dc.fit(xtr, ytr, l2=l2, balanced=False).predict(xte), yte)}
                 for l2 in l2s}
    rng = np.random.default_rng(0)
    curve = {}
    for n in per_class_ns:
        scores = []
        for _ in range(draws):
            pick = np.concatenate([rng.choice(np.flatnonzero(ytr == c), min(n, np.sum(ytr == c)), replace=False)
                                   for c in clf.classes])
            scores.append(top1(dc.fit(xtr[pick], ytr[pick]).predict(xte), yte))
        curve[n] = {"mean": float(np.mean(scores)), "min": float(np.min(scores))}
    out["photos_per_label"] = curve
    out["chance"] = float(max(np.mean(yte == c) for c in clf.classes))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flowers", help="index of ../shared/data/photos/flowers5 (or a subset of it)")
    ap.add_argument("--hymenoptera", help="index of hymenoptera/train and hymenoptera/val")
    ap.add_argument("--l2", type=float, nargs="+", default=[1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    ap.add_argument("--per-label", type=int, nargs="+", default=[2, 3, 5, 10, 20, 50])
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    results = []
    if args.flowers:
        x, y, paths, model = rows_of(args.flowers)
        test = split_80_20(y)
        results.append({"model": model, **evaluate("flowers5 80/20", x[~test], y[~test], x[test], y[test],
                                                   args.l2, args.per_label, args.draws)})
    if args.hymenoptera:
        x, y, paths, model = rows_of(args.hymenoptera)
        val = np.array(["/val/" in p for p in paths])
        train = np.array(["/train/" in p for p in paths])
        results.append({"model": model, **evaluate("hymenoptera train->val", x[train], y[train], x[val], y[val],
                                                   args.l2, args.per_label, args.draws)})
    for r in results:
        print(f"{r['set']}: {r['train']} train / {r['test']} test photos, {len(r['classes'])} classes; {r['model']}")
        print(f"  descriptor classifier top-1 {r['top1']:.3f} (fit {r['fit_seconds']} s; 5-fold CV on train "
              f"{r['cv_on_train']:.3f}); nearest class mean {r['nearest_mean_top1']:.3f}; 10-NN vote "
              f"{r['knn10_top1']:.3f}; majority class {r['chance']:.3f}")
        print("  per class: " + ", ".join(f"{c} {a:.3f}" for c, a in r["per_class"].items()))
        print("  L2 (balanced / unbalanced): " + ", ".join(f"{k}: {v['balanced']:.3f}/{v['unbalanced']:.3f}"
                                                           for k, v in r["l2"].items()))
        print("  photos per label -> top-1 mean (min of draws): " + ", ".join(
            f"{n}: {v['mean']:.3f} ({v['min']:.3f})" for n, v in r["photos_per_label"].items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
