"""What distillation trains on: the photos (``photo_paths``), their plain and augmented views in
batches by shape (``_Views``), and the teacher's targets, cached on disk between runs (``_TeacherCache``)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.errors import UserError
from retrieval.preprocess import load_and_prepare, open_image, shape_groups, trim_prepared
from retrieval.training.data import IMAGE_EXTS, Augment

from .defaults import EPOCHS


@dataclass
class DistillConfig:
    size: int = 160  # augmented views are size x size; plain views take the spec's input size and policy
    epochs: int = EPOCHS  # gradient epochs after the refit (docs/model-pipeline.md: why 2)
    batch_size: int = 16
    lr: float = 1e-4  # Adam
    plain_views: bool = True  # each photo once per epoch as search sees it
    augmented_views: int = 1  # augmented views of each photo per epoch
    augment: Augment = field(
        default_factory=lambda: Augment(hflip=0.5, crop_scale=(0.35, 1.0), jitter=0.2, rotation=10.0)
    )
    map_weight: float = 0.0  # weight of the conv5 cell-direction loss (teacher-run views only)
    reconstruct_images: int = 256  # photos for the closed-form layer refit (0: skip that stage); ~3.3 GB
    # of fp16 activations for VGG16 at 256 x 224 px. None: the model's own input size (measured: a
    # refit at 160 px lost 0.02 mAP more at 224 than at 160, benchmarks/prune_distill.py).
    reconstruct_size: int | None = None
    reconstruct_ridge: float = 1e-2
    threads: int | None = None
    seed: int = 0
    cache_dir: str | None = None  # teacher descriptors of augmented views
    limit: int | None = None  # use at most this many photos (a seeded sample)


def photo_paths(folders, limit: int | None = None, seed: int = 0) -> list[str]:
    """Every image under ``folders`` (recursively; no class folders needed), sorted, or a seeded
    sample of ``limit`` of them."""
    out = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"photo folder not found: {folder}")
        out += [str(p) for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_EXTS and p.is_file()]
    if not out:
        raise UserError(f"no images in {', '.join(str(f) for f in folders)}")
    if limit and len(out) > limit:
        out = sorted(random.Random(seed).sample(out, limit))
    return out


def plain_view(path, geom, trim: bool):
    """(uint8 array, valid (h, w)) of the photo at ``path`` exactly as an index of a model with input
    ``geom`` embeds it: ``load_and_prepare`` (draft decoding included), then the engines' border
    trimming (``trim_prepared``) when the spec trims."""

    p = load_and_prepare(path, geom)
    return trim_prepared(p.array, p.valid, geom) if trim else (p.array, p.valid)


class _Views:
    """View ``j`` of photo ``i`` for one epoch: j = 0 plain (the model's input ``geometry``, as search
    sees the photo: a padded square or its bucket, borders trimmed as the spec says), j >= 1
    augmented (a ``size`` square, seeded by seed/epoch/i/j)."""

    def __init__(self, paths, size: int, augment: Augment, trim: bool, seed: int, geometry=None):
        self.paths, self.size, self.trim, self.seed = paths, size, trim, seed
        self.geometry = size if geometry is None else geometry
        self.tf = augment.transform(size)

    def load(self, i: int, j: int, epoch: int):
        import torch

        if j == 0:
            return plain_view(self.paths[i], self.geometry, self.trim)
        im = open_image(self.paths[i], draft_size=self.size * 2)
        with torch.random.fork_rng():  # seeded views; the caller's RNG is left alone
            torch.manual_seed(hash((self.seed, epoch, i, j)) & 0x7FFFFFFF)
            a = np.asarray(self.tf(im.convert("RGB")), dtype=np.uint8)
        return np.ascontiguousarray(a), (self.size, self.size)

    def batch(self, keys, epoch: int) -> list[tuple]:  # (positions, images, valid) per shape
        """The views of ``keys`` as (positions in ``keys``, uint8 [B, H, W, 3], valid [B, 2]) per shape."""
        import torch

        got = [self.load(i, j, epoch) for i, j in keys]
        return [
            (
                g,
                torch.from_numpy(np.stack([got[n][0] for n in g])),
                torch.tensor([got[n][1] for n in g], dtype=torch.int64),
            )
            for g in shape_groups([a for a, _ in got])
        ]


class _TeacherCache:
    """Teacher descriptors of views, in memory and (with ``cache_dir``) on disk, one file per
    (teacher, size, seed, augmentation)."""

    def __init__(self, cache_dir, teacher_id: str, cfg: DistillConfig):
        import torch

        self.mem: dict[str, torch.Tensor] = {}
        self.path = None
        if cache_dir is not None:
            tag = hashlib.sha256(f"{teacher_id}|{cfg.size}|{cfg.seed}|{cfg.augment}".encode()).hexdigest()[
                :20
            ]
            self.path = Path(cache_dir) / f"distill-teacher-{tag}.pt"
            if self.path.exists():
                self.mem = torch.load(self.path, weights_only=True)
        self.dirty = False

    def save(self) -> None:
        import torch

        if self.path is not None and self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            torch.save(self.mem, tmp)
            tmp.replace(self.path)
            self.dirty = False
