"""How well the descriptor classifier (indexer.classify.index_classes) classifies held-out photos, and the
numbers behind its defaults (L2 strength, class balancing, the photos-per-label rule).

Needs indexes built with the CLI at the default input size (the descriptors are read back, nothing
is embedded here):

  W=../shared/data/weights/vgg16_features_imagenet_like.pth
  vgg-retrieval index ../shared/data/photos/flowers5 --index /tmp/flowers5 --weights $W
  vgg-retrieval index ../shared/data/photos/hymenoptera/train ../shared/data/photos/hymenoptera/val \\
      --index /tmp/hymenoptera --weights $W
  python benchmarks/classify_quality.py --flowers /tmp/flowers5 --hymenoptera /tmp/hymenoptera \\
      --weights $W

flowers5: a seeded 80/20 split by file (stratified by folder); hymenoptera: fitted on train/, tested
on val/. Reported: held-out top-1 (and per class) of the classifier with the defaults, against a
nearest-class-mean baseline and a 10-nearest-neighbour vote over the training photos (what a search
of the index would say); top-1 for each L2 strength, with and without class balancing; and top-1
against the number of training photos per label (10 seeded draws each), for the automatic rule.

With ``--weights`` the same run also trains the linear probe of ``vgg-retrieval train --freeze all``
(retrieval.training.train.fit with the CLI's recipe defaults: a gap-linear head on the frozen trunk, its
features cached once per photo under --cache-dir) on exactly the same files (the same 80/20 split;
train/ -> val/), at the index's input size and pooling, and reports its held-out top-1 after the
last epoch (and the best epoch's, which is chosen on the test photos and so optimistic) next to the
descriptor classifier's, with the seconds each took. Note the probe's images go through the training
pipeline's square input policy (longer side = size, padded) in float32 torch, while the index's
descriptors are the default model's (its own input policy and engine).

``--probe-pooling`` adds probes at other poolings and ``--probe-lr`` at other base LRs (the cached
conv5 maps are reused: each costs only its training); the recipe's default LR (head 0.1) makes the
probe's loss climb during warm-up on 224 px GeM/GAP vectors, so a lower LR is worth a row.

``--flowers-subset N`` adds a row on a seeded stratified subset of flowers5 (N photos per folder,
then the same 80/20 split) for both methods; ``--probe-full-flowers`` also probes the whole flowers5
split (slow on a small CPU: the trunk runs once per photo, ~4,300 photos). ``--quick`` is a smoke run
(a small subset, a few epochs, short sweeps).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer import Index  # noqa: E402
from indexer.classify import descriptor_classifier as dc
from indexer.classify.index_classes import index_labels  # noqa: E402


def rows_of(index_dir: str):
    """(vectors, labels, paths, spec) of an index's photos by path, labelled by folder name."""
    with Index.open(index_dir) as idx:
        ids, vectors, labels = index_labels(idx)
        rows = idx.store.rows_by_id(ids.tolist())
        paths = np.asarray([rows[int(i)].path for i in ids])
        spec = idx.spec
    order = np.argsort(
        paths, kind="stable"
    )  # the splits follow the files, not the order they were indexed in
    return vectors[order], np.asarray(labels)[order], paths[order], spec


def stratified_subset(labels: np.ndarray, per_label: int, seed: int = 0) -> np.ndarray:
    """True for ``per_label`` seeded rows of each label (all of a label with fewer)."""
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        keep[rng.permutation(rows)[:per_label]] = True
    return keep


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
    out = {
        "set": name,
        "train": int(len(ytr)),
        "test": int(len(yte)),
        "classes": list(clf.classes),
        "top1": top1(pred, yte),
        "fit_seconds": round(fit_s, 2),
        "per_class": {c: top1(pred[yte == c], yte[yte == c]) for c in clf.classes},
        "nearest_mean_top1": top1(nearest_mean(xtr, ytr, xte), yte),
        "knn10_top1": top1(knn_vote(xtr, ytr, xte), yte),
        "cv_on_train": dc.cross_validate(xtr, ytr)["accuracy"],
    }
    out["l2"] = {
        f"{l2:g}": {
            "balanced": top1(dc.fit(xtr, ytr, l2=l2).predict(xte), yte),
            "unbalanced": top1(dc.fit(xtr, ytr, l2=l2, balanced=False).predict(xte), yte),
        }
        for l2 in l2s
    }
    rng = np.random.default_rng(0)
    curve = {}
    for n in per_class_ns:
        scores = []
        for _ in range(draws):
            pick = np.concatenate(
                [
                    rng.choice(np.flatnonzero(ytr == c), min(n, np.sum(ytr == c)), replace=False)
                    for c in clf.classes
                ]
            )
            scores.append(top1(dc.fit(xtr[pick], ytr[pick]).predict(xte), yte))
        curve[n] = {"mean": float(np.mean(scores)), "min": float(np.min(scores))}
    out["photos_per_label"] = curve
    out["chance"] = float(max(np.mean(yte == c) for c in clf.classes))
    return out


