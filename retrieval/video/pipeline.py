"""The video classifiers' steps as functions: train on a folder of clips, classify clips
(``vgg-retrieval train-video`` / ``classify-video``). See docs/video-models.md."""
from __future__ import annotations

from pathlib import Path

from retrieval.errors import UserError
from retrieval.training.pipeline import fit_logged


def parse_widths(value):
    """Conv widths from '64,128,...' (None: the arch's own)."""
    if value is None:
        return None
    try:
        return tuple(int(v) for v in str(value).replace(" ", "").split(",") if v)
    except ValueError:
        raise UserError(f"--widths must be comma-separated integers, got {value!r}") from None


def parse_freeze(value, model: str) -> int:
    """Trunk modules frozen: a number, 'all' (-1), 'none' (0) or 'auto' (vgg-lstm: all, vgg3d: none)."""
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


def _model(split, out, data, resume, weights, seed, model_options):
    """(spec, net) to train: OUT/last.pt's with ``resume``, else a new one from ``model_options``."""
    from .models import VideoSpec
    from .train import load_video_checkpoint, prepare_video_model

    if resume and (Path(out) / "last.pt").is_file():
        spec, net, _ = load_video_checkpoint(Path(out) / "last.pt")
        if tuple(spec.class_names) != tuple(split.classes):
            raise UserError(f"{Path(out) / 'last.pt'} was trained on classes {list(spec.class_names)}, "
                            f"{data} has {list(split.classes)}")
        return spec, net
    try:
        spec = VideoSpec(class_names=tuple(split.classes), **model_options)
    except ValueError as e:
        raise UserError(str(e)) from None
    return prepare_video_model(spec, weights, seed)


def train_video_classifier(data, out, *, model="vgg3d", arch="vgg16", widths=None, weights=None, frames=16,
                           input_size=112, fit="crop", sampling="uniform", stride=2, time_padding="replicate",
                           rnn="lstm", hidden=256, rnn_layers=1, deltas=True, dropout=0.5, freeze="auto",
                           val_fraction=0.2, limit_per_class=None, resume=False, seed=0, log=print,
                           **recipe) -> list[dict]:
    """Train a video classifier on the labelled clips under ``data`` into the run folder ``out``
    (``recipe``: VideoTrainConfig fields); the per-epoch metrics."""
    from .clips import load_clip_split
    from .train import VideoTrainConfig, fit_video

    split = load_clip_split(data, val_fraction, seed, limit_per_class)
    spec, net = _model(split, out, data, resume, weights, seed, dict(
        model=model, arch=arch, widths=parse_widths(widths), frames=frames, input_size=input_size, fit=fit,
        sampling=sampling, stride=stride, dropout=dropout, time_padding=time_padding, rnn=rnn, hidden=hidden,
        rnn_layers=rnn_layers, deltas=deltas))
    recipe["seed"] = seed
    cfg = VideoTrainConfig(**{k: v for k, v in recipe.items() if k in VideoTrainConfig.__dataclass_fields__},
                           freeze=parse_freeze(freeze, spec.model))
    cfg.extra = {"data": str(Path(data).resolve()), "val_fraction": val_fraction, "seed": seed}
    return fit_logged(fit_video, net, spec, split, out, cfg, resume, log, "clips")


def classify_clips(checkpoint, clips, k: int = 3) -> list[list[tuple[str, float]]]:
    """Per clip (video file or folder of frames), the ``k`` most likely (class, probability)."""
    from .train import load_video_checkpoint, predict_clips

    spec, net, _ = load_video_checkpoint(checkpoint)
    probs = predict_clips(net, spec, clips)
    names = spec.class_names
    return [[(names[j], float(p[j])) for j in p.argsort(descending=True)[:k].tolist()] for p in probs]
