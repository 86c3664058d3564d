"""Pruned + label-free distilled VGG16 vs the unpruned teacher: FLOPs, size, descriptor cosine, mAP.

Teacher: the shared VGG16 trunk (../shared/data/weights/vgg16_features_imagenet_like.pth) as a new
index builds it (buckets at 224^2 pixels, GeM; ``--pooling gap --input-policy square`` for the old model).
Student: ``retrieval.compress.prune.prune_model`` to a FLOPs target (every conv but, by default, the last one
pruned by one L1 share; widths multiples of --round-to, 32 as ``optimize``), then recovered without
labels on photos that are NOT the test set (photos/samples/vacation + photos/hymenoptera/train;
with --more-photos also hymenoptera/val + samples/pixabay; labels ignored):
stage 1 the closed-form layer refit (``retrieval.compress.reconstruct``, on the model's own input policy and
size unless ``--reconstruct-size``), stage 2 descriptor distillation (``retrieval.compress.distill``, plain +
augmented views).
Test set: retrieval/paris5 (250 photos, 5 landmarks): every photo a query, the other photos of its
landmark relevant, mAP with the INRIA Holidays trapezoid rule, the query excluded. Every row is
embedded through the OpenVINO engine from an exported model folder (so the pruned models export
and embed like any other). No speed numbers: the CPU is shared.

Run:  PYTHONPATH=. python benchmarks/prune_distill.py [--flops 0.5 0.35] [--prune-last] [--size 224]
      [--pooling gem --input-policy buckets] [--reconstruct-images 256 --reconstruct-size 224]
      [--epochs 2 --distill-size 160] [--round-to 32] [--more-photos] [--reuse-refit]
      [--resume-distilled --seed 1]
Caches (teacher views, descriptors, models) go to /tmp/vgg-retrieval-prune-distill.
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
DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
PARIS = DATA / "retrieval" / "paris5"
TRAIN = [DATA / "photos" / "samples" / "vacation", DATA / "photos" / "hymenoptera" / "train"]
MORE_TRAIN = [
    DATA / "photos" / "hymenoptera" / "val",
    DATA / "photos" / "samples" / "pixabay",
]  # --more-photos
CACHE = Path("/tmp/vgg-retrieval-prune-distill")

from retrieval.compress.defaults import ROUND_TO  # noqa: E402  (the widths `optimize` prunes to)


def paris5() -> tuple[list[str], np.ndarray]:
    from retrieval.compress.distill_data import photo_paths

    paths = photo_paths([PARIS])
    names = sorted({Path(p).parent.name for p in paths})
    return paths, np.array([names.index(Path(p).parent.name) for p in paths])


def average_precision(ranks: np.ndarray, n_relevant: int) -> float:
    """INRIA Holidays AP: ``ranks`` are the 0-based positions of the relevant items in the result
    list (the query removed), trapezoid rule between recall steps."""
    ap, step = 0.0, 1.0 / n_relevant
    for ntp, rank in enumerate(np.sort(ranks)):
        p0 = 1.0 if rank == 0 else ntp / float(rank)
        p1 = (ntp + 1) / float(rank + 1)
        ap += (p0 + p1) * step / 2.0
    return ap


def mean_ap_of_orders(orders, query_labels, labels: np.ndarray) -> float:
    """mAP of result lists: ``orders[q]`` are gallery positions best first (the query left out), a
    result relevant when its ``labels`` entry is ``query_labels[q]``."""
    aps = []
    for order, label in zip(orders, query_labels):
        rel = labels[np.asarray(order, dtype=np.int64)] == label
        aps.append(average_precision(np.flatnonzero(rel), int(rel.sum())))
    return float(np.mean(aps))


def mean_ap(desc: np.ndarray, labels: np.ndarray, distractors: np.ndarray | None = None) -> float:
    """mAP with every row of ``desc`` as a query over ``desc`` (itself left out) and the
    ``distractors`` (never relevant), by cosine of the (unit) descriptors."""
    gallery, gallery_labels = desc, labels
    if distractors is not None and len(distractors):
        gallery = np.concatenate([desc, distractors])
        gallery_labels = np.concatenate([labels, np.full(len(distractors), labels.min() - 1)])
    sims = desc @ gallery.T
    orders = [[i for i in np.argsort(-sims[q], kind="stable") if i != q] for q in range(len(desc))]
    return mean_ap_of_orders(orders, labels, gallery_labels)


def embed_openvino(spec, net, paths, tag: str) -> tuple[np.ndarray, Path]:
    """Descriptors of ``paths`` through the OpenVINO engine of an exported model (cached by model id)."""
    from retrieval.engines import load_embedder
    from retrieval.engines.export import export_model
    from retrieval.preprocess import load_and_prepare

    model_dir = CACHE / "models" / f"{tag}-{spec.model_id}"
    if not (model_dir / "model.json").exists():
        export_model(spec, net, model_dir, formats=("onnx", "openvino"))
    out = CACHE / "desc" / f"{spec.model_id}-{len(paths)}.npy"
    if out.exists():
        return np.load(out), model_dir
    emb = load_embedder("openvino", spec, model_dir, batch_size=8)
    descs = []
    for i in range(0, len(paths), 16):
        prep = [
            load_and_prepare(p, spec.input_geometry) for p in paths[i : i + 16]
        ]  # as an index prepares them
        descs.append(emb.embed_batch([p.array for p in prep], np.array([p.valid for p in prep], np.int64)))
    emb.close()
    d = np.concatenate(descs)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, d)
    return d, model_dir


def row(name, spec, net, paths, labels, teacher_desc, kept, size_224, ckpt=None) -> dict:
    from retrieval.compress.prune import conv_positions, count_params, gflops

    t = time.perf_counter()
    d, model_dir = embed_openvino(spec, net, paths, name.split()[0])
    last = kept.get(len(conv_positions(net.features)) - 1) if kept else None
    ref = teacher_desc if last is None else teacher_desc[:, last.numpy()]
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    cos = (d * ref).sum(1)
    r = {
        "model": name,
        "widths": list(spec.widths or ()),
        "dim": int(d.shape[1]),
        "gflops": gflops(net, spec.input_size),
        "gflops_224": gflops(net, size_224),
        "params_m": count_params(net) / 1e6,
        "ir_mb": (model_dir / "model.bin").stat().st_size / 1e6,
        "ckpt_mb": ckpt.stat().st_size / 1e6 if ckpt else None,
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "map": mean_ap(d, labels),
        "embed_s": time.perf_counter() - t,
    }
    print(
        f"  {name}: mAP {r['map']:.4f}, cosine {r['cosine_mean']:.3f} (min {r['cosine_min']:.3f}), "
        f"{r['gflops']:.2f} GFLOPs @{spec.input_size} ({r['gflops_224']:.2f} @224), {r['params_m']:.2f} M params, "
        f"IR {r['ir_mb']:.1f} MB",
        flush=True,
    )
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flops", type=float, nargs="+", default=[0.5], help="FLOPs targets (share kept)")
    ap.add_argument("--prune-last", action="store_true", help="also prune the last conv (descriptor < 512-d)")
    ap.add_argument("--size", type=int, default=224, help="input size of the models (evaluation)")
    ap.add_argument("--pooling", default=None, help="the teacher's pooling (default: a new index's)")
    ap.add_argument("--input-policy", default=None, help="square or buckets (default: a new index's)")
    ap.add_argument("--round-to", type=int, default=ROUND_TO, help="pruned widths are multiples of this")
    ap.add_argument("--distill-size", type=int, default=160)
    ap.add_argument("--epochs", type=int, default=0, help="gradient distillation epochs after the refit")
    ap.add_argument("--augmented-views", type=int, default=1)
    ap.add_argument("--limit", type=int, default=240, help="distillation photos (seeded sample)")
    ap.add_argument("--reconstruct-images", type=int, default=256)
    ap.add_argument("--reconstruct-size", type=int, default=None, help="default: the model's input size")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--more-photos", action="store_true", help="also hymenoptera/val and samples/pixabay")
    ap.add_argument("--seed", type=int, default=0, help="of the augmented views")
    ap.add_argument(
        "--resume-distilled",
        action="store_true",
        help="more epochs on the distilled checkpoint a previous run left in the cache (use a new --seed)",
    )
    ap.add_argument(
        "--reuse-refit",
        action="store_true",
        help="start from the refit checkpoint a previous run left in the cache (same flags)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=CACHE / "report.json")
    args = ap.parse_args(argv)

    import torch

    from retrieval.compress.distill import DistillConfig, distill, save_student
    from retrieval.compress.distill_data import photo_paths
    from retrieval.compress.prune import prune_model
    from retrieval.nets.builder import build

    torch.set_num_threads(args.threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    paths, labels = paris5()
    train = photo_paths(TRAIN + (MORE_TRAIN if args.more_photos else []), limit=args.limit)
    assert not set(train) & set(paths)
    spec, teacher = build("vgg16", str(WEIGHTS), args.pooling, args.size, input_policy=args.input_policy)
    print(
        f"paris5: {len(paths)} photos; recovery photos: {len(train)} from "
        f"{', '.join(f.parent.name + '/' + f.name for f in TRAIN + (MORE_TRAIN if args.more_photos else []))}",
        flush=True,
    )
    rows = []
    teacher_desc, _ = embed_openvino(spec, teacher, paths, "teacher")
    rows.append(row("teacher vgg16", spec, teacher, paths, labels, teacher_desc, None, 224))
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "runs": []}
    for flops in args.flops:
        student, pspec, kept = prune_model(
            teacher, spec, flops=flops, keep_last=not args.prune_last, round_to=args.round_to
        )
        tag = f"p{int(flops * 100)}{'L' if args.prune_last else ''}-r{args.round_to}-{spec.pooling}-{spec.input_policy}"
        rows.append(
            row(f"{tag} pruned (no recovery)", pspec, student, paths, labels, teacher_desc, kept, 224)
        )
        cfg = DistillConfig(
            size=args.distill_size,
            epochs=0,
            reconstruct_images=args.reconstruct_images,
            reconstruct_size=args.reconstruct_size,
            threads=args.threads,
        )
        t = time.perf_counter()
        ck = CACHE / f"{tag}-refit.pt"
        if args.reuse_refit and ck.exists():
            run = {"reused_refit": str(ck)}
        else:
            run = distill(
                student,
                teacher,
                train,
                cfg,
                spec=spec,
                kept=kept,
                progress=lambda st, d, n, info: (
                    print(f"    {st} {d}/{n}", flush=True) if st == "reconstruct" else None
                ),
            )
            pspec = pspec.replace(
                weights_sha256=""
            )  # new weights: a new model id (save_student fingerprints)
            save_student(ck, pspec, student)
        run["flops"], run["reconstruct_wall_s"] = flops, time.perf_counter() - t
        rspec, student = build("vgg16", str(ck), input_size=args.size)  # its own pooling and policy
        rows.append(
            row(f"{tag} pruned + layer refit", rspec, student, paths, labels, teacher_desc, kept, 224, ck)
        )
        if args.epochs > 0:
            cfg = DistillConfig(
                size=args.distill_size,
                epochs=args.epochs,
                augmented_views=args.augmented_views,
                reconstruct_images=0,
                lr=args.lr,
                threads=args.threads,
                cache_dir=str(CACHE / "teacher"),
                seed=args.seed,
            )
            t = time.perf_counter()
            ck = CACHE / f"{tag}-distilled.pt"
            if args.resume_distilled and ck.exists():
                rspec, student = build("vgg16", str(ck), input_size=args.size)
                run["resumed_from"] = str(ck)
            last = [0.0]

            def prog(stage, done, total, info):
                if time.perf_counter() - last[0] > 60 or done == total:
                    last[0] = time.perf_counter()
                    print(f"    distill {done}/{total} loss {info.get('loss', 0):.4f}", flush=True)

            sgd = distill(student, teacher, train, cfg, spec=rspec, kept=kept, progress=prog)
            run["distill"], run["distill_wall_s"] = sgd, time.perf_counter() - t
            save_student(ck, rspec, student)
            dspec, student = build("vgg16", str(ck), input_size=args.size)
            rows.append(
                row(
                    f"{tag} pruned + refit + distilled",
                    dspec,
                    student,
                    paths,
                    labels,
                    teacher_desc,
                    kept,
                    224,
                    ck,
                )
            )
        report["runs"].append(run)
        args.out.write_text(json.dumps(report, indent=2, default=str))
    print(
        "\n| model | widths | dim | GFLOPs @%d | GFLOPs @224 | params (M) | IR MB | cosine | mAP |"
        % args.size
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {','.join(map(str, r['widths'])) or 'vgg16'} | {r['dim']} | {r['gflops']:.2f} | "
            f"{r['gflops_224']:.2f} | {r['params_m']:.2f} | {r['ir_mb']:.1f} | {r['cosine_mean']:.3f} | {r['map']:.4f} |"
        )
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
