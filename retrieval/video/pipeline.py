"""The video classifiers' steps as functions: train on a folder of clips, classify clips
(``vgg-retrieval train-video`` / ``classify-video``). See docs/video-models.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from retrieval.errors import UserError
from retrieval.training.pipeline import fit_logged

from .clips import load_clip_split


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
    from .models import VideoSpec  # lazy: loads torch and torchvision only when used
    from .train import (  # lazy: loads torch and torchvision only when used
        load_video_checkpoint,
        prepare_video_model,
    )

    if resume and (Path(out) / "last.pt").is_file():
        spec, net, _ = load_video_checkpoint(Path(out) / "last.pt")
        if tuple(spec.class_names) != tuple(split.classes):
            raise UserError(
                f"{Path(out) / 'last.pt'} was trained on classes {list(spec.class_names)}, "
                f"{data} has {list(split.classes)}"
            )
        return spec, net
    try:
        spec = VideoSpec(class_names=tuple(split.classes), **model_options)
    except ValueError as e:
        raise UserError(str(e)) from None
    return prepare_video_model(spec, weights, seed)


@dataclass
class VideoJob:
    """A video classifier to train: the model (``VideoSpec`` fields), the split, and the recipe
    (``VideoTrainConfig`` fields in ``recipe``)."""

    model: str = "vgg3d"
    arch: str = "vgg16"
    widths: str | tuple | None = None
    weights: str | None = None
    frames: int = 16
    input_size: int = 112
    fit: str = "crop"
    sampling: str = "uniform"
    stride: int = 2
    time_padding: str = "replicate"
    rnn: str = "lstm"
    hidden: int = 256
    rnn_layers: int = 1
    deltas: bool = True
    dropout: float = 0.5
    freeze: str | int = "auto"
    val_fraction: float = 0.2
    limit_per_class: int | None = None
    seed: int = 0
    recipe: dict = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: dict) -> "VideoJob":
        """The job from flat options (the CLI's): fields by name, the rest is the recipe."""
        own = {k: v for k, v in options.items() if k in cls.__dataclass_fields__ and k != "recipe"}
        return cls(**own, recipe={k: v for k, v in options.items() if k not in own})

    def spec_options(self) -> dict:
        return dict(
            model=self.model,
            arch=self.arch,
            widths=parse_widths(self.widths),
            frames=self.frames,
            input_size=self.input_size,
            fit=self.fit,
            sampling=self.sampling,
            stride=self.stride,
            dropout=self.dropout,
            time_padding=self.time_padding,
            rnn=self.rnn,
            hidden=self.hidden,
            rnn_layers=self.rnn_layers,
            deltas=self.deltas,
        )


def train_video_classifier(
    data, out, job: VideoJob = VideoJob(), *, resume: bool = False, log=print
) -> list[dict]:
    """Train a video classifier on the labelled clips under ``data`` into the run folder ``out``;
    the per-epoch metrics."""
    from .train import VideoTrainConfig, fit_video  # lazy: loads torch and torchvision only when used

    split = load_clip_split(data, job.val_fraction, job.seed, job.limit_per_class)
    spec, net = _model(split, out, data, resume, job.weights, job.seed, job.spec_options())
    recipe = {**job.recipe, "seed": job.seed}
    cfg = VideoTrainConfig(
        **{k: v for k, v in recipe.items() if k in VideoTrainConfig.__dataclass_fields__},
        freeze=parse_freeze(job.freeze, spec.model),
    )
    cfg.extra = {"data": str(Path(data).resolve()), "val_fraction": job.val_fraction, "seed": job.seed}
    return fit_logged(fit_video, net, spec, split, out, cfg, resume, log, "clips")


def classify_clips(checkpoint, clips, k: int = 3) -> list[list[tuple[str, float]]]:
    """Per clip (video file or folder of frames), the ``k`` most likely (class, probability)."""
    from .train import (  # lazy: loads torch and torchvision only when used
        load_video_checkpoint,
        predict_clips,
    )

    spec, net, _ = load_video_checkpoint(checkpoint)
    probs = predict_clips(net, spec, clips)
    names = spec.class_names
    return [[(names[j], float(p[j])) for j in p.argsort(descending=True)[:k].tolist()] for p in probs]
