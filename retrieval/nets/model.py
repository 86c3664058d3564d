"""The descriptor network: a torchvision VGG trunk, masked global pooling and L2 normalisation.

More: docs/design-notes.md (``retrieval.nets.model``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from retrieval.spec import ModelSpec

from .heads import build_head

FEATURE_STRIDE = 16  # conv5 (before the last max-pool) is 1/16 of the input
RMAC_LEVELS = 3
RMAC_EPS = 1e-6  # of each region vector's L2 normalisation (an all-zero region stays zero)


def build_vgg(arch: str) -> nn.Module:
    """A torchvision VGG (weights=None): 'vgg16', 'vgg19_bn', ..."""
    return getattr(tvm, arch)(weights=None)


_CFG = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def trunk_widths(arch: str) -> tuple[int, ...]:
    """The output channels of each conv layer of ``arch``, in order."""
    from torchvision.models.vgg import cfgs

    return tuple(v for v in cfgs[_CFG[arch.removesuffix("_bn")]] if v != "M")


def vgg_cfg(arch: str, widths=None) -> list:
    """torchvision's layer list of ``arch`` ("M" = max-pool, ints = conv widths), with ``widths``
    overriding the conv output channels (pruned models)."""
    from torchvision.models.vgg import cfgs

    cfg = list(cfgs[_CFG[arch.removesuffix("_bn")]])
    if widths is not None:
        widths = [int(w) for w in widths]
        n_conv = sum(v != "M" for v in cfg)
        if len(widths) != n_conv or min(widths) < 1:
            raise ValueError(f"{arch} has {n_conv} conv layers; got widths {widths}")
        it = iter(widths)
        cfg = [v if v == "M" else next(it) for v in cfg]
    return cfg


def init_vgg(modules: nn.Module, conv=nn.Conv2d, norm=nn.BatchNorm2d) -> None:
    """torchvision VGG's own initialisation (for 2D or, with ``conv``/``norm``, 3D layers)."""
    for m in modules.modules():
        if isinstance(m, conv):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, norm):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def build_trunk(arch: str, widths=None) -> nn.Sequential:
    """The conv trunk of a torchvision VGG (its ``make_layers`` and init), without building the
    120M-parameter classifier: conv layers up to the last conv block's ReLU. ``widths`` overrides
    the conv output channels (pruned models)."""
    from torchvision.models.vgg import make_layers

    features = make_layers(vgg_cfg(arch, widths), batch_norm=arch.endswith("_bn"))
    init_vgg(features)
    return nn.Sequential(*list(features.children())[:-1])


def conv_trunk(vgg: nn.Module) -> nn.Sequential:
    """The conv layers up to the last conv block's ReLU (the final max-pool dropped)."""
    layers = list(vgg.features.children())
    assert isinstance(layers[-1], nn.MaxPool2d)
    return nn.Sequential(*layers[:-1])


