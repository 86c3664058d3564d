"""The model pipeline's steps as functions: dataset statistics, fine-tuning, loading a classifier
checkpoint, comparing variants (``vgg-retrieval stats/train/benchmark``; pruning and quantization
are ``prune.prune_checkpoint`` and ``quantize.quantize_model``). See docs/model-pipeline.md."""

from __future__ import annotations

import time
from pathlib import Path

from retrieval.errors import UserError

DEFAULT_CACHE = Path.home() / ".cache" / "vgg-retrieval" / "features"


def dataset_stats(data, size: int | None = None) -> dict:
    """Exact per-channel mean/std of every image under ``data`` (pixels in [0,1], streaming):
    {images, pixels, mean, std, seconds}."""
    from .data import IMAGE_EXTS, channel_stats  # lazy: keeps the command line's start light

    if not Path(data).is_dir():
        raise UserError(f"dataset folder not found: {data}")
    paths = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not paths:
        raise UserError(f"no images under {data}")
    t = time.perf_counter()
    mean, std, n = channel_stats(paths, size)
    return {
        "images": len(paths),
        "pixels": int(n),
        "mean": [round(float(v), 6) for v in mean],
        "std": [round(float(v), 6) for v in std],
        "seconds": round(time.perf_counter() - t, 2),
    }


def parse_freeze(text) -> int:
    """--freeze: a number of `features` modules, 'all' (-1) or 'none' (0)."""
    text = str(text)
    return -1 if text == "all" else 0 if text == "none" else int(text)


def train_config(options: dict, freeze="all"):
    """A TrainConfig from the recipe ``options`` (unknown keys are ignored)."""
    from .config import TrainConfig  # lazy: keeps the command line's start light

    names = set(TrainConfig.__dataclass_fields__)
    cfg = TrainConfig(
        **{k: v for k, v in options.items() if k in names and k != "freeze"}, freeze=parse_freeze(freeze)
    )
    if cfg.cache_dir is not None:
        cfg.cache_dir = str(cfg.cache_dir)
    return cfg


def train_classifier(
    data,
    out,
    *,
    arch="vgg16",
    weights=None,
    input_size=128,
    pooling="gap",
    head="gap-linear",
    normalize="imagenet",
    resume=False,
    limit_per_class=None,
    log=print,
    **recipe,
) -> list[dict]:
    """Fine-tune on the ImageFolder tree ``data`` into the run folder ``out`` (``recipe``: the
    TrainConfig fields, ``freeze`` as text); the per-epoch metrics."""
    from .data import load_split  # lazy: keeps the command line's start light
    from .train import fit, prepare_model  # lazy: keeps the command line's start light

    recipe.setdefault("val_fraction", 0.2)
    recipe.setdefault("seed", 0)
    recipe.setdefault("dropout", 0.5)
    split = load_split(data, recipe["val_fraction"], recipe["seed"], limit_per_class)
    mean = std = None
    if normalize == "data":
        from .data import channel_stats  # lazy: keeps the command line's start light

        m, s, _ = channel_stats([f for f, _ in split.train], input_size)
        mean, std = tuple(float(v) for v in m), tuple(float(v) for v in s)
    spec, net = prepare_model(
        arch, weights, input_size, pooling, head, split.classes, recipe["dropout"], mean, std
    )
    cfg = train_config(recipe, recipe.get("freeze", "all"))
    cfg.extra = {
        "data": str(Path(data).resolve()),
        "val_fraction": recipe["val_fraction"],
        "seed": recipe["seed"],
    }
    return fit_logged(fit, net, spec, split, out, cfg, resume, log, "images")


def fit_logged(fit, net, spec, split, out, cfg, resume, log, what: str) -> list[dict]:
    """``fit(net, spec, split, out, cfg, ...)`` (image or video) between a line saying what it trains
    on and one with its time and best top-1; the per-epoch metrics."""
    log(
        f"{len(split.train)} train / {len(split.val)} val {what}, {len(split.classes)} classes; {spec.describe()}"
    )
    t = time.perf_counter()
    rows = fit(net, spec, split, Path(out), cfg, resume=resume, log=log)
    best = max((r["val_top1"] for r in rows), default=float("nan"))
    log(f"done in {time.perf_counter() - t:.1f} s: best val top-1 {best:.4f}; {Path(out) / 'best.pt'}")
    return rows


def load_classifier_checkpoint(path):
    """(spec, net, checkpoint dict) of a checkpoint with a classifier head; UserError otherwise."""
    from retrieval.nets.weights import torch_load  # lazy: keeps the command line's start light

    from .train import load_checkpoint_model  # lazy: keeps the command line's start light

    if not Path(path).is_file():
        raise UserError(f"checkpoint not found: {path}")
    obj = torch_load(path, "checkpoint")
    spec, net = load_checkpoint_model(path)
    if net.head is None:
        raise UserError(f"{path} has no classifier head: train one first (vgg-retrieval train)")
    return spec, net, obj
