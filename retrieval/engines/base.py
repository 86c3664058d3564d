"""The one interface every inference engine implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable

import numpy as np

from ..preprocess import load_and_prepare, trim_prepared
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

    def _checked(self, images: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        sizes = np.ascontiguousarray(sizes, dtype=np.int64)
        s = self.spec.input_size
        if images.ndim != 4 or images.shape[1:] != (s, s, 3) or sizes.shape != (len(images), 2):
            raise ValueError(f"expected images [N,{s},{s},3] and sizes [N,2], got {images.shape} and {sizes.shape}")
        return images, sizes

    def _input_policy(self, images: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The spec's input steps on top of ``prepare``, the same for every engine: with
        ``spec.trim_borders``, uniform border bands are cut off and the picture is resized back to
        the full input (``retrieval.preprocess.trim_prepared``). The caller's arrays are not changed."""
        if not self.spec.trim_borders:
            return images, sizes
        out_i, out_s = images, sizes
        for n in range(len(images)):
            img = images[n]
            a, v = trim_prepared(img, sizes[n], self.spec.input_size)
            if a is not img:
                if out_i is images:
                    out_i, out_s = images.copy(), sizes.copy()
                out_i[n], out_s[n] = a, v
        return out_i, out_s

    def embed_batch(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        images, sizes = self._input_policy(*self._checked(images, sizes))
        out = [self._run(images[i:i + self.batch_size], sizes[i:i + self.batch_size])
               for i in range(0, len(images), self.batch_size)]
        if not out:
            return np.zeros((0, self.spec.descriptor_dim), np.float32)
        return _unit_rows(np.concatenate(out))

    # ---- classification (models exported with a classifier head) ----
    has_logits: bool = False

    def _run_both(self, images: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def embed_with_logits(self, images: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(descriptors, logits) from one forward pass; logits is None when the model has no head."""
        if not self.has_logits:
            return self.embed_batch(images, sizes), None
        images, sizes = self._input_policy(*self._checked(images, sizes))
        parts = [self._run_both(images[i:i + self.batch_size], sizes[i:i + self.batch_size])
                 for i in range(0, len(images), self.batch_size)]
        if not parts:
            return (np.zeros((0, self.spec.descriptor_dim), np.float32),
                    np.zeros((0, len(self.spec.class_names)), np.float32))
        return (_unit_rows(np.concatenate([p[0] for p in parts])),
                np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False))

    def logits_batch(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Class scores ``[N, len(spec.class_names)]``; ValueError when the model has no classifier."""
        if not self.has_logits:
            raise ValueError("this model has no classifier head (no logits output)")
        return self.embed_with_logits(images, sizes)[1]

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


def _unit_rows(d: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length again: exact FP32 graphs already give them (a no-op up to float
    rounding), INT8 graphs (NNCF) can be off by a few percent."""
    d = np.ascontiguousarray(d, dtype=np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), np.float32(1e-12))
