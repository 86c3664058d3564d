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


def build_trunk(arch: str) -> nn.Sequential:
    """The conv trunk of a torchvision VGG (its ``make_layers`` and init), without building the
    120M-parameter classifier: conv layers up to the last conv block's ReLU."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs[_CFG[arch.removesuffix("_bn")]], batch_norm=arch.endswith("_bn"))
    for m in features.modules():  # torchvision VGG's own initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return nn.Sequential(*list(features.children())[:-1])


def conv_trunk(vgg: nn.Module) -> nn.Sequential:
    """The conv layers up to the last conv block's ReLU (the final max-pool dropped)."""
    layers = list(vgg.features.children())
    assert isinstance(layers[-1], nn.MaxPool2d)
    return nn.Sequential(*layers[:-1])


class DescriptorNet(nn.Module):
    def __init__(self, features: nn.Sequential, spec: ModelSpec):
        super().__init__()
        self.features = features  # keeps torchvision's `features.N` state_dict names
        self.pooling = spec.pooling
        self.gem_p = float(spec.gem_p)
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0)

    def forward(self, image: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        x = (x - self.mean) / self.std
        n, _, h, w = x.shape
        valid_h = size[:, 0].view(n, 1, 1, 1)
        valid_w = size[:, 1].view(n, 1, 1, 1)
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        x = x * ((rows < valid_h) & (cols < valid_w)).to(x.dtype)

        f = self.features(x)
        fh, fw = f.shape[2], f.shape[3]
        # a feature cell is valid when its 16x16 input patch starts inside the image
        frows = torch.arange(fh, device=x.device).view(1, 1, fh, 1) * FEATURE_STRIDE
        fcols = torch.arange(fw, device=x.device).view(1, 1, 1, fw) * FEATURE_STRIDE
        mask = ((frows < valid_h) & (fcols < valid_w)).to(f.dtype)
        count = mask.sum(dim=(2, 3)).clamp(min=1.0)
        if self.pooling == "mac":
            d = (f * mask).amax(dim=(2, 3))  # post-ReLU features are >= 0, so zeroing is masking
        elif self.pooling == "gem":
            p = self.gem_p
            d = ((f.clamp(min=1e-6) ** p * mask).sum(dim=(2, 3)) / count) ** (1.0 / p)
        else:
            d = (f * mask).sum(dim=(2, 3)) / count
        return F.normalize(d, p=2.0, dim=1, eps=1e-12)


def build_descriptor_net(spec: ModelSpec, state_dict: dict | None) -> DescriptorNet:
    """A DescriptorNet for ``spec``; ``state_dict`` holds ``features.*`` tensors (None: random)."""
    net = DescriptorNet(build_trunk(spec.arch), spec)
    if state_dict is not None:
        net.load_state_dict({**net.state_dict(), **state_dict}, strict=True)
    return net.eval()
