"""``train-video`` and ``classify-video``: the video classifiers (``retrieval.video.pipeline``).
See docs/video-models.md."""

from __future__ import annotations

import json
from pathlib import Path

import click

from retrieval import ARCHS
from retrieval.video import FITS, MODELS, RNNS, SAMPLINGS, TIME_PADDINGS


@click.command("train-video")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder.")
@click.option(
    "--model",
    type=click.Choice(MODELS),
    default="vgg3d",
    show_default=True,
    help="vgg3d: 3x3x3 convolutions (2D weights inflated); vgg-lstm: per-frame VGG + LSTM/GRU.",
)
@click.option("--arch", type=click.Choice(ARCHS), default="vgg16", show_default=True)
@click.option("--widths", default=None, help="Conv widths, comma-separated (small/pruned trunks).")
@click.option(
    "--weights",
    default=None,
    help="2D trunk weights (name, .pth, image checkpoint; inflated for vgg3d), a video checkpoint, or 'random'.",
)
@click.option("--frames", type=int, default=16, show_default=True, help="Frames sampled per clip.")
@click.option("--size", "input_size", type=int, default=112, show_default=True, help="Frame size (square).")
@click.option(
    "--fit",
    type=click.Choice(FITS),
    default="crop",
    show_default=True,
    help="crop: short side + centre crop; pad: long side + zero padding (masked).",
)
@click.option("--sampling", type=click.Choice(SAMPLINGS), default="uniform", show_default=True)
@click.option("--stride", type=int, default=2, show_default=True, help="Frame step of --sampling stride.")
@click.option(
    "--time-padding",
    type=click.Choice(TIME_PADDINGS),
    default="replicate",
    show_default=True,
    help="vgg3d: end frames repeated (exact inflation) or zeros (C3D).",
)
@click.option("--rnn", type=click.Choice(RNNS), default="lstm", show_default=True)
@click.option("--hidden", type=int, default=256, show_default=True, help="vgg-lstm hidden size.")
@click.option("--rnn-layers", type=int, default=1, show_default=True)
@click.option(
    "--deltas/--no-deltas",
    default=True,
    show_default=True,
    help="vgg-lstm: also feed each frame descriptor's change since the previous frame.",
)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=0.01, show_default=True, help="Base LR (trunk).")
@click.option("--min-lr", type=float, default=0.0, show_default=True)
@click.option(
    "--head-lr-mult", type=float, default=10.0, show_default=True, help="LSTM/head LR = this x base LR."
)
@click.option("--warmup-epochs", type=float, default=2.0, show_default=True)
@click.option("--warmup-start-lr", type=float, default=1e-4, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--label-smoothing", type=float, default=0.1, show_default=True)
@click.option("--dropout", type=float, default=0.5, show_default=True)
@click.option(
    "--freeze",
    default="auto",
    show_default=True,
    help="Trunk modules frozen from the input side: a number, 'all', 'none', or 'auto' (vgg-lstm: all, vgg3d: none).",
)
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="vgg-lstm with a frozen trunk: compute frame descriptors once (no augmentation then).",
)
@click.option(
    "--crop-scale",
    type=(float, float),
    default=(0.6, 1.0),
    show_default=True,
    help="Training crop: share of the short side's area, one crop per clip.",
)
@click.option("--grad-clip", type=float, default=5.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=0, show_default=True, help="Clip decoding processes.")
@click.option("--val-fraction", type=float, default=0.2, show_default=True)
@click.option("--limit-per-class", type=int, default=None, help="Use a small subset (quick runs).")
@click.option(
    "--resume", is_flag=True, help="Continue OUT/last.pt (its model; other model options are ignored)."
)
def train_video(data, out, **options):
    """Train a video classifier on a folder of labelled clips DATA.

    DATA/<class>/<clip> (seeded split) or DATA/train|val/<class>/<clip>; a clip is a video file
    (mp4, webm, mkv, avi, mov...) or a folder of frame images."""
    from retrieval.video import VideoJob, train_video_classifier  # lazy: loads torch only when used

    resume = options.pop("resume")
    train_video_classifier(data, out, VideoJob.from_options(options), resume=resume, log=click.echo)


@click.command("classify-video")
@click.argument("clips", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "checkpoint",
    type=click.Path(path_type=Path),
    required=True,
    help="A train-video checkpoint (best.pt).",
)
@click.option("--top-k", type=int, default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per clip per line.")
def classify_video(clips, checkpoint, top_k, as_json):
    """Print the top classes of each clip (video file or folder of frames)."""
    from retrieval.video import classify_clips  # lazy: loads torch only when used

    for path, top in zip(clips, classify_clips(checkpoint, clips, top_k)):
        if as_json:
            click.echo(
                json.dumps({"clip": str(path), "classes": [{"class": c, "p": round(v, 6)} for c, v in top]})
            )
        else:
            click.echo(f"{path}: " + ", ".join(f"{c} {v:.3f}" for c, v in top))


COMMANDS = (train_video, classify_video)