def train_recipe() -> dict:
    """The recipe options of ``vgg-retrieval train`` at their CLI defaults (--freeze all among them)."""
    from indexer.cli.models import train as train_command

    return {p.name: p.default for p in train_command.params if p.name in _RECIPE_NAMES}


_RECIPE_NAMES = {
    "epochs",
    "batch_size",
    "lr",
    "min_lr",
    "head_lr_mult",
    "warmup_epochs",
    "warmup_start_lr",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "dropout",
    "freeze",
    "cache",
    "cache_at",
    "cache_dir",
    "hflip",
    "crop_scale",
    "jitter",
    "rotation",
    "bf16",
    "seed",
    "workers",
}


def linear_probe(
    train,
    test,
    spec,
    weights: str,
    out_dir: Path,
    cache_dir: Path,
    epochs: int | None,
    pooling: str | None = None,
    lr: float | None = None,
) -> dict:
    """``vgg-retrieval train --freeze all`` (gap-linear head, the CLI's recipe) on exactly these
    (paths, labels) for train and test, at ``spec``'s arch and input size and ``pooling`` (default
    ``spec``'s) and base ``lr`` (default train's); test top-1 after the last epoch and at the best epoch,
    total seconds and the trunk
    pass's (feature caching; None when the features came from the cache)."""
    from retrieval.training.data import Split
    from retrieval.training.pipeline import train_config
    from retrieval.training.train import fit, prepare_model

    classes = tuple(sorted(set(train[1])))
    code = {c: i for i, c in enumerate(classes)}
    split = Split(
        classes, [(str(p), code[y]) for p, y in zip(*train)], [(str(p), code[y]) for p, y in zip(*test)]
    )
    recipe = {**train_recipe(), "cache_dir": cache_dir}
    if epochs is not None:
        recipe["epochs"] = epochs
    if lr is not None:
        recipe["lr"] = lr
    lines: list[str] = []
    t = time.perf_counter()
    pspec, net = prepare_model(
        spec.arch, weights, spec.input_size, pooling or spec.pooling, "gap-linear", classes, recipe["dropout"]
    )
    rows = fit(net, pspec, split, out_dir, train_config(recipe, recipe["freeze"]), log=lines.append)
    seconds = time.perf_counter() - t
    cached = re.search(r"cached features of layers .* in ([0-9.]+) s", "\n".join(lines))
    computed = cached and any(line.startswith("  caching ") for line in lines)
    return {
        "pooling": pspec.pooling,
        "lr": recipe["lr"],
        "top1": rows[-1]["val_top1"],
        "best_top1": max(r["val_top1"] for r in rows),
        "epochs": len(rows),
        "seconds": round(seconds, 1),
        "trunk_seconds": float(cached.group(1)) if computed else None,
        "train": len(split.train),
        "test": len(split.val),
    }


