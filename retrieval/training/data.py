"""Datasets for fine-tuning: ImageFolder trees, splits, channel statistics, cached trunk features.

A dataset folder is either ``DATA/train/<class>/*`` + ``DATA/val/<class>/*``, or ``DATA/<class>/*``
split 80/20 per class with a fixed seed. Evaluation images go through the same input policy as
search (``retrieval.preprocess``: longer side resized, zero padded, valid size kept); training images
are augmented (random resized crop, flip, colour jitter, rotation) to a full ``S x S`` square.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.errors import UserError
from retrieval.nets.weights import fingerprint
from retrieval.preprocess import load_and_prepare, open_image, target_size

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass
class Split:
    classes: tuple[str, ...]
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def load_split(root, val_fraction: float = 0.2, seed: int = 0, limit_per_class: int | None = None) -> Split:
    """The train/val lists of ``root`` (see module doc); ``limit_per_class`` keeps the first n of
    each class (after shuffling, so small subsets stay representative)."""
    return labelled_split(
        root,
        _images,
        val_fraction,
        seed,
        limit_per_class,
        "dataset folder",
        "needs at least two class folders with images (ImageFolder layout)",
        min_val=1,
    )


def labelled_split(
    root,
    members,
    val_fraction: float,
    seed: int,
    limit_per_class: int | None,
    what: str,
    needs: str,
    min_val: int,
) -> Split:
    """``(path, label)`` lists of a class-folder tree: ``root/train`` + ``root/val`` when both exist,
    else ``root/<class>`` split per class with ``seed`` (at least ``min_val`` val items per class of
    two or more). ``members(folder)`` lists one class's items (images, clips...); ``what``/``needs``
    word the errors."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{what} not found: {root}")
    rng = random.Random(seed)
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = tuple(d.name for d in class_dirs(root / "train"))
        idx = {c: i for i, c in enumerate(classes)}
        train = [(str(p), idx[c]) for c in classes for p in members(root / "train" / c)]
        val = [(str(p), idx[d.name]) for d in class_dirs(root / "val") if d.name in idx for p in members(d)]
        if limit_per_class:
            train = _limit(train, limit_per_class, rng)
            val = _limit(val, max(1, limit_per_class // 4), rng)
    else:
        classes = tuple(d.name for d in class_dirs(root))
        train, val = [], []
        for i, c in enumerate(classes):
            files = [str(p) for p in members(root / c)]
            rng.shuffle(files)
            if limit_per_class:
                files = files[:limit_per_class]
            n_val = max(min_val, round(len(files) * val_fraction)) if len(files) > 1 else 0
            val += [(f, i) for f in files[:n_val]]
            train += [(f, i) for f in files[n_val:]]
    if len(classes) < 2 or not train:
        raise UserError(f"{root} {needs}")
    return Split(classes, train, val)


def _limit(items, n, rng):
    by = {}
    for f, y in items:
        by.setdefault(y, []).append((f, y))
    out = []
    for y in sorted(by):
        rng.shuffle(by[y])
        out += by[y][:n]
    return out


def channel_stats(paths, size: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact per-channel mean and std (population) of pixel values in [0, 1], pooled over every pixel
    of every image, streaming: integer sums, one image in memory at a time. ``size`` resizes first
    (as the model input policy does) when given. Returns (mean[3], std[3], pixel count)."""

    s1 = np.zeros(3, dtype=np.int64)  # exact: uint8 sums fit int64 for any realistic dataset
    s2 = np.zeros(3, dtype=np.int64)
    n = 0
    for p in paths:
        im = open_image(p)
        if size:
            im = im.resize(target_size(im.width, im.height, size), resample=3)
        a = np.asarray(im, dtype=np.uint8).reshape(-1, 3).astype(np.int64)
        s1 += a.sum(0)
        s2 += (a * a).sum(0)
        n += a.shape[0]
    if n == 0:
        raise UserError("no pixels: the dataset has no readable images")
    mean = s1 / n
    var = (s2 - s1.astype(np.float64) * s1 / n) / n  # integer-exact sums, one float division
    return mean / 255.0, np.sqrt(np.maximum(var, 0.0)) / 255.0, n


@dataclass
class Augment:
    hflip: float = 0.5
    crop_scale: tuple[float, float] = (0.5, 1.0)
    jitter: float = 0.2
    rotation: float = 15.0

    def transform(self, size: int):
        from torchvision import transforms as T

        ops = [T.RandomResizedCrop(size, scale=self.crop_scale, antialias=True)]
        if self.hflip > 0:
            ops.append(T.RandomHorizontalFlip(self.hflip))
        if self.jitter > 0:
            ops.append(T.ColorJitter(self.jitter, self.jitter, self.jitter))
        if self.rotation > 0:
            ops.append(T.RandomRotation(self.rotation))
        return T.Compose(ops)


class ImageDataset:
    """(uint8 [S,S,3] tensor, valid (h, w) int64 tensor, label) per item; torch Dataset protocol."""

    def __init__(self, items, size: int, augment: Augment | None = None):
        self.items = list(items)
        self.size = size
        self.tf = augment.transform(size) if augment else None

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        import torch

        path, label = self.items[i]
        if self.tf is None:
            p = load_and_prepare(path, self.size)
            return (
                torch.from_numpy(np.ascontiguousarray(p.array)),
                torch.tensor(p.valid, dtype=torch.int64),
                label,
            )
        im = self.tf(open_image(path))
        a = np.asarray(im, dtype=np.uint8)
        return torch.from_numpy(a.copy()), torch.tensor([self.size, self.size], dtype=torch.int64), label


def loader(dataset, batch_size: int, shuffle: bool, workers: int = 0, seed: int = 0):
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=g,
        persistent_workers=workers > 0,
    )


# ---- cached features of a frozen trunk prefix ----


def cache_key(prefix_state: dict, items, size: int, layer: int, tag: str) -> str:

    h = hashlib.sha256()
    h.update(fingerprint(prefix_state).encode())
    h.update(f"|{size}|{layer}|{tag}|".encode())
    for f, y in items:
        h.update(f"{f}:{y};".encode())
    return h.hexdigest()[:20]


def compute_features(
    net, layer: int, items, size: int, batch_size: int = 32, cache_dir=None, tag: str = "eval", progress=None
):
    """(features fp16 tensor [N, C, h, w], sizes [N, 2], labels [N]): the output of
    ``net.features[:layer]`` over ``items`` (eval input policy), read from / written to
    ``cache_dir`` when given. The net's prefix must be frozen for this to be valid."""
    import torch

    prefix = net.features[:layer]
    path = None
    if cache_dir is not None:
        state = {f"features.{k}": v for k, v in prefix.state_dict().items()}
        key = cache_key(state, items, size, layer, tag)
        path = Path(cache_dir) / f"feat-{key}.pt"
        if path.exists():
            d = torch.load(path, weights_only=True)
            return d["features"], d["sizes"], d["labels"]
    ds = ImageDataset(items, size)
    feats, sizes, labels = [], [], []
    was_training = net.training
    net.eval()
    done = 0
    with torch.inference_mode():
        for x, s, y in loader(ds, batch_size, shuffle=False, workers=1 if len(ds) > 64 else 0):
            feats.append(prefix(net.prepare(x, s)).to(torch.float16))
            sizes.append(s)
            labels.append(torch.as_tensor(y))
            done += len(x)
            if progress:
                progress(done, len(ds))
    net.train(was_training)
    out = (torch.cat(feats), torch.cat(sizes), torch.cat(labels))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"features": out[0], "sizes": out[1], "labels": out[2]}, tmp)
        tmp.replace(path)
    return out
