"""One table, one run: how fast and how good each descriptor model is on this CPU.

Rows (the same real photos, one run):
- torch FP32 eager and OpenVINO FP32 of the old default model (square 224 input, GAP): the
  OpenVINO FP32 row is the baseline every ratio is against; OpenVINO INT8 of that model;
- the new default model (retrieval.nets.builder.build: buckets input policy at 224, GeM) in FP32 and
  INT8 (what a new index gets), INT8 in OpenVINO's throughput mode (engine option
  performance=THROUGHPUT: several batches in flight while the next photos are prepared), and INT8
  with one decode process (the rule before ``indexer.update.updater.default_workers``: 2 cores now decode
  in the indexing process);
- the input-size frontier: buckets 288 and 320 GeM INT8 (left out with --no-frontier);
- with --student CKPT: a pruned + recovered VGG16 (``vgg-retrieval optimize``) in FP32 and INT8;
- the full VGG16 with torchvision's classifier (fc6-fc8, square 224, GAP descriptor) in FP32, INT8
  and pruned (every conv, the last too, 30% of its filters by L1 norm, fc6's inputs with them
  (--full-ratios 0.3,0.4 adds other shares); and
  to 50% of the FLOPs with widths of 32s, as ``optimize`` prunes; not recovered) INT8: for the
  design's target table (latency -68%, size -73%); the trunk is the shared
  VGG16's, the classifier is random-init (torchvision.models.vgg16()): fine for latency and size,
  so these rows have no index run, cosine or mAP;
- this CPU's FP32 limit: measured numpy FP32 matrix-multiply GFLOP/s divided by a model's GFLOPs.
Columns:
- ``index img/s``: a whole ``Index.update`` of the same real photos (scan, decode, embed, commit),
  the way ``vgg-retrieval index`` runs (its default decode workers), and ``x base``: its ratio to
  the baseline;
- ``ms/img b1``: median latency of one image (a search query);
- GFLOPs (buckets: at the 4:3 bucket, e.g. 192x256 for 224) and model MB (the files OpenVINO loads;
  torch: its parameters); ``x limit``: index img/s over the CPU FP32 limit for the row's GFLOPs;
- ``cosine``: mean descriptor cosine to the FP32 OpenVINO model of the same pooling and input policy
  at 224 (square GAP: the baseline; buckets GeM: the new default FP32; at 288/320 it includes the
  change of input size), "-" where no such model is in the table;
- ``mAP``: retrieval/paris5 (250 photos of 5 landmarks, every photo a query, INRIA Holidays AP), each
  photo prepared with the model's own input geometry (``spec.input_geometry``), as an index does.
INT8 models are calibrated on up to 300 of the indexed photos, as a new index does.

Run:  PYTHONPATH=. python benchmarks/model_variants.py [--student CKPT] [--photos N] [--no-frontier] [--quick]
Speed figures are noisy on shared machines: run it on an idle machine and compare rows of one run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prune_distill import mean_ap, paris5  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
PHOTOS = [DATA / "photos" / "samples" / "vacation", DATA / "photos" / "samples" / "pixabay"]
DESIGN_LATENCY_CUT, DESIGN_SIZE_CUT = (
    0.68,
    0.73,
)  # the design's full-model targets (120 -> 38 ms, 528 -> 142 MB)
THROUGHPUT = {"performance": "THROUGHPUT"}


@dataclass
class Variant:
    """One row: a model, how it runs, and what its descriptors are compared with."""

    name: str
    engine: str
    spec: object
    net: object
    model_dir: Path
    options: dict = field(default_factory=dict)  # engine options (throughput mode)
    teacher: str | None = None  # the name of the row whose descriptors it is compared with
    full: bool = False  # a full-model row: latency and size only
    workers: int | None = None  # decode processes of the index run (None: Index.update's default)


def matmul_gflops(n: int = 2048, runs: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(runs))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def photo_folder(tmp: Path, limit: int) -> Path:
    """The benchmark photos linked into one folder (the first ``limit`` in sorted order)."""
    from retrieval.compress.distill_data import photo_paths

    folder = tmp / "photos"
    folder.mkdir()
    for i, p in enumerate(photo_paths(PHOTOS)[:limit]):
        (folder / f"{i:04d}-{Path(p).name}").symlink_to(p)
    return folder


def embed_paths(embedder, paths, batch: int = 8) -> np.ndarray:
    """Descriptors of ``paths``, each prepared with the model's own input geometry (as an index does),
    through ``embed_stream`` (so an engine in throughput mode runs as it indexes)."""
    from retrieval.preprocess import load_and_prepare

    def batches():
        for i in range(0, len(paths), batch):
            prep = [load_and_prepare(p, embedder.spec.input_geometry) for p in paths[i : i + batch]]
            yield [p.array for p in prep], np.array([p.valid for p in prep], dtype=np.int64)

    return np.concatenate(list(embedder.embed_stream(batches())))


def batch1_ms(embedder, path, runs: int) -> float:
    from retrieval.preprocess import load_and_prepare

    p = [load_and_prepare(path, embedder.spec.input_geometry)]
    embedder.embed_prepared(p)
    return 1000 * statistics.median(_timed(lambda: embedder.embed_prepared(p)) for _ in range(runs))


def model_gflops(v: Variant) -> float:
    """GFLOPs of one image: square at input_size, buckets at the 4:3 bucket (the trunk's FLOPs scale
    with the pixels: every bucket side is a multiple of the conv5 stride)."""
    from retrieval.compress.prune import gflops

    s = v.spec.input_size
    full = gflops(v.net, s)
    if v.spec.input_policy != "buckets":
        return full
    h, w = v.spec.input_geometry.shape_for(4, 3)
    return full * h * w / (s * s)


def model_mb(v: Variant) -> float:
    if v.engine == "torch":
        return sum(t.numel() * t.element_size() for t in v.net.state_dict().values()) / 1e6
    return sum(f.stat().st_size for f in v.model_dir.glob("model.*") if f.suffix in (".xml", ".bin")) / 1e6


def measure(v: Variant, folder, index_dir: Path, paris, teachers: dict, runs: int) -> dict:
    from indexer import Index
    from retrieval.engines import load_embedder

    row = {
        "model": v.name,
        "gflops": model_gflops(v),
        "mb": model_mb(v),
        "index_img_s": None,
        "cosine": None,
        "map": None,
    }
    if not v.full:
        with Index.create(
            index_dir, v.spec, net=v.net, model_dir=v.model_dir, engine=v.engine, engine_options=v.options
        ) as idx:
            row["index_img_s"] = idx.update([folder], progress=False, workers=v.workers).images_per_second
    emb = load_embedder(v.engine, v.spec, v.model_dir, net=v.net, batch_size=8, **v.options)
    row["ms_b1"] = batch1_ms(emb, paris[0][0], runs)
    if not v.full:
        desc = embed_paths(emb, paris[0])
        teachers.setdefault(v.name, desc)
        if v.teacher in teachers and teachers[v.teacher].shape == desc.shape:
            row["cosine"] = float(np.mean(np.sum(desc * teachers[v.teacher], axis=1)))
        row["map"] = mean_ap(desc, paris[1])
    emb.close()
    print(
        f"  {v.name}: {_cell(row['index_img_s'], '.2f')} img/s, {row['ms_b1']:.0f} ms b1, "
        f"mAP {_cell(row['map'], '.4f')}",
        file=sys.stderr,
        flush=True,
    )
    return row


def int8_copy(model_dir: Path, folder: Path, out: Path) -> Path:
    from indexer.storage.creating import quantize_in_place
    from indexer.update.calibration import calibration_images

    shutil.copytree(model_dir, out)
    quantize_in_place(out, calibration_images([folder]))
    return out


def exported(spec, net, out: Path) -> Path:
    from retrieval.engines.export import export_model

    return export_model(spec, net, out, formats=("onnx", "openvino"))


def probe_models(student: Path | None = None, pruned: bool = False) -> list[tuple[str, object, object]]:
    """(name, spec, net) for the focused speed probes (compiled_shapes.py, decode_workers.py): the
    default model, then the pruned + recovered checkpoint ``student`` or, with ``pruned``, VGG16
    pruned to 50% of its FLOPs in widths of 32 (not recovered: speed only)."""
    from retrieval.compress.prune import prune_model
    from retrieval.nets.builder import build

    spec, net = build("vgg16", str(WEIGHTS))
    models = [("default INT8", spec, net)]
    if student:
        models.append(("pruned + recovered INT8", *build("vgg16", str(student))))
    elif pruned:
        pnet, pspec, _ = prune_model(net, spec, flops=0.5, round_to=32)
        models.append(("pruned 50% INT8 (not recovered)", pspec, pnet))
    return models


def full_vgg16(tmp: Path):
    """(spec, net) of the full VGG16 with torchvision's classifier: the shared trunk, the classifier
    random-init (torchvision.models.vgg16()), square 224, GAP descriptor."""
    import torch
    import torchvision

    from retrieval.nets.builder import build

    state = torchvision.models.vgg16().state_dict()
    state.update(torch.load(WEIGHTS, map_location="cpu"))
    torch.save(state, tmp / "vgg16_full.pth")
    return build("vgg16", str(tmp / "vgg16_full.pth"), pooling="gap")


def variants(tmp: Path, folder: Path, student: Path | None, frontier: bool = True, full_ratios=(0.3,)):
    """The table's rows in order, the baseline first (each made when the one before it has been
    measured)."""
    from retrieval.nets.builder import build
    from retrieval.spec import DEFAULT_INPUT_POLICY, DEFAULT_POOLING

    old, new = "OpenVINO FP32, old default (square 224 GAP)", "new default FP32 (buckets 224 GeM)"
    spec, net = build("vgg16", str(WEIGHTS), pooling="gap", input_policy="square")
    d = exported(spec, net, tmp / "old")
    yield Variant(old, "openvino", spec, net, d)  # measured first: the baseline and a teacher
    yield Variant("torch FP32 eager (old model)", "torch", spec, net, d, teacher=old)
    yield Variant(
        "OpenVINO INT8 (square 224 GAP)",
        "openvino",
        spec,
        net,
        int8_copy(d, folder, tmp / "old8"),
        teacher=old,
    )
    spec, net = build("vgg16", str(WEIGHTS))
    assert (spec.input_policy, spec.pooling) == (DEFAULT_INPUT_POLICY, DEFAULT_POOLING) == ("buckets", "gem")
    d = exported(spec, net, tmp / "new")
    yield Variant(new, "openvino", spec, net, d)
    d8 = int8_copy(d, folder, tmp / "new8")
    yield Variant("new default INT8 (a new index)", "openvino", spec, net, d8, teacher=new)
    yield Variant("new default INT8, throughput mode", "openvino", spec, net, d8, THROUGHPUT, teacher=new)
    yield Variant("new default INT8, 1 decode process", "openvino", spec, net, d8, teacher=new, workers=1)
    for size in (288, 320) if frontier else ():
        spec, net = build("vgg16", str(WEIGHTS), input_size=size)
        d = exported(spec, net, tmp / f"b{size}")
        yield Variant(
            f"buckets {size} GeM INT8",
            "openvino",
            spec,
            net,
            int8_copy(d, folder, tmp / f"b{size}-8"),
            teacher=new,
        )
    if student:
        yield from student_variants(tmp, folder, student, {("square", "gap"): old, ("buckets", "gem"): new})
    yield from full_model_variants(tmp, folder, full_ratios)


def student_variants(tmp: Path, folder: Path, student: Path, teachers: dict):
    """The pruned + recovered checkpoint ``student`` in FP32 and INT8; compared with the teacher of
    its (input policy, pooling) in ``teachers`` when it runs at 224."""
    from retrieval.nets.builder import build

    spec, net = build("vgg16", str(student))
    teacher = teachers.get((spec.input_policy, spec.pooling)) if spec.input_size == 224 else None
    d = exported(spec, net, tmp / "student")
    yield Variant("pruned + recovered FP32", "openvino", spec, net, d, teacher=teacher)
    yield Variant(
        "pruned + recovered INT8",
        "openvino",
        spec,
        net,
        int8_copy(d, folder, tmp / "student8"),
        teacher=teacher,
    )


def full_model_variants(tmp: Path, folder: Path, ratios=(0.3,)):
    """The full VGG16 with its classifier: FP32, INT8, and INT8 pruned by each share of ``ratios`` in
    every conv (the design's table: 30%) and to 50% of the FLOPs."""
    from retrieval.compress.prune import conv_positions, prune_model

    spec, net = full_vgg16(tmp)
    d = exported(spec, net, tmp / "full")
    yield Variant("full VGG16 + classifier FP32", "openvino", spec, net, d, full=True)
    yield Variant(
        "full VGG16 + classifier INT8", "openvino", spec, net, int8_copy(d, folder, tmp / "full8"), full=True
    )
    every_conv = range(len(conv_positions(net.features)))
    for ratio in ratios:
        pnet, pspec, _ = prune_model(net, spec, ratios={k: ratio for k in every_conv})
        d = exported(pspec, pnet, tmp / f"pruned{ratio}")
        yield Variant(
            f"full VGG16 + classifier pruned {ratio:.0%} INT8",
            "openvino",
            pspec,
            pnet,
            int8_copy(d, folder, tmp / f"pruned{ratio}-8"),
            full=True,
        )
    from retrieval.compress.defaults import ROUND_TO

    pnet, pspec, _ = prune_model(net, spec, flops=0.5, round_to=ROUND_TO)
    d = exported(pspec, pnet, tmp / "pruned50")
    yield Variant(
        f"full VGG16 + classifier pruned to 50% FLOPs (widths x{ROUND_TO}) INT8",
        "openvino",
        pspec,
        pnet,
        int8_copy(d, folder, tmp / "pruned50-8"),
        full=True,
    )


def _cell(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def print_table(rows: list[dict], limit: float, photos: int, n_paris: int) -> None:
    base = rows[0]["index_img_s"]
    if base is None:  # --full-only
        return print_full(rows)
    print(
        f"\n{photos} real photos indexed end to end; mAP on retrieval/paris5 ({n_paris} photos); "
        f"FP32 matmul {limit:.0f} GFLOP/s; baseline: {rows[0]['model']}\n"
    )
    print("| model | index img/s | x base | ms/img b1 | GFLOPs | x limit | MB | cosine | mAP |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ips = r["index_img_s"]
        print(
            f"| {r['model']} | {_cell(ips, '.2f')} | {_cell(ips and ips / base, '.2f')} | {r['ms_b1']:.0f} | "
            f"{r['gflops']:.2f} | {_cell(ips and ips * r['gflops'] / limit, '.2f')} | {r['mb']:.0f} | "
            f"{_cell(r['cosine'], '.4f')} | {_cell(r['map'], '.4f')} |"
        )
    for r in (r for r in rows if "FP32" in r["model"] and "torch" not in r["model"]):
        print(
            f"| CPU FP32 limit at {r['gflops']:.2f} GFLOPs ({r['model']}) | {limit / r['gflops']:.2f} | "
            f"{limit / r['gflops'] / base:.2f} | {1000 * r['gflops'] / limit:.0f} | {r['gflops']:.2f} | 1.00 | | | |"
        )
    print_full(rows)


def print_full(rows: list[dict]) -> None:
    full = {r["model"]: r for r in rows if r["model"].startswith("full VGG16")}
    fp32 = full.pop("full VGG16 + classifier FP32")
    print(
        f"\nFull VGG16 with classifier (design targets: latency -{DESIGN_LATENCY_CUT:.0%}, size "
        f"-{DESIGN_SIZE_CUT:.0%}), against FP32 {fp32['ms_b1']:.0f} ms, {fp32['mb']:.0f} MB:"
    )
    for name, r in full.items():
        cut_ms, cut_mb = 1 - r["ms_b1"] / fp32["ms_b1"], 1 - r["mb"] / fp32["mb"]
        print(
            f"- {name}: {r['ms_b1']:.0f} ms ({-cut_ms:+.0%}: {_verdict(cut_ms, DESIGN_LATENCY_CUT)}), "
            f"{r['mb']:.0f} MB ({-cut_mb:+.0%}: {_verdict(cut_mb, DESIGN_SIZE_CUT)})"
        )


def _verdict(cut: float, target: float) -> str:
    return "reaches the target" if cut >= target else f"misses by {100 * (target - cut):.0f} points"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path, default=None, help="checkpoint of a pruned, recovered VGG16")
    ap.add_argument("--photos", type=int, default=150, help="photos indexed end to end")
    ap.add_argument("--runs", type=int, default=20, help="batch-1 latency runs")
    ap.add_argument("--no-frontier", action="store_true", help="leave out the 288 and 320 rows")
    ap.add_argument(
        "--full-only",
        action="store_true",
        help="only the full-model rows (latency and size; use more --runs: FP32 latency is noisy)",
    )
    ap.add_argument(
        "--full-ratios",
        default="0.3",
        help="comma-separated shares of every conv's filters pruned in the full-model rows",
    )
    ap.add_argument(
        "--quick", action="store_true", help="a smoke run: 24 photos, 3 latency runs, every 10th paris5 photo"
    )
    args = ap.parse_args()
    if args.quick:
        args.photos, args.runs = 24, 3
    ratios = tuple(float(r) for r in args.full_ratios.split(","))
    limit = matmul_gflops()
    tmp = Path(tempfile.mkdtemp(prefix="vgg-speed-"))
    folder = photo_folder(tmp, args.photos)
    paths, labels = paris5()  # benchmarks/prune_distill.py: the same mAP as there
    paris = (paths[::10], labels[::10]) if args.quick else (paths, labels)
    teachers: dict = {}
    try:
        rows = [
            measure(v, folder, tmp / f"index-{i}", paris, teachers, args.runs)
            for i, v in enumerate(
                full_model_variants(tmp, folder, ratios)
                if args.full_only
                else variants(tmp, folder, args.student, not args.no_frontier, ratios)
            )
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the models and indexes: several GB
    print_table(rows, limit, args.photos, len(paris[0]))


if __name__ == "__main__":
    main()
