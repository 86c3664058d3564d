"""The quality/speed frontier of the descriptor: input budget x pooling, on every labelled set we have.

Issue 28: the input size had been chosen on paris5, which shows no gain from size; personal photo
series (holidays150, 400x300 photos) do. This measures both, in one run, for each model:
- ``holidays150``: retrieval/holidays150 (150 scene series, 422 photos; the INRIA Holidays protocol:
  each series' first photo a query, its other photos relevant, the query left out);
- ``paris5``: retrieval/paris5 (250 photos of 5 landmarks; every photo a query, its folder relevant);
- ``pairs``: the stereo/viewpoint pairs of photos/samples in a gallery of all the samples photos
  (opencv, pixabay, skimage, sklearn: high-resolution photos, up to 12 MP), R@1 over both directions.
mAP is given without query expansion (``qe0``) and with the default search (alpha QE over 1 hit,
``qe1``), and ``+W``: QE 1 after whitening fitted on the set's own photos (what ``vgg-retrieval
whitening`` fits on an index). ``GFLOPs``: the conv trunk at the model's 4:3 bucket; ``img/s``:
OpenVINO at batch 8 on the holidays150 photos (decode included), this CPU, in the precision given.

Models are exported once into --work (kept between runs) and run in bf16 where the CPU has it
(AMX or AVX512-BF16: ``--precision bf16``, whose descriptors match f32 to mAP 0.0001 on paris5),
else f32; --int8 calibrates each on 64 vacation photos (none in a measured set) as an index would.
Run:  PYTHONPATH=. python benchmarks/descriptor_frontier.py [--sizes 224 320 448] [--poolings gem rmac]
      [--scales 1 1,0.7071] [--int8] [--work DIR]
Speed figures are noisy on shared machines: compare rows measured together, idle.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchmarks.decode_overlap import cpu_line  # noqa: E402
from benchmarks.prune_distill import average_precision  # noqa: E402
from benchmarks.retrieval_quality import PAIRS, SAMPLES, readable, scores  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
HOLIDAYS = DATA / "retrieval" / "holidays150"
CALIBRATION = DATA / "photos" / "samples" / "vacation"


def sets() -> tuple[list[Path], dict]:
    from retrieval.compress.distill_data import photo_paths

    gt = json.loads((HOLIDAYS / "gt_query_to_relevant.json").read_text())
    hol = sorted({q for q in gt} | {r for rel in gt.values() for r in rel})
    hol_paths = [HOLIDAYS / "images" / n for n in hol]
    paris = [Path(p) for p in photo_paths([DATA / "retrieval" / "paris5"])]
    samples = [Path(p) for sub in SAMPLES for p in photo_paths([DATA / sub])]
    samples = [p for p in samples if readable(p)]
    files = hol_paths + paris + samples
    at = {p: i for i, p in enumerate(files)}
    h = {n: i for i, n in enumerate(hol)}
    labels = [p.parent.name for p in paris]
    p0 = len(hol)
    return files, {
        "holidays150": (
            list(range(p0)),
            [h[q] for q in gt],
            [{h[r] for r in rel} for rel in gt.values()],
        ),
        "paris5": (
            list(range(p0, p0 + len(paris))),
            list(range(p0, p0 + len(paris))),
            [{p0 + j for j, m in enumerate(labels) if m == lab and j != i} for i, lab in enumerate(labels)],
        ),
        "pairs": (
            list(range(p0 + len(paris), len(files))),
            [at[DATA / "photos/samples" / a] for x, y in PAIRS for a in (x, y)],
            [{at[DATA / "photos/samples" / b]} for x, y in PAIRS for b in (y, x)],
        ),
    }


def mean_ap(v: np.ndarray, pool: list[int], queries: list[int], relevant: list[set], qe: int) -> tuple:
    """(mAP, R@1) of ``queries`` ranked against ``pool`` (the query left out)."""
    pool_arr = np.asarray(pool)
    base = v[pool_arr]
    s = scores(v[queries], base, qe)
    aps, r1 = [], []
    for row, q, rel in zip(s, queries, relevant):
        order = pool_arr[np.argsort(-row, kind="stable")]
        order = order[order != q]
        hit = np.isin(order, list(rel))
        aps.append(average_precision(np.flatnonzero(hit), len(rel)))
        r1.append(bool(hit[:1].any()))
    return float(np.mean(aps)), float(np.mean(r1))


def whitened(v: np.ndarray, pool: list[int]) -> np.ndarray:
    from indexer.vectors import whitening

    w = whitening.fit(v[pool])
    out = v.copy()
    out[pool] = w.apply(v[pool])
    return out


def model_dir(work: Path, size: int, pooling: str, scales: tuple, int8: bool) -> tuple:
    from indexer.storage.creating import quantize_in_place
    from indexer.update.calibration import calibration_images
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    spec, net = build(
        "vgg16", str(WEIGHTS), pooling=pooling, input_size=size, input_policy="buckets", scales=scales
    )
    out = work / f"{spec.model_id}-{'int8' if int8 else 'fp32'}"
    if not (out / "model.json").exists():
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        export_model(spec, net, partial, formats=("openvino",))
        if int8:
            quantize_in_place(partial, calibration_images([CALIBRATION], n=64, size=spec.input_geometry))
        partial.rename(out)
    return spec, out


def embed(spec, folder: Path, files: list[Path], precision: str, cache: Path) -> tuple[np.ndarray, float]:
    from retrieval.engines import load_embedder
    from retrieval.preprocess import load_and_prepare

    if cache.exists():
        with np.load(cache) as kept:
            return kept["v"], float(kept["img_s"])
    options = {} if precision == "int8" else {"precision": precision}
    emb = load_embedder("openvino", spec, folder, batch_size=8, **options)

    def run(paths):
        out = []
        for i in range(0, len(paths), 8):
            out.append(
                emb.embed_prepared([load_and_prepare(p, spec.input_geometry) for p in paths[i : i + 8]])
            )
        return np.concatenate(out)

    run(files[:16])  # OpenVINO compiles each bucket shape on first use
    t = time.perf_counter()
    first = run(files[:200])
    img_s = 200 / (time.perf_counter() - t)
    v = np.concatenate([first, run(files[200:])])
    np.savez(cache, v=v, img_s=img_s)
    return v, img_s


def gflops(spec) -> float:
    from retrieval.spec import bucket_shapes

    h, w = min(bucket_shapes(spec.input_size), key=lambda s: abs(s[1] / s[0] - 4 / 3))
    # VGG16's 13 convs: 3x3 kernels, channels and the resolution they run at (1, 1/2, ... 1/16)
    convs = [(3, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 2), (128, 256, 4), (256, 256, 4)]
    convs += [(256, 256, 4), (256, 512, 8), (512, 512, 8), (512, 512, 8)] + [(512, 512, 16)] * 3
    return (
        sum(2 * 9 * ci * co * (h / d) * (w / d) for ci, co, d in convs)
        / 1e9
        * sum(s * s for s in spec.scales)
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 320, 448])
    ap.add_argument("--poolings", nargs="+", default=["gem", "rmac"])
    ap.add_argument("--scales", nargs="+", default=["1"], help="comma-separated scale lists, e.g. 1,0.7071")
    ap.add_argument(
        "--int8", action="store_true", help="INT8 models (calibrated) instead of FP32 in bf16/f32"
    )
    ap.add_argument("--work", type=Path, default=ROOT / ".frontier")
    args = ap.parse_args()
    from retrieval.engines import cpu_runs_bf16

    precision = "int8" if args.int8 else ("bf16" if cpu_runs_bf16() else "f32")
    args.work.mkdir(exist_ok=True)
    files, measured = sets()
    print(f"CPU: {cpu_line()}; precision {precision}; {len(files)} photos")
    head = f"{'model':<26}{'GFLOPs':>7}{'img/s':>7}"
    for name in measured:
        head += f"  {name[:8] + ' qe0':>13}{'qe1':>6}{'+W':>6}"
    print(head)
    for size in args.sizes:
        for pooling in args.poolings:
            for sc in args.scales:
                scales = tuple(float(x) for x in sc.split(","))
                spec, folder = model_dir(args.work, size, pooling, scales, args.int8)
                v, img_s = embed(spec, folder, files, precision, folder / f"vectors-{precision}.npz")
                name = f"buckets {size} {pooling}" + ("" if scales == (1.0,) else f" x{sc}")
                line = f"{name:<26}{gflops(spec):>7.1f}{img_s:>7.1f}"
                for pool, queries, rel in measured.values():
                    col = 1 if pool is measured["pairs"][0] else 0  # pairs: R@1 (one relevant photo)
                    a = mean_ap(v, pool, queries, rel, 0)[col]
                    b = mean_ap(v, pool, queries, rel, 1)[col]
                    c = mean_ap(whitened(v, pool), pool, queries, rel, 1)[col]
                    line += f"  {a:>13.4f}{b:>6.3f}{c:>6.3f}"
                print(line, flush=True)
    print("pairs columns are R@1 (12 queries); the others mAP.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
