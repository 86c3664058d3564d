"""The one interface every inference engine implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable

import numpy as np

from ..preprocess import load_and_prepare
from ..spec import ModelSpec


class Embedder(ABC):
    """Turns prepared images into L2-normalised descriptors.

    ``embed_batch`` takes what ``retrieval.preprocess.prepare`` makes, stacked: ``images`` uint8
    ``[N, S, S, 3]`` and ``sizes`` int64 ``[N, 2]`` (valid height, width); it returns float32
    ``[N, spec.descriptor_dim]`` with unit rows.
    """

    name: str = "?"

    def __init__(self, spec: ModelSpec, batch_size: int = 8):
        self.spec = spec
        self.batch_size = int(batch_size)

    @abstractmethod
    def _run(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """One forward pass over at most ``batch_size`` images."""

    def embed_batch(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        sizes = np.ascontiguousarray(sizes, dtype=np.int64)
        s = self.spec.input_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3) or sizes.shape != (len(images), 2):
            raise ValueError(f"expected images [N,{s},{s},3] and sizes [N,2], got {images.shape} and {sizes.shape}")
        out = [self._run(images[i:i + self.batch_size], sizes[i:i + self.batch_size])
               for i in range(0, len(images), self.batch_size)]
        if not out:
            return np.zeros((0, self.spec.descriptor_dim), np.float32)
        return np.ascontiguousarray(np.concatenate(out).astype(np.float32, copy=False))

    def embed(self, sources: Iterable) -> np.ndarray:
        """Descriptors of images given as paths, bytes, file objects or PIL images."""
        prepared = [load_and_prepare(src, self.spec.input_size) for src in sources]
        if not prepared:
            return np.zeros((0, self.spec.descriptor_dim), np.float32)
        return self.embed_batch(np.stack([p.array for p in prepared]),
                                np.array([p.valid for p in prepared], dtype=np.int64))

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec.describe()}>"
