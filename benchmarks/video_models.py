"""Video classifiers on clips made from real photos: held-out top-1 and training time, plus the shared
VGG16 trunk inflated into VGG3D (static clip = 2D activations; forward cost at 16 x 112 x 112).

    python benchmarks/video_models.py [--train-photos 48] [--val-photos 24] [--frames 8] [--size 32]
                                      [--epochs 12] [--real-frames 16] [--real-size 112] [--skip-real]

Clips: every photo gives one clip of each motion (pan-left, pan-right, zoom-in, zoom-out; a digital
zoom on a camera of 1.5 x size pixels), so the classes differ only by motion and pan-left/pan-right
(zoom-in/zoom-out) hold the same frames in opposite orders. Train and val photos are disjoint
(vacation photos 0.. and 100..). Models are tiny (vgg11 widths 8-32) and trained from random
weights: this CPU cannot train a full VGG16-3D in minutes. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
SMALL = (8, 16, 16, 16, 32, 32, 32, 32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-photos", type=int, default=48)
    ap.add_argument("--val-photos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--models", default="vgg3d,vgg-lstm,vgg-lstm-e2e")
    ap.add_argument("--real-frames", type=int, default=16)
    ap.add_argument("--real-size", type=int, default=112)
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from retrieval.video.clips import load_clip_split
    from retrieval.video.models import VideoSpec
    from retrieval.video.synth import MOTIONS, make_motion_dataset
    from retrieval.video.train import (
        VideoTrainConfig,
        evaluate_clips,
        fit_video,
        load_video_checkpoint,
        prepare_video_model,
    )

    photos = sorted((DATA / "photos" / "samples" / "vacation").glob("*.jpg"))
    tmp = Path(tempfile.mkdtemp(prefix="video-bench-"))
    t = time.perf_counter()
    syn = dict(frames=args.frames, size=args.size * 3 // 2, zoom=0.25, source=args.size * 3 // 2)
    make_motion_dataset(photos[: args.train_photos], tmp / "clips" / "train", MOTIONS, **syn)
    make_motion_dataset(photos[100 : 100 + args.val_photos], tmp / "clips" / "val", MOTIONS, **syn)
    split = load_clip_split(tmp / "clips")
    print(
        f"{len(split.train)} train / {len(split.val)} val clips ({args.frames} frames, {args.size} px), "
        f"{len(split.classes)} classes {list(split.classes)}; made in {time.perf_counter() - t:.1f} s; "
        f"torch threads {torch.get_num_threads()}",
        flush=True,
    )

    rows = []
    configs = {
        "vgg3d": (dict(model="vgg3d", arch="vgg11_bn"), dict(lr=0.05, head_lr_mult=1.0, freeze=0)),
        "vgg-lstm": (dict(model="vgg-lstm", arch="vgg11", hidden=64), dict(lr=0.01, freeze=-1)),
        "vgg-lstm-e2e": (
            dict(model="vgg-lstm", arch="vgg11_bn", hidden=64),
            dict(lr=0.02, head_lr_mult=1.0, freeze=0),
        ),
    }
    for name in args.models.split(","):
        sp, tc = configs[name]
        spec = VideoSpec(
            widths=SMALL,
            frames=args.frames,
            input_size=args.size,
            dropout=0.1,
            class_names=split.classes,
            **sp,
        )
        spec, net = prepare_video_model(spec, "random")
        cfg = VideoTrainConfig(epochs=args.epochs, warmup_epochs=1, batch_size=8, **tc)
        t = time.perf_counter()
        hist = fit_video(net, spec, split, tmp / name, cfg, log=lambda s: print("  " + s, flush=True))
        secs = time.perf_counter() - t
        bspec, bnet, _ = load_video_checkpoint(tmp / name / "best.pt")
        per_class = {}
        for c, cname in enumerate(split.classes):
            items = [(f, y) for f, y in split.val if y == c]
            per_class[cname] = evaluate_clips(bnet, bspec, items)
        rows.append(
            (
                name,
                sum(p.numel() for p in net.parameters()),
                hist[0]["train_loss"],
                hist[-1]["train_loss"],
                max(r["val_top1"] for r in hist),
                hist[-1]["val_top1"],
                per_class,
                secs,
            )
        )

    print(
        "\n| model | params | train loss first -> last | val top-1 best (last) | per class (best.pt) | train time |"
    )
    print("|---|---:|---|---|---|---:|")
    for name, n, l0, l1, best, last, pc, secs in rows:
        pcs = ", ".join(f"{k} {v:.2f}" for k, v in pc.items())
        print(f"| {name} | {n:,} | {l0:.3f} -> {l1:.3f} | {best:.3f} ({last:.3f}) | {pcs} | {secs:.0f} s |")
    print(f"(chance = {1 / len(split.classes):.2f}; {args.epochs} epochs each)")

    if not args.skip_real:
        real(args.real_frames, args.real_size)


def real(frames: int, size: int):
    """Shared VGG16 trunk -> VGG3D: exactness on a static clip of a real photo, and the cost."""
    import numpy as np
    import torch
    from PIL import Image

    from retrieval.nets.builder import build
    from retrieval.video.models import VideoSpec
    from retrieval.video.synth import motion_frames
    from retrieval.video.train import prepare_video_model

    weights = DATA / "weights" / "vgg16_features_imagenet_like.pth"
    t = time.perf_counter()
    spec, net = prepare_video_model(
        VideoSpec(model="vgg3d", arch="vgg16", frames=frames, input_size=size, class_names=("a", "b")),
        str(weights),
    )
    load_s = time.perf_counter() - t
    _, net2d = build("vgg16", str(weights), input_size=size)
    with Image.open(DATA / "photos" / "samples" / "skimage" / "astronaut.png") as im:
        img = torch.from_numpy(np.array(motion_frames(im, "zoom-in", 1, size)[0]))[None]
    clip = img[:, None].expand(1, frames, size, size, 3).contiguous()
    net.eval()
    with torch.inference_mode():
        t = time.perf_counter()
        f3 = net.conv_features(clip)
        fwd3 = time.perf_counter() - t
        t = time.perf_counter()
        f2 = net2d.features(net2d.prepare(img, torch.tensor([[size, size]])))
        fwd2 = time.perf_counter() - t
    diff = (f3 - f2[:, :, None]).abs().max().item()
    print(
        f"\nshared VGG16 -> VGG3D ({frames}x{size}x{size}, sha256 {spec.weights_sha256[:12]}): inflated in "
        f"{load_s:.1f} s; conv5 {tuple(f3.shape[1:])}; static clip vs 2D conv5: max |diff| {diff:.2e} "
        f"(max activation {f2.abs().max().item():.1f}, {np.mean(f2.numpy() > 0):.0%} non-zero); "
        f"forward {fwd3:.1f} s per clip vs {fwd2:.2f} s for one 2D frame"
    )


if __name__ == "__main__":
    main()
