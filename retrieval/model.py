"""The descriptor network: a torchvision VGG trunk, masked global pooling and L2 normalisation.

Input is what the preprocessing produces: a batch of uint8 RGB images ``[N, S, S, 3]`` padded at the
bottom/right, and the valid ``(height, width)`` of each ``[N, 2]``. Normalisation happens inside the
graph, so the exported ONNX/OpenVINO model is self-contained and every engine sees identical input.
Padded pixels are zeroed after normalisation and padded feature cells are left out of the pooling,
so the padding does not dilute the descriptor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm

from .spec import ModelSpec

FEATURE_STRIDE = 16  # conv5 (before the last max-pool) is 1/16 of the input


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
        if self.pooling == "mac":
            return (f * mask).amax(dim=(2, 3))  # post-ReLU features are >= 0, so zeroing is masking
        if self.pooling == "gem":
            p = self.gem_p
            return ((f.clamp(min=1e-6) ** p * mask).sum(dim=(2, 3)) / count) ** (1.0 / p)
        return (f * mask).sum(dim=(2, 3)) / count

    def head_from_features(self, f: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(descriptor, logits) from conv5 features (training on cached features uses this)."""
        pooled = self.pool(f, size)
        return F.normalize(pooled, p=2.0, dim=1, eps=1e-12), self.head(f, pooled)

    def forward(self, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        f = self.features(self.prepare(image, size))
        return F.normalize(self.pool(f, size), p=2.0, dim=1, eps=1e-12)

    def forward_both(self, image: torch.Tensor, size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.head is None:
            raise ValueError("this model has no classifier head")
        return self.head_from_features(self.features(self.prepare(image, size)), size)

    def logits(self, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        return self.forward_both(image, size)[1]


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
        from .heads import build_head

        widths = spec.widths or trunk_widths(spec.arch)
        head = build_head(spec.head, int(widths[-1]), max(1, len(spec.class_names)))
    net = DescriptorNet(build_trunk(spec.arch, spec.widths), spec, head)
    if state_dict is not None:
        net.load_state_dict({**net.state_dict(), **state_dict}, strict=True)
    return net.eval()
