"""Descriptor arithmetic shared by the engines and the index."""

from __future__ import annotations

import numpy as np


def unit_rows(x, dtype=np.float32) -> np.ndarray:
    """``x`` ([..., d]) with every row scaled to unit L2 length, as a contiguous ``dtype`` array; a
    zero row stays zero. Exact FP32 graphs already give unit rows (a no-op up to float rounding);
    INT8 graphs (NNCF) can be off by a few percent, and sums (query expansion) and projections
    (whitening) are not unit at all."""
    x = np.ascontiguousarray(x, dtype=dtype)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), x.dtype.type(1e-12))
