"""vgg-retrieval's model side: descriptor networks (``nets``), engines that run them (``engines``),
training and compression (``training``, ``compress``), search by words (``text``), video
classification (``video``); shared here: the model spec, preprocessing, class ranking and errors."""

from .classes import softmax, top_classes
from .errors import ModelMismatchError, UserError, one_line
from .preprocess import DEFAULT_MAX_PIXELS, ImageError, draft_side, load_and_prepare, open_image
from .spec import (
    ARCHS,
    DEFAULT_INPUT_POLICY,
    DEFAULT_INPUT_SIZE,
    DEFAULT_POOLING,
    DEFAULT_SCALES,
    INPUT_POLICIES,
    POOLINGS,
    ModelSpec,
)
from .torch_extra import missing_torch

__all__ = [
    "ModelSpec",
    "UserError",
    "ModelMismatchError",
    "one_line",
    "ImageError",
    "draft_side",
    "load_and_prepare",
    "open_image",
    "DEFAULT_MAX_PIXELS",
    "softmax",
    "top_classes",
    "ARCHS",
    "DEFAULT_INPUT_POLICY",
    "DEFAULT_INPUT_SIZE",
    "DEFAULT_POOLING",
    "DEFAULT_SCALES",
    "INPUT_POLICIES",
    "POOLINGS",
    "missing_torch",
]
