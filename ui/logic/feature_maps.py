"""Feature maps of the index's VGG trunk for the feature-maps page: the conv layers by name, one layer's
activations for a prepared image, and the most active channels as a colour-mapped grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class ConvLayer:
    name: str  # conv3_2
    end: int  # index in net.features of the ReLU after it (inclusive)
    channels: int


def conv_layers(net) -> list[ConvLayer]:
    from torch import nn

    layers = list(net.features.children())
    out, block, pos = [], 1, 0
    for i, layer in enumerate(layers):
        if isinstance(layer, nn.MaxPool2d):
            block, pos = block + 1, 0
        elif isinstance(layer, nn.Conv2d):
            pos += 1
            end = i
            while end + 1 < len(layers) and isinstance(layers[end + 1], (nn.BatchNorm2d, nn.ReLU)):
                end += 1
            out.append(ConvLayer(f"conv{block}_{pos}", end, layer.out_channels))
    return out


def feature_maps(net, prepared, layer: ConvLayer, progress=None) -> np.ndarray:
    """Activations ``[C, h, w]`` of ``layer`` for a prepared image, cropped to the picture.
    ``progress(done, total)`` is called after each module of the trunk (the page's progress bar;
    an exception it raises stops the work there)."""
    import torch

    modules = list(net.features.children())[: layer.end + 1]
    with torch.inference_mode():
        x = torch.from_numpy(prepared.array[None]).permute(0, 3, 1, 2).to(torch.float32)
        x = (x - net.mean) / net.std
        vh, vw = prepared.valid
        x[:, :, vh:, :] = 0
        x[:, :, :, vw:] = 0
        for i, module in enumerate(modules):
            x = module(x)
            if progress is not None:
                progress(i + 1, len(modules))
        f = x[0]
    s = prepared.array.shape[0] / f.shape[1]
    fh, fw = max(1, int(np.ceil(vh / s))), max(1, int(np.ceil(vw / s)))
    return f[:, :fh, :fw].numpy()


_ANCHORS = np.array([[0, 0, 4], [60, 15, 110], [180, 55, 110], [250, 140, 60], [252, 253, 191]], np.float64)
COLORMAP = np.stack(
    [np.interp(np.linspace(0, 4, 256), np.arange(5), _ANCHORS[:, c]) for c in range(3)], axis=1
).astype(np.uint8)  # magma-like


def maps_grid(maps: np.ndarray, n: int = 32, cols: int = 8, tile: int = 96) -> tuple[Image.Image, list[int]]:
    """The ``n`` most active channels as a colour-mapped grid image (each map scaled to its max)."""
    strength = maps.reshape(len(maps), -1).mean(axis=1)
    chosen = [int(c) for c in np.argsort(-strength)[:n]]
    rows = (len(chosen) + cols - 1) // cols
    h, w = maps.shape[1:]
    scale = tile / max(h, w)
    th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    gap = 2
    grid = Image.new("RGB", (cols * (tw + gap) - gap, rows * (th + gap) - gap), (255, 255, 255))
    for i, c in enumerate(chosen):
        m = maps[c]
        hi = float(m.max())
        a = (np.clip(m / hi, 0, 1) * 255).astype(np.uint8) if hi > 0 else np.zeros_like(m, np.uint8)
        im = Image.fromarray(COLORMAP[a]).resize(
            (tw, th), Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR
        )
        grid.paste(im, ((i % cols) * (tw + gap), (i // cols) * (th + gap)))
    return grid, chosen