def cases(args):
    """(name, index spec, train mask, test mask, x, labels, paths) of each evaluated set."""
    out = []
    quick = 12 if args.quick else None
    if args.flowers:
        x, y, paths, spec = rows_of(args.flowers)
        test = split_80_20(y)
        if not args.quick:
            out.append(("flowers5 80/20", spec, ~test, test, x, y, paths, args.probe_full_flowers))
        n = quick or args.flowers_subset
        if n:
            keep = stratified_subset(y, n)
            sub = split_80_20(y[keep])
            out.append(
                (f"flowers5 subset {n}/folder, 80/20", spec, ~sub, sub, x[keep], y[keep], paths[keep], True)
            )
    if args.hymenoptera:
        x, y, paths, spec = rows_of(args.hymenoptera)
        val = np.array(["/val/" in p for p in paths])
        train = np.array(["/train/" in p for p in paths])
        if quick:
            train &= stratified_subset(np.where(train, y, ""), quick)
            val &= stratified_subset(np.where(val, y, ""), max(2, quick // 4))
        out.append(("hymenoptera train->val", spec, train, val, x, y, paths, True))
    return out


def run_case(case, args) -> dict:
    name, spec, train, test, x, y, paths, probe = case
    r = {
        "model": spec.describe(),
        **evaluate(name, x[train], y[train], x[test], y[test], args.l2, args.per_label, args.draws),
    }
    if probe and args.weights:
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        runs = [(pooling, None) for pooling in args.probe_pooling or [spec.pooling]]
        runs += [(spec.pooling, lr) for lr in args.probe_lr]
        r["probes"] = [
            linear_probe(
                (paths[train], y[train]),
                (paths[test], y[test]),
                spec,
                args.weights,
                Path(args.work) / f"{slug}-{pooling}-{lr or 'default'}",
                Path(args.cache_dir),
                args.epochs,
                pooling,
                lr,
            )
            for pooling, lr in runs
        ]
    return r


def _trunk(p) -> str:
    return (
        "features from the cache" if p["trunk_seconds"] is None else f"trunk pass {p['trunk_seconds']:.0f} s"
    )


def report(r) -> None:
    print(
        f"{r['set']}: {r['train']} train / {r['test']} test photos, {len(r['classes'])} classes; {r['model']}"
    )
    print(
        f"  descriptor classifier top-1 {r['top1']:.3f} (fit {r['fit_seconds']} s; 5-fold CV on train "
        f"{r['cv_on_train']:.3f}); nearest class mean {r['nearest_mean_top1']:.3f}; 10-NN vote "
        f"{r['knn10_top1']:.3f}; majority class {r['chance']:.3f}"
    )
    for p in r.get("probes", []):
        print(
            f"  linear probe (train --freeze all, {p['pooling']}, lr {p['lr']:g}, {p['epochs']} epochs) "
            f"top-1 {p['top1']:.3f} after "
            f"the last epoch (best epoch {p['best_top1']:.3f}); {p['seconds']} s, of which {_trunk(p)}"
        )
    print("  per class: " + ", ".join(f"{c} {a:.3f}" for c, a in r["per_class"].items()))
    print(
        "  L2 (balanced / unbalanced): "
        + ", ".join(f"{k}: {v['balanced']:.3f}/{v['unbalanced']:.3f}" for k, v in r["l2"].items())
    )
    print(
        "  photos per label -> top-1 mean (min of draws): "
        + ", ".join(f"{n}: {v['mean']:.3f} ({v['min']:.3f})" for n, v in r["photos_per_label"].items())
    )


def table(results) -> None:
    """The comparison as a Markdown table (the README's)."""
    print("\n| set | train / test photos | method | held-out top-1 | seconds |\n|---|---|---|---:|---|")
    for r in results:
        print(
            f"| {r['set']} | {r['train']} / {r['test']} | descriptor classifier (index's descriptors) | "
            f"**{r['top1']:.3f}** | fit {r['fit_seconds']:.1f} |"
        )
        for p in r.get("probes", []):
            print(
                f"| | | linear probe, {p['pooling']}, lr {p['lr']:g} ({p['epochs']} epochs) | {p['top1']:.3f} (best epoch "
                f"{p['best_top1']:.3f}) | {p['seconds']:.0f} ({_trunk(p)}) |"
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flowers", help="index of ../shared/data/photos/flowers5 (or a subset of it)")
    ap.add_argument("--hymenoptera", help="index of hymenoptera/train and hymenoptera/val")
    ap.add_argument("--l2", type=float, nargs="+", default=[1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    ap.add_argument("--per-label", type=int, nargs="+", default=[2, 3, 5, 10, 20, 50])
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--weights", help="the index's weights: also train the linear probe (train --freeze all)")
    ap.add_argument("--epochs", type=int, default=None, help="the probe's epochs [default: train's]")
    ap.add_argument(
        "--flowers-subset",
        type=int,
        default=None,
        metavar="N",
        help="also a row on N seeded photos per flowers5 folder, for both methods",
    )
    ap.add_argument(
        "--probe-full-flowers", action="store_true", help="also probe the whole flowers5 split (slow)"
    )
    ap.add_argument(
        "--probe-pooling",
        nargs="+",
        choices=["gap", "mac", "gem", "rmac"],
        default=None,
        help="the probe's pooling(s) [default: the index's]; more reuse the cached conv5 maps",
    )
    ap.add_argument(
        "--probe-lr",
        type=float,
        nargs="+",
        default=[],
        help="also probe at these base LRs (train's --lr; the head's is 10x), the index's pooling",
    )
    ap.add_argument("--work", default="/tmp/classify_quality", help="the probe's run folders")
    ap.add_argument("--cache-dir", default="/tmp/classify_quality/features", help="the probe's feature cache")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 12 photos per label (3 for hymenoptera val), 2 epochs, short sweeps",
    )
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.l2, args.per_label, args.draws = [1e-2], [2, 5], 2
        args.epochs = args.epochs or 2
    results = []
    for case in cases(args):
        results.append(run_case(case, args))
        report(results[-1])
    table(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
