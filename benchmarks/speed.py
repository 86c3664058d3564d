"""One table, one run: how fast and how good each descriptor model is on this CPU.

Rows: torch FP32 eager, OpenVINO FP32 (the default before INT8), OpenVINO INT8 (NNCF, the default of a
new index now), the pruned + label-free recovered VGG16 (``vgg-retrieval optimize``) in FP32 and INT8,
and this CPU's FP32 limit (measured numpy matrix-multiply GFLOP/s divided by the model's GFLOPs).
Columns:
- ``index img/s``: a whole ``Index.update`` of the same real photos (scan, decode in worker processes,
  embed, commit), the way ``vgg-retrieval index`` runs, and its ratio to OpenVINO FP32;
- ``ms/img b1``: median latency of one image (a search query);
- GFLOPs and model size (the files the engine loads; torch: its parameters);
- ``cosine``: mean descriptor cosine to the FP32 teacher on the retrieval photos;
- ``mAP``: retrieval/paris5 (250 photos of 5 landmarks, every photo a query, INRIA Holidays AP).
INT8 models are calibrated on up to 300 of the indexed photos, as a new index does.

Run:  PYTHONPATH=. python benchmarks/speed.py [--student CKPT] [--photos N] [--quick]
``--student``: a checkpoint from ``vgg-retrieval optimize`` (or benchmarks/prune_distill.py); without
one, the student rows are left out. Speed figures are noisy on shared machines: compare rows of one run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from prune_distill import mean_ap, paris5  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
PHOTOS = [DATA / "photos" / "samples" / "vacation", DATA / "photos" / "samples" / "pixabay"]


def matmul_gflops(n: int = 2048, runs: int = 5) -> float:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(runs))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def photo_folder(tmp: Path, limit: int) -> Path:
    """The benchmark photos linked into one folder (the first ``limit`` in sorted order)."""
    from retrieval.distill import photo_paths

    folder = tmp / "photos"
    folder.mkdir()
    for i, p in enumerate(photo_paths(PHOTOS)[:limit]):
        (folder / f"{i:04d}-{Path(p).name}").symlink_to(p)
    return folder


def embed_paths(embedder, paths, batch: int = 8) -> np.ndarray:
    from retrieval.preprocess import load_and_prepare

    out = []
    for i in range(0, len(paths), batch):
        prep = [load_and_prepare(p, embedder.spec.input_size) for p in paths[i:i + batch]]
        out.append(embedder.embed_batch(np.stack([p.array for p in prep]), np.array([p.valid for p in prep])))
    return np.concatenate(out)


def batch1_ms(embedder, path, runs: int) -> float:
    from retrieval.preprocess import load_and_prepare

    p = load_and_prepare(path, embedder.spec.input_size)
    img, size = p.array[None], np.array([p.valid])
    embedder.embed_batch(img, size)
    return 1000 * statistics.median(_timed(lambda: embedder.embed_batch(img, size)) for _ in range(runs))


def model_mb(model_dir: Path, engine: str, net) -> float:
    if engine == "torch":
        return sum(t.numel() * t.element_size() for t in net.state_dict().values()) / 1e6
    return sum(f.stat().st_size for f in model_dir.glob("model.*") if f.suffix in (".xml", ".bin")) / 1e6


def measure(name, engine, spec, net, model_dir, folder, tmp, paris, teacher_desc, runs) -> dict:
    from indexer import Index
    from retrieval.engines import load_embedder
    from retrieval.prune import gflops

    with Index.create(tmp / f"ix-{name}", spec, net=net, model_dir=model_dir, engine=engine) as idx:
        report = idx.update([folder], progress=False)
    emb = load_embedder(engine, spec, model_dir, net=net, batch_size=8)
    desc = embed_paths(emb, paris[0])
    row = {"model": name, "index_img_s": report.images_per_second, "ms_b1": batch1_ms(emb, paris[0][0], runs),
           "gflops": gflops(net, spec.input_size), "mb": model_mb(model_dir, engine, net),
           "cosine": float(np.mean(np.sum(desc * teacher_desc, axis=1))) if teacher_desc is not None else 1.0,
           "map": mean_ap(desc, paris[1]), "desc": desc}
    emb.close()
    print(f"  {name}: {row['index_img_s']:.2f} img/s, mAP {row['map']:.4f}", file=sys.stderr, flush=True)
    return row


def int8_copy(model_dir: Path, folder: Path, out: Path) -> Path:
    import shutil

    from indexer.creating import calibration_images, quantize_in_place
    from retrieval.export import read_sidecar

    shutil.copytree(model_dir, out)
    quantize_in_place(out, calibration_images([folder], size=read_sidecar(out)[0].input_size))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path, default=None, help="checkpoint of a pruned, recovered VGG16")
    ap.add_argument("--photos", type=int, default=200, help="photos indexed end to end")
    ap.add_argument("--runs", type=int, default=20, help="batch-1 latency runs")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 40 photos, 3 latency runs, every 5th paris5 photo")
    args = ap.parse_args()
    if args.quick:
        args.photos, args.runs = 40, 3
    from retrieval.builder import build
    from retrieval.export import export_model

    limit = matmul_gflops()
    tmp = Path(tempfile.mkdtemp(prefix="vgg-speed-"))
    folder = photo_folder(tmp, args.photos)
    paths, labels = paris5()  # benchmarks/prune_distill.py: the same mAP as there
    paris = (paths[::5], labels[::5]) if args.quick else (paths, labels)
    spec, teacher = build("vgg16", str(WEIGHTS))
    fp32 = export_model(spec, teacher, tmp / "fp32")
    rows = [measure("OpenVINO FP32 (old default)", "openvino", spec, teacher, fp32, folder, tmp, paris, None, args.runs)]
    ref = rows[0]["desc"]
    rows.insert(0, measure("torch FP32 eager", "torch", spec, teacher, fp32, folder, tmp, paris, ref, args.runs))
    rows.append(measure("OpenVINO INT8 (new default)", "openvino", spec, teacher,
                        int8_copy(fp32, folder, tmp / "int8"), folder, tmp, paris, ref, args.runs))
    if args.student:
        sspec, student = build("vgg16", str(args.student))
        sdir = export_model(sspec, student, tmp / "student")
        rows.append(measure("pruned + recovered FP32", "openvino", sspec, student, sdir, folder, tmp, paris, ref,
                            args.runs))
        rows.append(measure("pruned + recovered INT8", "openvino", sspec, student,
                            int8_copy(sdir, folder, tmp / "student-int8"), folder, tmp, paris, ref, args.runs))
    base = rows[1]["index_img_s"]
    print(f"\n{args.photos} real photos indexed end to end; mAP on retrieval/paris5 ({len(paris[0])} photos); "
          f"FP32 matmul {limit:.0f} GFLOP/s\n")
    print("| model | index img/s | x OpenVINO FP32 | ms/img b1 | GFLOPs | MB | cosine | mAP |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['index_img_s']:.2f} | {r['index_img_s'] / base:.2f} | {r['ms_b1']:.0f} | "
              f"{r['gflops']:.2f} | {r['mb']:.0f} | {r['cosine']:.4f} | {r['map']:.4f} |")
    for r in rows[1:2] + rows[3:4]:
        print(f"| CPU FP32 limit for {r['gflops']:.1f} GFLOPs | {limit / r['gflops']:.2f} | "
              f"{limit / r['gflops'] / base:.2f} | | | | | |")


if __name__ == "__main__":
    main()
