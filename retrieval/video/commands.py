"""CLI of the video classifiers: ``train-video`` and ``classify-video``.

``register(cli)`` adds them to the ``vgg-retrieval`` click group. See docs/video-models.md.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from ..errors import UserError
from ..spec import ARCHS
from .choices import FITS, MODELS, RNNS, SAMPLINGS, TIME_PADDINGS


def _widths(value):
    if value is None:
        return None
    try:
        return tuple(int(v) for v in str(value).replace(" ", "").split(",") if v)
    except ValueError:
        raise UserError(f"--widths must be comma-separated integers, got {value!r}") from None


def _freeze(value: str, model: str) -> int:
    v = str(value).lower()
    if v == "auto":
        return -1 if model == "vgg-lstm" else 0
    if v == "all":
        return -1
    if v == "none":
        return 0
    try:
        return int(v)
    except ValueError:
        raise UserError(f"--freeze must be a number, 'all', 'none' or 'auto', got {value!r}") from None


@click.command("train-video")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder.")
@click.option("--model", type=click.Choice(MODELS), default="vgg3d", show_default=True,
              help="vgg3d: 3x3x3 convolutions (2D weights inflated); vgg-lstm: per-frame VGG + LSTM/GRU.")
@click.option("--arch", type=click.Choice(ARCHS), default="vgg16", show_default=True)
@click.option("--widths", default=None, help="Conv widths, comma-separated (small/pruned trunks).")
@click.option("--weights", default=None,
              help="2D trunk weights (name, .pth, image checkpoint; inflated for vgg3d), a video checkpoint, or 'random'.")
@click.option("--frames", type=int, default=16, show_default=True, help="Frames sampled per clip.")
@click.option("--size", "input_size", type=int, default=112, show_default=True, help="Frame size (square).")
@click.option("--fit", type=click.Choice(FITS), default="crop", show_default=True,
              help="crop: short side + centre crop; pad: long side + zero padding (masked).")
@click.option("--sampling", type=click.Choice(SAMPLINGS), default="uniform", show_default=True)
@click.option("--stride", type=int, default=2, show_default=True, help="Frame step of --sampling stride.")
@click.option("--time-padding", type=click.Choice(TIME_PADDINGS), default="replicate", show_default=True,
              help="vgg3d: end frames repeated (exact inflation) or zeros (C3D).")
@click.option("--rnn", type=click.Choice(RNNS), default="lstm", show_default=True)
@click.option("--hidden", type=int, default=256, show_default=True, help="vgg-lstm hidden size.")
@click.option("--rnn-layers", type=int, default=1, show_default=True)
@click.option("--deltas/--no-deltas", default=True, show_default=True,
              help="vgg-lstm: also feed each frame descriptor's change since the previous frame.")
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True, help="Base LR (trunk).")
@click.option("--min-lr", type=float, default=0.0, show_default=True)
@click.option("--head-lr-mult", type=float, default=10.0, show_default=True, help="LSTM/head LR = this x base LR.")
@click.option("--warmup-epochs", type=float, default=2.0, show_default=True)
@click.option("--warmup-start-lr", type=float, default=1e-4, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--label-smoothing", type=float, default=0.1, show_default=True)
@click.option("--dropout", type=float, default=0.5, show_default=True)
@click.option("--freeze", default="auto", show_default=True,
              help="Trunk modules frozen from the input side: a number, 'all', 'none', or 'auto' (vgg-lstm: all, vgg3d: none).")
@click.option("--cache/--no-cache", default=True, show_default=True,
              help="vgg-lstm with a frozen trunk: compute frame descriptors once (no augmentation then).")
@click.option("--crop-scale", type=(float, float), default=(0.6, 1.0), show_default=True,
              help="Training crop: share of the short side's area, one crop per clip.")
@click.option("--grad-clip", type=float, default=5.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=0, show_default=True, help="Clip decoding processes.")
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option("--limit-per-class", type=int, default=None, help="Use a small subset (quick runs).")
@click.option("--resume", is_flag=True, help="Continue OUT/last.pt (its model; other model options are ignored).")
def train_video(data, out, model, arch, widths, weights, frames, input_size, fit, sampling, stride, time_padding, rnn,
                hidden, rnn_layers, deltas, dropout, freeze, val_fraction, limit_per_class, resume, **kw):
    """Train a video classifier on a folder of labelled clips DATA.

    DATA/<class>/<clip> (seeded split) or DATA/train|val/<class>/<clip>; a clip is a video file
    (mp4, webm, mkv, avi, mov...) or a folder of frame images."""
    from .clips import load_clip_split
    from .models import VideoSpec
    from .train import VideoTrainConfig, fit_video, load_video_checkpoint, prepare_video_model

    split = load_clip_split(data, val_fraction, kw["seed"], limit_per_class)
    if resume and (out / "last.pt").is_file():
        spec, net, _ = load_video_checkpoint(out / "last.pt")
        if tuple(spec.class_names) != tuple(split.classes):
            raise UserError(f"{out / 'last.pt'} was trained on classes {list(spec.class_names)}, "
                            f"{data} has {list(split.classes)}")
        model = spec.model
    else:
        try:
            spec = VideoSpec(model=model, arch=arch, widths=_widths(widths), class_names=tuple(split.classes),
                             frames=frames, input_size=input_size, fit=fit, sampling=sampling, stride=stride,
                             dropout=dropout, time_padding=time_padding, rnn=rnn, hidden=hidden, rnn_layers=rnn_layers,
                             deltas=deltas)
        except ValueError as e:
            raise UserError(str(e)) from None
        spec, net = prepare_video_model(spec, weights, kw["seed"])
    cfg = VideoTrainConfig(**{k: v for k, v in kw.items() if k in VideoTrainConfig.__dataclass_fields__},
                           freeze=_freeze(freeze, model))
    cfg.extra = {"data": str(Path(data).resolve()), "val_fraction": val_fraction, "seed": kw["seed"]}
    click.echo(f"{len(split.train)} train / {len(split.val)} val clips, {len(split.classes)} classes; {spec.describe()}")
    t = time.perf_counter()
    rows = fit_video(net, spec, split, out, cfg, resume=resume, log=click.echo)
    best = max((r["val_top1"] for r in rows), default=float("nan"))
    click.echo(f"done in {time.perf_counter() - t:.1f} s: best val top-1 {best:.4f}; {out / 'best.pt'}")


@click.command("classify-video")
@click.argument("clips", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "checkpoint", type=click.Path(path_type=Path), required=True,
              help="A train-video checkpoint (best.pt).")
@click.option("--top-k", type=int, default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per clip per line.")
def classify_video(clips, checkpoint, top_k, as_json):
    """Print the top classes of each clip (video file or folder of frames)."""
    from .train import load_video_checkpoint, predict_clips

    spec, net, _ = load_video_checkpoint(checkpoint)
    probs = predict_clips(net, spec, clips)
    names = spec.class_names
    for path, p in zip(clips, probs):
        order = p.argsort(descending=True)[:top_k].tolist()
        top = [(names[j], float(p[j])) for j in order]
        if as_json:
            click.echo(json.dumps({"clip": str(path), "classes": [{"class": c, "p": round(v, 6)} for c, v in top]}))
        else:
            click.echo(f"{path}: " + ", ".join(f"{c} {v:.3f}" for c, v in top))


def register(cli) -> None:
    for cmd in (train_video, classify_video):
        cli.add_command(cmd)
