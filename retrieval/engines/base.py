"""The one interface every inference engine implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterable, Iterator

import numpy as np

from retrieval.descriptors import unit_rows
from retrieval.preprocess import into_bucket, load_and_prepare, shape_groups, trim_prepared
from retrieval.spec import ModelSpec


class Embedder(ABC):
    """Turns prepared images into L2-normalised descriptors.

    ``embed_batch`` takes what ``retrieval.preprocess.prepare`` makes, stacked: ``images`` uint8
    ``[N, S, S, 3]`` and ``sizes`` int64 ``[N, 2]`` (valid height, width); it returns float32
    ``[N, spec.descriptor_dim]`` with unit rows. With the "buckets" input policy the images come in a
    few shapes (``spec.input_shapes()``): pass a list of ``(H, W, 3)`` arrays (or ``embed_prepared``
    the ``Prepared`` list); images are grouped by shape for the forward passes, the output keeps
    their order.
    """

    name: str = "?"

    def __init__(self, spec: ModelSpec, batch_size: int = 8):
        self.spec = spec
        self.batch_size = int(batch_size)
        self._shapes = frozenset(spec.input_shapes())

    @abstractmethod
    def _run(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """One forward pass over at most ``batch_size`` images of one shape."""

    def _checked(self, images, sizes) -> tuple[np.ndarray | list, np.ndarray]:
        """(images: one [N,H,W,3] array, or a list of [H,W,3] arrays, uint8; sizes [N,2] int64),
        every shape one the spec's input policy makes."""
        sizes = np.ascontiguousarray(sizes, dtype=np.int64)
        if isinstance(images, np.ndarray):
            images = np.ascontiguousarray(images, dtype=np.uint8)
            shapes = {tuple(images.shape[1:])}
        else:
            images = [np.ascontiguousarray(a, dtype=np.uint8) for a in images]
            shapes = {a.shape for a in images}
        if sizes.shape != (len(images), 2) or any(
            len(x) != 3 or x[2] != 3 or x[:2] not in self._shapes for x in shapes
        ):
            got = images.shape if isinstance(images, np.ndarray) else sorted(shapes)
            want = " or ".join(f"[N,{h},{w},3]" for h, w in sorted(self._shapes))
            raise ValueError(f"expected images {want} and sizes [N,2], got {got} and {sizes.shape}")
        return images, sizes

    def _input_policy(self, images, sizes):
        """The spec's input steps on top of ``prepare``, the same for every engine: with
        ``spec.trim_borders``, uniform border bands are cut off and the picture is resized back to
        the full input (``retrieval.preprocess.trim_prepared``; buckets: into the bucket of its new
        aspect, so a list of arrays comes back). With buckets, a picture not in its own bucket (one
        prepared for the square policy) is moved there (``retrieval.preprocess.into_bucket``). The
        caller's arrays are not changed."""
        buckets = self.spec.input_geometry if self.spec.input_policy == "buckets" else None
        if not self.spec.trim_borders and buckets is None:
            return images, sizes
        out_i, out_s = images, sizes
        for n in range(len(images)):
            img = images[n]
            if self.spec.trim_borders:
                a, v = trim_prepared(img, sizes[n], self.spec.input_geometry)
            else:
                a, v = img, sizes[n]
            if buckets is not None and a is img:
                a, v = into_bucket(img, sizes[n], buckets)
            if a is not img:
                if out_i is images:
                    out_i, out_s = list(images), sizes.copy()
                out_i[n], out_s[n] = a, v
        return out_i, out_s

    def _shape_chunks(self, images, sizes) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray | None]:
        """(chunks, inverse): ``(images [n,H,W,3], sizes [n,2])`` of at most ``batch_size`` images of one
        shape, and the permutation that puts their concatenated outputs back in the images' order
        (None: they are in order already)."""
        if isinstance(images, np.ndarray):  # one shape: batches in order, no copies
            return [
                (images[i : i + self.batch_size], sizes[i : i + self.batch_size])
                for i in range(0, len(images), self.batch_size)
            ], None
        order, chunks = [], []
        for idx in shape_groups(images):
            for i in range(0, len(idx), self.batch_size):
                chunk = idx[i : i + self.batch_size]
                chunks.append((np.stack([images[j] for j in chunk]), sizes[chunk]))
                order.extend(chunk)
        return chunks, np.argsort(np.array(order), kind="stable") if order else None

    @staticmethod
    def _joined(parts: list[tuple], inverse: np.ndarray | None) -> list[np.ndarray]:
        """The outputs of ``_shape_chunks``' chunks (a tuple of arrays each), concatenated in image order."""
        if not parts:
            return []
        out = [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
        return out if inverse is None else [o[inverse] for o in out]

    def _by_shape(self, images, sizes, run) -> list[np.ndarray]:
        """``run(batch, sizes)`` (a tuple of [n, ...] arrays) over batches of at most ``batch_size``
        images of one shape; the outputs concatenated back in the images' order."""
        chunks, inverse = self._shape_chunks(images, sizes)
        return self._joined([run(i, s) for i, s in chunks], inverse)

    def prepare_batch(self, images, sizes: np.ndarray) -> tuple:
        """A batch checked and through the spec's input steps (trimming, buckets), for
        ``embed_batch``/``embed_stream`` with ``ready=True``: a pipeline can do this beside inference."""
        return self._input_policy(*self._checked(images, sizes))

    def embed_batch(self, images, sizes: np.ndarray, ready: bool = False) -> np.ndarray:
        if not ready:
            images, sizes = self.prepare_batch(images, sizes)
        out = self._by_shape(images, sizes, lambda i, s: (self._run(i, s),))
        if not out:
            return np.zeros((0, self.spec.descriptor_dim), np.float32)
        return unit_rows(out[0])

    def embed_stream(self, batches: Iterable[tuple], ready: bool = False) -> Iterator[np.ndarray]:
        """The descriptors of each ``(images, sizes)`` of ``batches`` (what ``embed_batch`` takes, or
        with ``ready`` what ``prepare_batch`` gives), in order. An engine may keep several batches in
        flight (OpenVINO's throughput mode), taking the next batches from ``batches`` before it
        yields the first one's descriptors."""
        for images, sizes in batches:
            yield self.embed_batch(images, sizes, ready=ready)

    def embed_prepared(self, prepared) -> np.ndarray:
        """Descriptors of ``retrieval.preprocess.Prepared`` items (of any of the spec's input
        shapes), in their order."""
        prepared = list(prepared)
        return self.embed_batch(
            [p.array for p in prepared], np.array([p.valid for p in prepared], dtype=np.int64).reshape(-1, 2)
        )

    # ---- classification (models exported with a classifier head) ----
    has_logits: bool = False

    def _run_both(self, images: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def embed_with_logits(
        self, images: np.ndarray, sizes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(descriptors, logits) from one forward pass; logits is None when the model has no head."""
        if not self.has_logits:
            return self.embed_batch(images, sizes), None
        images, sizes = self._input_policy(*self._checked(images, sizes))
        out = self._by_shape(images, sizes, self._run_both)
        if not out:
            return (
                np.zeros((0, self.spec.descriptor_dim), np.float32),
                np.zeros((0, len(self.spec.class_names)), np.float32),
            )
        return unit_rows(out[0]), out[1].astype(np.float32, copy=False)

    def logits_batch(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Class scores ``[N, len(spec.class_names)]``; ValueError when the model has no classifier."""
        if not self.has_logits:
            raise ValueError("this model has no classifier head (no logits output)")
        return self.embed_with_logits(images, sizes)[1]

    def embed(self, sources: Iterable) -> np.ndarray:
        """Descriptors of images given as paths, bytes, file objects or PIL images."""
        return self.embed_prepared([load_and_prepare(src, self.spec.input_geometry) for src in sources])

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec.describe()}>"