class DescriptorNet(nn.Module):
    """``forward`` gives descriptors; with a classifier ``head``, ``forward_both`` gives
    (descriptors, logits) from one pass and ``logits`` the class scores alone."""

    def __init__(self, features: nn.Sequential, spec: ModelSpec, head: nn.Module | None = None):
        super().__init__()
        self.features = features  # keeps torchvision's `features.N` state_dict names
        self.head = head  # `head.*` in the state_dict; None: descriptor only
        self.pooling = spec.pooling
        self.gem_p = float(spec.gem_p)
        self.scales = tuple(float(x) for x in spec.scales)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def prepare(self, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW with the padded pixels zeroed."""
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - self.mean) / self.std
        n, _, h, w = x.shape
        valid_h = size[:, 0].view(n, 1, 1, 1)
        valid_w = size[:, 1].view(n, 1, 1, 1)
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        return x * ((rows < valid_h) & (cols < valid_w)).to(x.dtype)

    def pool(self, f: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        """The masked global pooling of conv5 features ``f`` (not normalised)."""
        n, fh, fw = f.shape[0], f.shape[2], f.shape[3]
        valid_h = size[:, 0].view(n, 1, 1, 1)
        valid_w = size[:, 1].view(n, 1, 1, 1)
        # a feature cell is valid when its 16x16 input patch starts inside the image
        frows = torch.arange(fh, device=f.device).view(1, 1, fh, 1) * FEATURE_STRIDE
        fcols = torch.arange(fw, device=f.device).view(1, 1, 1, fw) * FEATURE_STRIDE
        mask = ((frows < valid_h) & (fcols < valid_w)).to(f.dtype)
        count = mask.sum(dim=(2, 3)).clamp(min=1.0)
        if self.pooling == "rmac":
            # valid cells per axis: the mask's count (min(ceil(valid / 16), map side), traced dynamically)
            return rmac(f, (frows < valid_h).sum(dim=(1, 2, 3)), (fcols < valid_w).sum(dim=(1, 2, 3)))
        if self.pooling == "mac":
            return (f * mask).amax(dim=(2, 3))  # post-ReLU features are >= 0, so zeroing is masking
        if self.pooling == "gem":
            p = self.gem_p
            return ((f.clamp(min=1e-6) ** p * mask).sum(dim=(2, 3)) / count) ** (1.0 / p)
        return (f * mask).sum(dim=(2, 3)) / count

    def multi_scale(
        self, x: torch.Tensor, size: torch.Tensor, f: torch.Tensor, pooled: torch.Tensor
    ) -> torch.Tensor:
        """The descriptor (not normalised) from the prepared input ``x`` and its scale-1 conv5 map ``f``
        and pooling ``pooled``: ``pooled`` itself with one scale, else the sum over ``self.scales``
        of each scale's L2-normalised pooling (the valid size scaled down, rounding down)."""
        if len(self.scales) == 1:
            return pooled
        total = F.normalize(pooled, p=2.0, dim=1, eps=1e-12)
        for scale in self.scales[1:]:
            xs = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
            ss = torch.floor(size.to(torch.float32) * scale).to(torch.int64).clamp(min=1)
            total = total + F.normalize(self.pool(self.features(xs), ss), p=2.0, dim=1, eps=1e-12)
        return total

    def head_from_features(self, f: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(descriptor, logits) from conv5 features (training on cached features uses this)."""
        pooled = self.pool(f, size)
        return F.normalize(pooled, p=2.0, dim=1, eps=1e-12), self.head(f, pooled)

    def forward(self, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        x = self.prepare(image, size)
        f = self.features(x)
        return F.normalize(self.multi_scale(x, size, f, self.pool(f, size)), p=2.0, dim=1, eps=1e-12)

    def forward_both(self, image: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(descriptor, logits); the classifier sees the scale-1 map only."""
        if self.head is None:
            raise ValueError("this model has no classifier head")
        x = self.prepare(image, size)
        f = self.features(x)
        if len(self.scales) == 1:
            return self.head_from_features(f, size)
        pooled = self.pool(f, size)
        desc = F.normalize(self.multi_scale(x, size, f, pooled), p=2.0, dim=1, eps=1e-12)
        return desc, self.head(f, pooled)

    def logits(self, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return self.forward_both(image, size)[1]


def _region_bands(cells: torch.Tensor, longer: torch.Tensor, side: torch.Tensor, level: int, length: int):
    """The R-MAC regions of one level along one axis of ``length`` map cells: (masks [N, level+1,
    length] float, active [N, level+1] bool). ``level`` regions of ``side`` cells spread evenly over
    the ``cells`` valid ones, ``level + 1`` along the longer axis; the positions follow Tolias'
    code (centre rounding included)."""
    k = torch.arange(level + 1, device=cells.device).view(1, level + 1)
    count = level + longer.to(torch.int64)
    step = (cells - side).to(torch.float32) / torch.clamp(count - 1, min=1).to(torch.float32)
    half = torch.div(side, 2, rounding_mode="floor") - 1
    start = torch.floor(half.view(-1, 1).to(torch.float32) + k.to(torch.float32) * step.view(-1, 1)).to(
        torch.int64
    )
    start = start - half.view(-1, 1)
    idx = torch.arange(length, device=cells.device).view(1, 1, length)
    inside = (idx >= start.unsqueeze(2)) & (idx < (start + side.view(-1, 1)).unsqueeze(2))
    return inside.to(torch.float32), k < count.view(-1, 1)


def rmac(
    f: torch.Tensor, cells_h: torch.Tensor, cells_w: torch.Tensor, levels: int = RMAC_LEVELS
) -> torch.Tensor:
    """R-MAC of conv5 maps ``f`` [N, C, H, W] (post-ReLU, >= 0) over their top-left ``cells_h`` x
    ``cells_w`` valid cells ([N] int64): the sum over levels l = 1..``levels`` of the L2-normalised
    max of each square region of side floor(2 min(h, w) / (l + 1)) cells. Tolias et al. place l x l
    regions per level on a square map and l x (l + m - 1) on an oblong one, m chosen for ~40%
    overlap of neighbours (m = 2 up to an aspect of about 1.9, more beyond); here the count is fixed
    per level, l x l for a square valid area and l x (l + 1) otherwise (m = 2, i.e. exact for the
    aspects of the buckets policy), so that the graph has a fixed number of regions and exports
    with dynamic shapes (region bounds are computed from the valid size)."""
    fh, fw = f.shape[2], f.shape[3]
    short = torch.minimum(cells_h, cells_w)
    total = torch.zeros(f.shape[:2], dtype=f.dtype, device=f.device)
    for level in range(1, levels + 1):
        side = torch.clamp(torch.div(2 * short, level + 1, rounding_mode="floor"), min=1)
        rows, rows_on = _region_bands(cells_h, cells_h > cells_w, side, level, fh)
        cols, cols_on = _region_bands(cells_w, cells_w > cells_h, side, level, fw)
        by_rows = (f.unsqueeze(1) * rows.to(f.dtype)[:, :, None, :, None]).amax(dim=3)  # [N, R, C, W]
        regions = (by_rows.unsqueeze(2) * cols.to(f.dtype)[:, None, :, None, :]).amax(dim=4)  # [N, R, R, C]
        regions = F.normalize(regions, p=2.0, dim=3, eps=RMAC_EPS)
        weight = (rows_on.unsqueeze(2) & cols_on.unsqueeze(1)).to(f.dtype)
        total = total + (regions * weight.unsqueeze(3)).sum(dim=(1, 2))
    return total


class BothOutputs(nn.Module):
    """Export wrapper: (descriptor, logits) as two graph outputs."""

    def __init__(self, net: DescriptorNet):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, size: torch.Tensor):
        return self.net.forward_both(image, size)


def build_descriptor_net(spec: ModelSpec, state_dict: dict | None) -> DescriptorNet:
    """A DescriptorNet for ``spec``; ``state_dict`` holds ``features.*`` tensors (None: random) and,
    when ``spec.head`` names a classifier, ``head.*`` tensors."""
    head = None
    if spec.head:
        widths = spec.widths or trunk_widths(spec.arch)
        head = build_head(spec.head, int(widths[-1]), max(1, len(spec.class_names)))
    net = DescriptorNet(build_trunk(spec.arch, spec.widths), spec, head)
    if state_dict is not None:
        net.load_state_dict({**net.state_dict(), **state_dict}, strict=True)
    return net.eval()
