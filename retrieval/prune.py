"""L1-norm structured channel pruning of a VGG trunk: channels are physically removed.

For each pruned conv layer the filters with the smallest L1 norm are dropped: the conv's output
channels, the following BatchNorm (``_bn`` archs), the next conv's input channels and, when the last
conv is pruned, the head's input features. The result is a plain smaller VGG whose widths go into
``ModelSpec.widths`` (``build_trunk`` rebuilds it from them). By default the last conv is kept so the
descriptor stays 512-d.
"""
from __future__ import annotations

import torch
from torch import nn


def conv_positions(features: nn.Sequential) -> list[int]:
    return [i for i, m in enumerate(features) if isinstance(m, nn.Conv2d)]


def parse_layers(text: str | None, n_conv: int, keep_last: bool = True) -> list[int]:
    """Conv ordinals (0-based) from 'all', 'block5', '10,11' or '8-11'."""
    if not text or text == "all":
        out = list(range(n_conv))
    elif text.startswith("block"):
        raise ValueError("use conv ordinals, e.g. 10-11")
    else:
        out = []
        for part in text.split(","):
            a, _, b = part.partition("-")
            out += list(range(int(a), int(b or a) + 1))
    out = sorted(set(o for o in out if 0 <= o < n_conv))
    if keep_last and n_conv - 1 in out:
        out.remove(n_conv - 1)
    return out


def _slice_conv(conv: nn.Conv2d, out_idx=None, in_idx=None) -> nn.Conv2d:
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else None
    if out_idx is not None:
        w = w[out_idx]
        b = b[out_idx] if b is not None else None
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(w.shape[1], w.shape[0], conv.kernel_size, conv.stride, conv.padding, bias=b is not None)
    new.weight.data.copy_(w)
    if b is not None:
        new.bias.data.copy_(b)
    return new


def _slice_bn(bn: nn.BatchNorm2d, idx) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(idx), eps=bn.eps, momentum=bn.momentum)
    for name in ("weight", "bias"):
        getattr(new, name).data.copy_(getattr(bn, name).detach()[idx])
    new.running_mean.copy_(bn.running_mean[idx])
    new.running_var.copy_(bn.running_var[idx])
    return new


def _slice_head(head: nn.Module, idx) -> None:
    from .heads import GapLinearHead, VGGClassifierHead

    if isinstance(head, GapLinearHead):
        fc = head.fc
        new = nn.Linear(len(idx), fc.out_features)
        new.weight.data.copy_(fc.weight.detach()[:, idx])
        new.bias.data.copy_(fc.bias.detach())
        head.fc = new
    elif isinstance(head, VGGClassifierHead):
        fc = head.classifier[0]
        w = fc.weight.detach().view(fc.out_features, -1, 49)[:, idx].reshape(fc.out_features, -1)
        new = nn.Linear(w.shape[1], fc.out_features)
        new.weight.data.copy_(w)
        new.bias.data.copy_(fc.bias.detach())
        head.classifier[0] = new
    else:
        raise ValueError(f"cannot prune into head {type(head).__name__}")


@torch.no_grad()
def l1_prune(net, ratio: float, layers: list[int] | None = None) -> tuple[int, ...]:
    """Prune ``ratio`` of the output channels of the conv ordinals ``layers`` (default: all but the
    last) of ``net.features`` in place; returns the new conv widths."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError("ratio must be in [0, 1)")
    feats = net.features
    pos = conv_positions(feats)
    if layers is None:
        layers = list(range(len(pos) - 1))
    for k in layers:
        i = pos[k]
        conv = feats[i]
        n_out = conv.out_channels
        n_keep = max(1, int(round(n_out * (1.0 - ratio))))
        if n_keep == n_out:
            continue
        norms = conv.weight.detach().abs().sum(dim=(1, 2, 3))
        keep = torch.sort(torch.topk(norms, n_keep).indices).values
        feats[i] = _slice_conv(conv, out_idx=keep)
        if i + 1 < len(feats) and isinstance(feats[i + 1], nn.BatchNorm2d):
            feats[i + 1] = _slice_bn(feats[i + 1], keep)
        if k + 1 < len(pos):
            feats[pos[k + 1]] = _slice_conv(feats[pos[k + 1]], in_idx=keep)
        elif net.head is not None:
            _slice_head(net.head, keep)
    return tuple(feats[i].out_channels for i in pos)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def gflops(net, size: int) -> float:
    """Multiply-adds x 2 of the trunk (+ head linear layers) for one ``size x size`` image."""
    macs, h, w = 0, size, size
    for m in net.features:
        if isinstance(m, nn.Conv2d):
            macs += m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] * h * w
        elif isinstance(m, nn.MaxPool2d):
            h, w = h // 2, w // 2
    if net.head is not None:
        macs += sum(l.in_features * l.out_features for l in net.head.modules() if isinstance(l, nn.Linear))
    return 2 * macs / 1e9
