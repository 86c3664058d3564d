"""Fine-tuning a classifier on an ImageFolder tree: data and augmentation (``data``), the settings
(``config``), the shared recipe (``recipe``), the loop (``train``), and the steps the CLI calls
(``pipeline``). Needs torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.lazy import lazy_names

if TYPE_CHECKING:  # for readers and type checkers; at run time each name loads on first use
    from .config import TrainConfig
    from .data import IMAGE_EXTS, channel_stats, labelled_split, load_split
    from .pipeline import (
        DEFAULT_CACHE,
        dataset_stats,
        fit_logged,
        load_classifier_checkpoint,
        train_classifier,
    )
    from .train import fit, load_checkpoint_model, prepare_model

_NAMES = {
    "TrainConfig": ".config",
    "fit": ".train",
    "load_checkpoint_model": ".train",
    "prepare_model": ".train",
    "train_classifier": ".pipeline",
    "dataset_stats": ".pipeline",
    "load_classifier_checkpoint": ".pipeline",
    "fit_logged": ".pipeline",
    "DEFAULT_CACHE": ".pipeline",
    "IMAGE_EXTS": ".data",
    "load_split": ".data",
    "labelled_split": ".data",
    "channel_stats": ".data",
}
__getattr__ = lazy_names(__name__, _NAMES)
__all__ = [
    "DEFAULT_CACHE",
    "IMAGE_EXTS",
    "TrainConfig",
    "channel_stats",
    "dataset_stats",
    "fit",
    "fit_logged",
    "labelled_split",
    "load_checkpoint_model",
    "load_classifier_checkpoint",
    "load_split",
    "prepare_model",
    "train_classifier",
]
