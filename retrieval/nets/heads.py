"""Classifier heads on top of the descriptor trunk.

``gap-linear`` (default): the descriptor's own pooled conv5 vector (before L2 normalisation) ->
dropout -> Linear(C5, classes); it shares the pooling with the descriptor, so one forward pass gives
both. ``vgg``: torchvision's original classifier (max-pool, 7x7 adaptive average pool,
4096-4096-classes) on the conv5 feature map.
"""

from __future__ import annotations

import torch
from torch import nn

HEADS = ("gap-linear", "vgg")


class GapLinearHead(nn.Module):
    uses_map = False

    def __init__(self, in_dim: int, classes: int, dropout: float = 0.5):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, classes)

    def forward(self, fmap: torch.Tensor | None, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(pooled))


class VGGClassifierHead(nn.Module):
    uses_map = True

    def __init__(self, in_dim: int, classes: int, dropout: float = 0.5):
        super().__init__()
        self.pool = nn.Sequential(nn.MaxPool2d(2, 2), nn.AdaptiveAvgPool2d((7, 7)))
        self.classifier = nn.Sequential(
            nn.Linear(in_dim * 49, 4096),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(dropout),
            nn.Linear(4096, classes),
        )

    def forward(self, fmap: torch.Tensor, pooled: torch.Tensor | None) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(fmap), 1))


def build_head(kind: str, in_dim: int, classes: int, dropout: float = 0.5) -> nn.Module:
    if kind == "gap-linear":
        return GapLinearHead(in_dim, classes, dropout)
    if kind == "vgg":
        return VGGClassifierHead(in_dim, classes, dropout)
    raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
