"""Fine-tuning settings (``vgg-retrieval train``): one object instead of many parameters."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.01
    min_lr: float = 0.0
    head_lr_mult: float = 10.0
    warmup_epochs: float = 5.0
    warmup_start_lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    dropout: float = 0.5
    freeze: int = -1  # feature layers frozen from the input side; -1: the whole trunk
    cache: bool = True
    cache_at: int | None = None  # compute/keep the disk cache at this layer (<= freeze)
    cache_dir: str | None = None
    hflip: float = 0.5
    crop_scale: tuple = (0.5, 1.0)
    jitter: float = 0.2
    rotation: float = 15.0
    bf16: str = "auto"  # auto | on | off
    seed: int = 0
    workers: int = 1
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        return d
