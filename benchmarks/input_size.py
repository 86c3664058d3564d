"""Which input size (longer side) to use by default: retrieval quality vs speed on real photos.

Gallery: the sample photos in ../shared/data (opencv, pixabay, skimage, sklearn) and the dedup set.
Queries: known pairs (stereo/viewpoint pairs, and edited copies of a UKBench photo); for each we
record the rank of the partner. Speed: ms/image of the OpenVINO FP32 engine at batch 8.
Run:  python benchmarks/input_size.py [--sizes 160 224 288 320 384] [--pooling gap]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
PAIRS = [
    ("photos/samples/skimage/motorcycle_left.png", "photos/samples/skimage/motorcycle_right.png"),
    ("photos/samples/opencv/leuvenA.jpg", "photos/samples/opencv/leuvenB.jpg"),
    ("photos/samples/opencv/graf1.png", "photos/samples/opencv/graf3.png"),
    ("photos/samples/opencv/left01.jpg", "photos/samples/opencv/right01.jpg"),
    ("photos/samples/opencv/aero1.jpg", "photos/samples/opencv/aero3.jpg"),
    ("photos/samples/opencv/box.png", "photos/samples/opencv/box_in_scene.png"),
    ("dedup/mixed_images/ukbench00120_hflip.jpg", "dedup/base_images/ukbench00120.jpg"),
    ("dedup/mixed_images/ukbench00120_resize.jpg", "dedup/base_images/ukbench00120.jpg"),
    ("dedup/mixed_images/ukbench00120_rotation.jpg", "dedup/base_images/ukbench00120.jpg"),
    ("dedup/ukbench00120_gray.jpg", "dedup/base_images/ukbench00120.jpg"),
]


def gallery() -> list[Path]:
    files = []
    for sub in (
        "photos/samples/opencv",
        "photos/samples/pixabay",
        "photos/samples/skimage",
        "photos/samples/sklearn",
        "dedup/base_images",
    ):
        files += sorted(p for p in (DATA / sub).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[160, 224, 288, 320, 384])
    ap.add_argument("--pooling", default="gap")
    args = ap.parse_args()
    from retrieval.engines import load_embedder
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build
    from retrieval.preprocess import ImageError, load_and_prepare

    files = gallery()
    queries = [DATA / a for a, _ in PAIRS]
    rows = []
    for size in args.sizes:
        spec, net = build("vgg16", str(WEIGHTS), pooling=args.pooling, input_size=size)
        with tempfile.TemporaryDirectory() as tmp:
            export_model(spec, net, tmp, formats=("openvino",))
            emb = load_embedder("openvino", spec, tmp, batch_size=8)
            prepared, names = [], []
            for f in files + queries:
                try:
                    prepared.append(load_and_prepare(f, size))
                    names.append(f)
                except ImageError:
                    pass
            x = np.stack([p.array for p in prepared])
            s = np.array([p.valid for p in prepared])
            emb.embed_batch(x[:8], s[:8])
            t = time.perf_counter()
            d = emb.embed_batch(x, s)
            ms = (time.perf_counter() - t) / len(x) * 1000
        index = {n: i for i, n in enumerate(names)}
        gallery_set = set(files)
        ranks = []
        for a, b in PAIRS:
            qa, qb = index[DATA / a], index[DATA / b]
            sims = d @ d[qa]
            order = [i for i in np.argsort(-sims) if names[i] in gallery_set and names[i] != DATA / a]
            ranks.append(order.index(qb) + 1)
        r = np.array(ranks)
        rows.append((size, (r == 1).mean(), (r <= 3).mean(), r.mean(), ms, ranks))
    print(
        f"\nVGG16 {args.pooling}, {len(files)} gallery photos, {len(PAIRS)} query pairs, OpenVINO FP32 batch 8\n"
    )
    print("| size | recall@1 | recall@3 | mean rank | ms/img | x time vs first | ranks |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for size, r1, r3, mr, ms, ranks in rows:
        print(f"| {size} | {r1:.2f} | {r3:.2f} | {mr:.1f} | {ms:.0f} | {ms / rows[0][4]:.2f} | {ranks} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
