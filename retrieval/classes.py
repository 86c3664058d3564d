"""Class probabilities from a classifier's scores: one softmax + top-k for the CLI, the API and the UI."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .preprocess import load_and_prepare


def softmax(logits) -> np.ndarray:
    """Row-wise probabilities of [N, C] (or [C]) scores, computed stably in float64."""
    z = np.atleast_2d(np.asarray(logits, dtype=np.float64))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def top_classes(logits, names: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Per row of [N, C] scores (a single [C] row is one image), the ``k`` most likely
    ``(class name, probability)`` pairs, most likely first."""
    p = softmax(logits)
    return [[(str(names[j]), float(row[j])) for j in np.argsort(-row, kind="stable")[:k]] for row in p]


def top_classes_of_files(embedder, sources, k: int = 5):
    """Per image file/bytes/PIL image, the top-k (class, probability) of ``embedder``'s classifier
    (one forward pass gives descriptors and logits); None without a classifier or class names."""

    names = tuple(embedder.spec.class_names)
    if not names or not getattr(embedder, "has_logits", False):
        return None
    prep = [load_and_prepare(s, embedder.spec.input_geometry) for s in sources]
    logits = embedder.logits_batch(
        [p.array for p in prep], np.array([p.valid for p in prep], np.int64).reshape(-1, 2)
    )
    return top_classes(logits, names, k)
