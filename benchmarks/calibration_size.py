"""How many photos the INT8 calibration of a new index needs: time against quality, in one run.

The default model (VGG16 trunk, buckets 224, GeM, border trimming) is exported once (FP32), then
quantized with NNCF on the first N photos of a calibration folder (vacation + hymenoptera/train,
none of them in a measured set), for each N of ``--sizes``. Each model embeds:
- ``paris5`` (250 photos of 5 landmarks; every photo a query, its folder relevant) and
- ``holidays150`` (422 personal photos in 150 series; each series' first photo a query),
and the table gives the calibration seconds, mAP on both (INRIA Holidays AP: trapezoid, query left
out) and the cosine of each descriptor to the FP32 model's.

Run:  PYTHONPATH=. python benchmarks/calibration_size.py [--sizes 16,32,64,128,300]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.prune_distill import average_precision  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"


def calibration_photos() -> list[str]:
    vac = sorted((DATA / "photos" / "samples" / "vacation").glob("*.jp*g"))
    hym = sorted((DATA / "photos" / "hymenoptera" / "train").rglob("*.jpg"))
    mixed = [p for pair in zip(vac, hym) for p in pair] + vac[len(hym) :] + hym[len(vac) :]
    return [str(p) for p in mixed]


def sets() -> dict:
    paris = sorted((DATA / "retrieval" / "paris5").rglob("*.jpg"))
    labels = [p.parent.name for p in paris]
    relevant = [{j for j, m in enumerate(labels) if m == lab and j != i} for i, lab in enumerate(labels)]
    hol = DATA / "retrieval" / "holidays150"
    gt = json.loads((hol / "gt_query_to_relevant.json").read_text())
    photos = sorted((hol / "images").glob("*.jpg"))
    index = {p.name: i for i, p in enumerate(photos)}
    queries = [(index[q], {index[r] for r in rel}) for q, rel in gt.items()]
    return {"paris5": (paris, list(enumerate(relevant))), "holidays150": (photos, queries)}


def mean_ap(v: np.ndarray, queries) -> float:
    aps = []
    for q, rel in queries:
        order = np.argsort(-(v @ v[q]), kind="stable")
        order = order[order != q]
        ranks = np.flatnonzero(np.isin(order, list(rel)))
        aps.append(average_precision(ranks, len(rel)))
    return float(np.mean(aps))


def embed(spec, model_dir: Path, photos) -> np.ndarray:
    from retrieval.engines import load_embedder

    emb = load_embedder("openvino", spec, model_dir, batch_size=8)
    return np.concatenate([emb.embed(photos[i : i + 32]) for i in range(0, len(photos), 32)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="16,32,64,128,300")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from indexer.storage.creating import quantize_in_place
    from retrieval.engines import export_model
    from retrieval.nets import build

    spec, net = build("vgg16", str(WEIGHTS))
    data, calib = sets(), calibration_photos()
    tmp = Path(tempfile.mkdtemp(prefix="vgg-calib-"))
    rows = []
    try:
        fp32 = export_model(spec, net, tmp / "fp32", formats=("onnx", "openvino"))
        ref = {name: embed(spec, fp32, photos) for name, (photos, _) in data.items()}
        rows.append(("FP32", 0.0, {n: mean_ap(ref[n], data[n][1]) for n in data}, 1.0, 1.0))
        for n in sizes:
            out = tmp / f"int8-{n}"
            shutil.copytree(fp32, out)
            t = time.perf_counter()
            quantize_in_place(out, calib[:n])
            took = time.perf_counter() - t
            v = {name: embed(spec, out, photos) for name, (photos, _) in data.items()}
            cos = np.concatenate([(v[k] * ref[k]).sum(1) for k in v])
            rows.append(
                (f"INT8, {n} photos", took, {k: mean_ap(v[k], data[k][1]) for k in v}, cos.min(), cos.mean())
            )
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{spec.describe()}; calibration photos: vacation + hymenoptera/train, interleaved\n")
    print("| model | calibration s | paris5 mAP | holidays150 mAP | cosine to FP32 (min / mean) |")
    print("|---|---:|---:|---:|---|")
    for name, took, maps, cmin, cmean in rows:
        print(
            f"| {name} | {took:.1f} | {maps['paris5']:.4f} | {maps['holidays150']:.4f} | {cmin:.4f} / {cmean:.4f} |"
        )


if __name__ == "__main__":
    main()
