"""Labelled clip folders: listing, seeded splits, frame sampling and the clip input policy.

More: docs/design-notes.md (``retrieval.video.clips``)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.errors import UserError
from retrieval.preprocess import ImageError, open_image
from retrieval.training.data import IMAGE_EXTS, Split, labelled_split

VIDEO_EXTS = {".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv"}


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def frame_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
        key=_natural_key,
    )


def is_clip(p: Path) -> bool:
    if p.name.startswith("."):
        return False
    if p.is_dir():
        return any(c.suffix.lower() in IMAGE_EXTS for c in p.iterdir() if c.is_file())
    return p.is_file() and p.suffix.lower() in VIDEO_EXTS


def clips_in(class_dir: Path) -> list[Path]:
    return sorted((p for p in Path(class_dir).iterdir() if is_clip(p)), key=_natural_key)


def load_clip_split(
    root, val_fraction: float = 0.2, seed: int = 0, limit_per_class: int | None = None
) -> Split:
    """Train/val lists of ``(clip path, label)`` (see module doc)."""
    return labelled_split(
        root,
        clips_in,
        val_fraction,
        seed,
        limit_per_class,
        "clip folder",
        "needs at least two class folders holding clips (video files or folders of frames)",
        min_val=1 if val_fraction > 0 else 0,
    )


# ---- sampling ----


def sample_indices(
    n: int,
    frames: int,
    sampling: str = "uniform",
    stride: int = 2,
    fixed: bool = True,
    rng: random.Random | None = None,
) -> list[int]:
    """Frame indices of a clip of ``n`` frames (see module doc); ``fixed``: always ``frames`` of them."""
    if n <= 0:
        return []
    if sampling == "stride":
        span = (frames - 1) * stride + 1
        if n >= span:
            start = rng.randint(0, n - span) if rng else (n - span) // 2
            return [start + i * stride for i in range(frames)]
        if not fixed:
            return list(range(0, n, stride))[:frames]
        # too short for the window: fall back to uniform stretching
    if not fixed and n <= frames:
        return list(range(n))
    out = []
    for i in range(frames):
        lo, hi = (i * n) // frames, ((i + 1) * n) // frames
        if rng is not None and hi > lo:
            out.append(rng.randrange(lo, hi))
        else:
            out.append(min(n - 1, int((i + 0.5) * n / frames)))
    return out


# ---- reading ----


@dataclass
class Fit:
    """How frames become ``size x size``: crop box fractions (``x0, y0, side`` of the short side) or pad."""

    size: int
    mode: str = "crop"
    x0: float = 0.5  # where the crop square sits in the free space, 0..1
    y0: float = 0.5
    side: float = 1.0  # crop square side / short side

    def apply(self, im) -> tuple[np.ndarray, tuple[int, int]]:
        from PIL import Image

        s = self.size
        w, h = im.size
        if self.mode == "pad":
            scale = s / max(w, h)
            tw, th = max(1, min(s, round(w * scale))), max(1, min(s, round(h * scale)))
            canvas = np.zeros((s, s, 3), np.uint8)
            canvas[:th, :tw] = np.asarray(im.resize((tw, th), Image.BILINEAR, reducing_gap=2.0))
            return canvas, (th, tw)
        side = max(1, round(min(w, h) * self.side))
        left = round((w - side) * self.x0)
        top = round((h - side) * self.y0)
        out = im.resize((s, s), Image.BILINEAR, box=(left, top, left + side, top + side), reducing_gap=2.0)
        return np.asarray(out, dtype=np.uint8), (s, s)


def _reason(e: Exception) -> str:
    text = (str(e).strip().splitlines() or [""])[0] or type(e).__name__
    return text[:200]


def _read_frame_folder(folder: Path, pick, fit: Fit):

    files = frame_files(folder)
    if not files:
        raise UserError(f"cannot read clip {folder}: no frame images in the folder")
    idx = pick(len(files))
    cache: dict[int, tuple] = {}
    out, valid = [], (fit.size, fit.size)
    for i in idx:
        if i not in cache:
            try:
                cache[i] = fit.apply(open_image(files[i]))
            except ImageError as e:
                raise UserError(f"cannot read clip frame {files[i]}: {e}") from None
            except OSError as e:
                raise UserError(f"cannot read clip frame {files[i]}: {_reason(e)}") from None
        a, valid = cache[i]
        out.append(a)
    return out, valid, len(files)


def _read_video(path: Path, pick, fit: Fit):
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"cannot read clip {path}: {_reason(e)}") from None
    try:
        with container:
            if not container.streams.video:
                raise UserError(f"cannot read clip {path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            n = int(stream.frames or 0)
            if n <= 0 and stream.duration and stream.average_rate:  # container without a frame count
                n = int(round(float(stream.duration * stream.time_base) * float(stream.average_rate)))
            wanted = pick(n) if n > 0 else None
            kept: dict[int, tuple] = {}
            all_frames: list[tuple] = []
            last = max(wanted) if wanted else None
            wanted_set = set(wanted or ())
            count = 0
            for i, frame in enumerate(container.decode(stream)):
                count = i + 1
                if wanted is None:
                    all_frames.append(fit.apply(frame.to_image()))
                elif i in wanted_set:
                    kept[i] = fit.apply(frame.to_image())
                if last is not None and i >= last:
                    break
    except UserError:
        raise
    except (av.FFmpegError, OSError, ValueError, RuntimeError, MemoryError) as e:
        raise UserError(f"cannot read clip {path}: {_reason(e)}") from None
    if count == 0:
        raise UserError(f"cannot read clip {path}: no decodable video frames")
    if wanted is None:  # frame count unknown: everything was decoded
        wanted = pick(count)
        kept = dict(enumerate(all_frames))
    elif count <= last:  # the container overstated its length: re-pick within what decoded
        have = sorted(kept)
        if not have:
            raise UserError(f"cannot read clip {path}: no decodable video frames")
        wanted = [max((k for k in have if k <= i), default=have[0]) for i in wanted]
    out = [kept[i][0] for i in wanted]
    return out, kept[wanted[0]][1], count


def read_clip(
    path,
    frames: int,
    size: int,
    fit: str = "crop",
    sampling: str = "uniform",
    stride: int = 2,
    fixed: bool = True,
    rng: random.Random | None = None,
    crop_scale: tuple | None = None,
):
    """(uint8 [T, size, size, 3], valid (h, w), frames in the clip) for one clip.

    ``rng`` makes the sampling and, with ``crop_scale`` and the ``crop`` fit, the crop random."""
    path = Path(path)
    f = Fit(size, fit)
    if rng is not None and crop_scale and fit == "crop":
        f.side = float(np.sqrt(rng.uniform(*crop_scale)))
        f.x0, f.y0 = rng.random(), rng.random()

    def pick(n):
        return sample_indices(n, frames, sampling, stride, fixed, rng)

    if path.is_dir():
        arrays, valid, n = _read_frame_folder(path, pick, f)
    elif path.is_file():
        arrays, valid, n = _read_video(path, pick, f)
    else:
        raise UserError(f"cannot read clip {path}: not found")
    return np.stack(arrays), valid, n


class ClipDataset:
    """(uint8 clip [T, S, S, 3], valid (h, w) [2], length, label) per item (torch Dataset protocol).

    With ``train=True`` the sampling offsets and the crop are random, seeded by (seed, epoch, item):
    call ``set_epoch`` each epoch."""

    def __init__(
        self,
        items,
        frames: int,
        size: int,
        fit: str = "crop",
        sampling: str = "uniform",
        stride: int = 2,
        fixed: bool = True,
        train: bool = False,
        crop_scale: tuple | None = None,
        seed: int = 0,
    ):
        self.items = list(items)
        self.frames, self.size, self.fit, self.sampling, self.stride = frames, size, fit, sampling, stride
        self.fixed, self.train, self.crop_scale, self.seed = fixed, train, crop_scale, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        import torch

        path, label = self.items[i]
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 1_000_033 + i) if self.train else None
        clip, valid, _ = read_clip(
            path,
            self.frames,
            self.size,
            self.fit,
            self.sampling,
            self.stride,
            self.fixed,
            rng,
            self.crop_scale if self.train else None,
        )
        return torch.from_numpy(clip), torch.tensor(valid, dtype=torch.int64), len(clip), int(label)


def collate(batch):
    """Pad clips to the longest in the batch: (clips [N, T, S, S, 3], sizes [N, 2], lengths [N], labels [N])."""
    import torch

    t = max(c.shape[0] for c, _, _, _ in batch)
    clips = torch.zeros((len(batch), t) + tuple(batch[0][0].shape[1:]), dtype=torch.uint8)
    for j, (c, _, n, _) in enumerate(batch):
        clips[j, :n] = c
    sizes = torch.stack([s for _, s, _, _ in batch])
    lengths = torch.tensor([n for _, _, n, _ in batch], dtype=torch.int64)
    labels = torch.tensor([y for _, _, _, y in batch], dtype=torch.int64)
    return clips, sizes, lengths, labels


def clip_loader(dataset, batch_size: int, shuffle: bool, workers: int = 0, seed: int = 0):
    """Batches of ``collate``; a clip error from a worker process stays one line."""
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=g,
        collate_fn=collate,
        persistent_workers=False,
    )
    try:
        yield from loader
    except UserError as e:
        if workers == 0:
            raise
        raise UserError(worker_error_line(e)) from None


def worker_error_line(e: Exception) -> str:
    """The one-line message of a UserError re-raised by a DataLoader worker (which adds its traceback)."""
    text = str(e).strip()
    marker = "UserError: "
    return (
        text[text.rindex(marker) + len(marker) :].splitlines()[0] if marker in text else text.splitlines()[-1]
    )
