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

from retrieval.errors import UserError
from retrieval.nets.heads import GapLinearHead, VGGClassifierHead
from retrieval.nets.weights import fingerprint, save_checkpoint, torch_load_best
from retrieval.training.data import compute_features, load_split
from retrieval.training.pipeline import DEFAULT_CACHE, load_classifier_checkpoint
from retrieval.training.train import TrainConfig, evaluate_cached, evaluate_net, fit


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
        out[k] = min(
            widths[k],
            max(round_to, int(round(n / round_to)) * round_to) if round_to > 1 else max(1, int(round(n))),
        )
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
    from retrieval.nets.model import vgg_cfg  # lazy: loads torchvision only when used

    macs, c_in, hw = 0, 3, size * size
    cfg = vgg_cfg(arch, widths)[:-1]  # the trunk ends before the last max-pool
    for v in cfg:
        if v == "M":
            hw = (int(hw**0.5) // 2) ** 2
        else:
            macs += c_in * v * 9 * hw
            c_in = v
    return 2 * macs / 1e9


def ratios_for_flops(
    arch: str, widths, size: int, flops: float, layers: list[int], round_to: int = 8, tol: float = 0.005
) -> dict:
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


def prune_model(
    net,
    spec,
    flops: float | None = None,
    ratios: dict | None = None,
    keep_last: bool = True,
    round_to: int = 8,
):
    """A pruned copy of the DescriptorNet ``net`` (its classifier head, if any, follows the last conv):
    ``ratios`` ({conv ordinal: share removed}) or a FLOPs target ``flops`` (share of the trunk's FLOPs
    at ``spec.input_size`` kept, e.g. 0.5; every conv but, with ``keep_last``, the last one pruned
    by one share). Returns (student, spec with the new widths, descriptor_dim and fingerprint,
    {conv ordinal: kept channel indices}). Widths are rounded to multiples of ``round_to``."""
    import copy

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


# --- the whole pruning step (``vgg-retrieval prune``) ---------------------------------------------
def weights_mb(net) -> float:
    """Bytes of the trunk + head tensors (a checkpoint file without optimizer state), in MB."""
    return (
        sum(
            v.numel() * v.element_size()
            for k, v in net.state_dict().items()
            if k.startswith(("features.", "head."))
        )
        / 1e6
    )


def _features_fingerprint(net) -> str:

    return fingerprint({f"features.{k}": v for k, v in net.features.state_dict().items()})


def _top1_of(net, spec, split, first: int, cache_dir):
    """A top-1 function for ``net`` on the val split; the unchanged layers before ``first`` come
    from the feature cache."""

    if first > 0:
        vf = compute_features(net, first, split.val, spec.input_size, cache_dir=cache_dir)
        return lambda: evaluate_cached(net, first, *vf)
    return lambda: evaluate_net(net, split.val, spec.input_size)


def _recover(net, pspec, split, out, first, data, checkpoint, info, epochs, lr, batch_size, cache_dir, log):
    """Short fine-tune of the pruned ``net`` (layers before ``first`` frozen); (metrics, spec)."""
    import time
    from pathlib import Path

    cfg = TrainConfig(
        epochs=epochs,
        lr=lr,
        warmup_epochs=0,
        head_lr_mult=1.0,
        batch_size=batch_size,
        freeze=first,
        cache=True,
        cache_dir=str(cache_dir),
    )
    cfg.extra = {**info, "data": str(Path(data).resolve()), "pruned_from": str(Path(checkpoint).resolve())}
    t = time.perf_counter()
    rows = fit(net, pspec, split, out, cfg, log=log)
    log(f"recovery: {time.perf_counter() - t:.1f} s")
    torch_load_best(out / "best.pt", net)
    return rows, pspec.replace(weights_sha256=_features_fingerprint(net))


def _sizes(net, spec, file) -> dict:
    return {
        "params": count_params(net),
        "gflops": gflops(net, spec.input_size),
        "weights_mb": weights_mb(net),
        "file_mb": file.stat().st_size / 1e6,
    }


def prune_checkpoint(
    checkpoint,
    out,
    *,
    ratio: float = 0.3,
    layers: str = "all",
    data=None,
    recover_epochs: int = 2,
    recover_lr: float = 0.002,
    cache_dir=None,
    batch_size: int = 32,
    limit_per_class=None,
    log=print,
) -> dict:
    """L1-norm channel pruning of the classifier ``checkpoint``, then a short recovery fine-tune;
    writes OUT/pruned.pt and OUT/prune_report.json and returns the report."""
    import json
    import time
    from pathlib import Path

    out, cache_dir = Path(out), cache_dir or DEFAULT_CACHE
    spec, net, obj = load_classifier_checkpoint(checkpoint)
    info = (obj.get("config") or {}).get("extra") or {}
    data = data or info.get("data")
    if not data:
        raise UserError("pass --data (the checkpoint does not name its dataset)")
    split = load_split(data, info.get("val_fraction", 0.2), info.get("seed", 0), limit_per_class)
    if tuple(split.classes) != tuple(spec.class_names):
        raise UserError(f"{data} classes {split.classes} differ from the checkpoint's {spec.class_names}")
    pos = conv_positions(net.features)
    chosen = parse_layers(layers, len(pos))
    if not chosen:
        raise UserError("no conv layer to prune")
    before = _sizes(net, spec, Path(checkpoint))
    first = pos[chosen[0]]  # layers before it are unchanged: evaluate (and recover) from their cache
    t = time.perf_counter()
    top1 = _top1_of(net, spec, split, first, cache_dir)
    before["top1"] = top1()
    log(
        f"before: {before['params'] / 1e6:.2f} M params, {before['gflops']:.2f} GFLOPs, top-1 {before['top1']:.4f} "
        f"({time.perf_counter() - t:.0f} s)"
    )
    widths = l1_prune(net, ratio, chosen)
    pspec = spec.replace(widths=widths, descriptor_dim=widths[-1], weights_sha256=_features_fingerprint(net))
    pruned_top1 = top1()
    log(
        f"pruned {len(chosen)} conv layers by {ratio:.0%}: widths {list(widths)}; top-1 before recovery {pruned_top1:.4f}"
    )
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    if recover_epochs > 0:
        rows, pspec = _recover(
            net,
            pspec,
            split,
            out,
            first,
            data,
            checkpoint,
            info,
            recover_epochs,
            recover_lr,
            batch_size,
            cache_dir,
            log,
        )
    final = out / "pruned.pt"
    save_checkpoint(
        final,
        pspec,
        {k: v for k, v in net.state_dict().items() if k.startswith(("features.", "head."))},
        config={"extra": {**info, "data": str(Path(data).resolve())}},
        metrics=rows,
    )
    after = {**_sizes(net, spec, final), "top1": top1() if recover_epochs > 0 else pruned_top1}
    report = {
        "ratio": ratio,
        "layers": chosen,
        "widths": list(widths),
        "before": before,
        "pruned_no_recovery_top1": pruned_top1,
        "after": after,
    }
    (out / "prune_report.json").write_text(json.dumps(report, indent=2))
    log(
        f"after:  {after['params'] / 1e6:.2f} M params ({after['params'] / before['params']:.2f}x), "
        f"{after['gflops']:.2f} GFLOPs ({after['gflops'] / before['gflops']:.2f}x), "
        f"weights {after['weights_mb']:.1f} MB (was {before['weights_mb']:.1f}), top-1 {after['top1']:.4f} "
        f"(was {before['top1']:.4f})"
    )
    log(f"wrote {final}")
    return report
