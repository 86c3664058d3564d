"""Video classification on the VGG trunk: ``VGG3D`` and ``VGGLSTM`` (``models``), labelled clip
folders (``clips``), training (``train``), synthetic clips for tests (``synth``), and the steps
``train-video`` / ``classify-video`` call (``pipeline``). See docs/video-models.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.lazy import lazy_names

if TYPE_CHECKING:  # for readers and type checkers; at run time each name loads on first use
    from .choices import FITS, MODELS, RNNS, SAMPLINGS, TIME_PADDINGS
    from .pipeline import VideoJob, classify_clips, train_video_classifier

_NAMES = {
    "MODELS": ".choices",
    "RNNS": ".choices",
    "TIME_PADDINGS": ".choices",
    "FITS": ".choices",
    "SAMPLINGS": ".choices",
    "train_video_classifier": ".pipeline",
    "classify_clips": ".pipeline",
    "VideoJob": ".pipeline",
}
__getattr__ = lazy_names(__name__, _NAMES)
__all__ = [
    "FITS",
    "MODELS",
    "RNNS",
    "SAMPLINGS",
    "TIME_PADDINGS",
    "VideoJob",
    "classify_clips",
    "train_video_classifier",
]
