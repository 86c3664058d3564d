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


def _keep_counts(widths, ratios: dict, round_to: int) -> dict:
    """Channels kept per conv ordinal for ``ratios`` ({ordinal: share removed}), rounded to a
    multiple of ``round_to`` (>= 1 channel)."""
    out = {}
    for k, r in ratios.items():
        if not 0.0 <= float(r) < 1.0:
            raise ValueError(f"pruning ratio {r} of conv {k} must be in [0, 1)")
        n = widths[k] * (1.0 - float(r))
        out[k] = min(widths[k], max(round_to, int(round(n / round_to)) * round_to) if round_to > 1 else max(1, int(round(n))))
    return out


@torch.no_grad()
def l1_prune_layers(net, ratios: dict, round_to: int = 1) -> dict:
    """Prune ``net.features`` in place: conv ordinal k loses the share ``ratios[k]`` of its filters,
    those with the smallest L1 norm. The norms are taken on the network as given, before any
    channel goes (Li et al.'s "independent" criterion; it kept the pruned descriptors closer to the
    unpruned ones than re-ranking each layer after its inputs shrank, benchmarks/prune_distill.py).
    Returns {conv ordinal: kept channel indices (of the original layer)} for the pruned layers."""
    feats = net.features
    pos = conv_positions(feats)
    widths = [feats[i].out_channels for i in pos]
    counts = _keep_counts(widths, {int(k): r for k, r in ratios.items()}, round_to)
    kept = {}
    for k, n_keep in counts.items():
        if n_keep < widths[k]:
            norms = feats[pos[k]].weight.detach().abs().sum(dim=(1, 2, 3))
            kept[k] = torch.sort(torch.topk(norms, n_keep).indices).values
    for k, keep in sorted(kept.items()):
        i = pos[k]
        feats[i] = _slice_conv(feats[i], out_idx=keep)
        if i + 1 < len(feats) and isinstance(feats[i + 1], nn.BatchNorm2d):
            feats[i + 1] = _slice_bn(feats[i + 1], keep)
        if k + 1 < len(pos):
            feats[pos[k + 1]] = _slice_conv(feats[pos[k + 1]], in_idx=keep)
        elif net.head is not None:
            _slice_head(net.head, keep)
    return kept


def l1_prune(net, ratio: float, layers: list[int] | None = None) -> tuple[int, ...]:
    """Prune ``ratio`` of the output channels of the conv ordinals ``layers`` (default: all but the
    last) of ``net.features`` in place; returns the new conv widths."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError("ratio must be in [0, 1)")
    pos = conv_positions(net.features)
    if layers is None:
        layers = list(range(len(pos) - 1))
    l1_prune_layers(net, {k: ratio for k in layers})
    return conv_widths(net)


def conv_widths(net) -> tuple[int, ...]:
    return tuple(m.out_channels for m in net.features if isinstance(m, nn.Conv2d))


def widths_gflops(arch: str, widths, size: int) -> float:
    """GFLOPs (2 x multiply-adds) of the conv trunk of ``arch`` with conv ``widths`` at ``size`` px,
    computed from the layer list (no network built)."""
    from .model import vgg_cfg

    macs, c_in, hw = 0, 3, size * size
    cfg = vgg_cfg(arch, widths)[:-1]  # the trunk ends before the last max-pool
    for v in cfg:
        if v == "M":
            hw = (int(hw ** 0.5) // 2) ** 2
        else:
            macs += c_in * v * 9 * hw
            c_in = v
    return 2 * macs / 1e9


def ratios_for_flops(arch: str, widths, size: int, flops: float, layers: list[int],
                     round_to: int = 8, tol: float = 0.005) -> dict:
    """One removal share for every conv ordinal in ``layers`` such that the trunk keeps the share
    ``flops`` (0 < flops <= 1) of its FLOPs at ``size`` px (bisection on the share, widths rounded
    to ``round_to``); returns {ordinal: share}. Raises ValueError when even the widest cut cannot
    reach the target."""
    if not 0.0 < flops <= 1.0:
        raise ValueError(f"FLOPs target {flops} must be in (0, 1]")
    widths = [int(w) for w in widths]
    full = widths_gflops(arch, widths, size)

    def kept_share(r: float) -> float:
        keep = _keep_counts(widths, {k: r for k in layers}, round_to)
        return widths_gflops(arch, [keep.get(k, w) for k, w in enumerate(widths)], size) / full

    lo, hi = 0.0, 0.99
    if kept_share(hi) > flops + tol:
        raise ValueError(f"pruning conv layers {layers} cannot reach {flops:.0%} of the FLOPs")
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kept_share(mid) > flops else (lo, mid)
    # the rounded widths move in steps: take whichever end lands closer to the target
    r = min((lo, hi), key=lambda x: abs(kept_share(x) - flops))
    return {k: r for k in layers}


def prune_model(net, spec, flops: float | None = None, ratios: dict | None = None, keep_last: bool = True,
                round_to: int = 8):
    """A pruned copy of the DescriptorNet ``net`` (its classifier head, if any, follows the last conv):
    ``ratios`` ({conv ordinal: share removed}) or a FLOPs target ``flops`` (share of the trunk's FLOPs
    at ``spec.input_size`` kept, e.g. 0.5; every conv but, with ``keep_last``, the last one pruned
    by one share). Returns (student, spec with the new widths, descriptor_dim and fingerprint,
    {conv ordinal: kept channel indices}). Widths are rounded to multiples of ``round_to``."""
    import copy

    from .weights import fingerprint

    n_conv = len(conv_positions(net.features))
    if ratios is None:
        if flops is None:
            raise ValueError("give ratios or a FLOPs target")
        layers = list(range(n_conv - 1 if keep_last else n_conv))
        ratios = ratios_for_flops(spec.arch, conv_widths(net), spec.input_size, flops, layers, round_to)
    student = copy.deepcopy(net)
    kept = l1_prune_layers(student, ratios, round_to)
    widths = conv_widths(student)
    state = {f"features.{k}": v for k, v in student.features.state_dict().items()}
    pspec = spec.replace(widths=widths, descriptor_dim=widths[-1], weights_sha256=fingerprint(state))
    return student.eval(), pspec, kept


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
