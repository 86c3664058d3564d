"""Images/s of each engine on the same real photos, in one run, with the ratio to PyTorch eager.

    python benchmarks/embed.py [--images 48] [--size 224] [--batch-size 8]

Decoding is done once up front (it is the same for every engine); the table times the model only,
plus a row for the whole pipeline (decode + OpenVINO) as the indexer runs it.
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


def photos(n: int) -> list[Path]:
    files = sorted((DATA / "photos" / "samples" / "pixabay").glob("*.jpg"))
    files += sorted((DATA / "photos" / "samples" / "vacation").glob("*.jpg"))
    return files[:n]


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from retrieval.engines import load_embedder
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build
    from retrieval.preprocess import load_and_prepare

    files = photos(args.images)
    t = time.perf_counter()
    prepared = [load_and_prepare(f, args.size) for f in files]
    decode_s = time.perf_counter() - t
    x = np.stack([p.array for p in prepared])
    s = np.array([p.valid for p in prepared], dtype=np.int64)
    spec, net = build("vgg16", str(WEIGHTS), input_size=args.size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        export_model(spec, net, tmp)
        variants = [
            ("torch", "torch eager FP32", {}),
            ("onnxruntime", "ONNX Runtime FP32", {}),
            ("openvino", "OpenVINO FP32", {"precision": "f32"}),
            ("openvino", "OpenVINO bf16 hint", {"precision": "bf16"}),
        ]
        ref = None
        for engine, label, opts in variants:
            emb = load_embedder(engine, spec, tmp, net=net, batch_size=args.batch_size, **opts)
            emb.embed_batch(x[: args.batch_size], s[: args.batch_size])  # warm-up / compile
            out = {}
            secs = timed(lambda: out.__setitem__("d", emb.embed_batch(x, s)), args.repeat)
            if ref is None:
                ref = out["d"]
            cos = float((out["d"] * ref).sum(1).min())
            one = timed(lambda: emb.embed_batch(x[:1], s[:1]), 3)
            rows.append((label, len(x) / secs, one * 1000, cos))
        emb = load_embedder("openvino", spec, tmp, batch_size=args.batch_size)
        pipeline = timed(lambda: emb.embed(files), 1)
    base = rows[0][1]
    print(
        f"\nVGG16 descriptors, {len(files)} real photos at {args.size} px, batch {args.batch_size}; "
        f"decode+resize alone: {len(files) / decode_s:.1f} img/s (one process)\n"
    )
    print("| engine | img/s | ms/img at batch 1 | x PyTorch eager | min cosine vs PyTorch |")
    print("|---|---:|---:|---:|---:|")
    for label, ips, ms, cos in rows:
        print(f"| {label} | {ips:.2f} | {ms:.0f} | {ips / base:.2f} | {cos:.6f} |")
    print(
        f"| decode + OpenVINO FP32 (sequential) | {len(files) / pipeline:.2f} | | {len(files) / pipeline / base:.2f} | |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
