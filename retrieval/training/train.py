"""Fine-tuning the descriptor trunk and a classifier head on an ImageFolder dataset.

More: docs/design-notes.md (``retrieval.training.train``)."""

from __future__ import annotations

import math
import time
from pathlib import Path

from retrieval.nets.builder import build
from retrieval.nets.weights import fingerprint, save_checkpoint, torch_load
from retrieval.spec import ModelSpec

from .config import TrainConfig
from .data import Augment, ImageDataset, compute_features, loader
from .recipe import (
    close_epoch,
    cpu_has_bf16,
    evaluate_batches,
    freeze_prefix,
    plot_metrics,
    resume_state,
    train_epoch,
    train_mode,
)


def param_groups(net, cfg: TrainConfig):
    trunk = [p for p in net.features.parameters() if p.requires_grad]
    head = [p for p in net.head.parameters() if p.requires_grad] if net.head is not None else []
    groups = []
    if trunk:
        groups.append({"params": trunk, "lr_mult": 1.0, "name": "trunk"})
    if head:
        groups.append({"params": head, "lr_mult": cfg.head_lr_mult, "name": "head"})
    return groups


class _Cached:
    """Training inputs from cached prefix features: maps (fp16) or pooled vectors."""

    def __init__(self, net, frozen: int, feats, sizes, labels):
        import torch

        self.sizes, self.labels = sizes, labels
        self.pooled = None
        self.maps = feats
        if frozen >= len(net.features) and not getattr(net.head, "uses_map", False):
            with torch.no_grad():  # nothing trainable before the pooling: keep only the vectors
                self.pooled = torch.cat(
                    [
                        net.pool(feats[i : i + 256].float(), sizes[i : i + 256])
                        for i in range(0, len(feats), 256)
                    ]
                )
            self.maps = None

    def __len__(self):
        return len(self.labels)

    def batch(self, idx):
        if self.pooled is not None:
            return self.pooled[idx], self.sizes[idx], self.labels[idx]
        return self.maps[idx].float(), self.sizes[idx], self.labels[idx]


def _suffix_logits(net, frozen: int, x, sizes, pooled_only: bool):
    if pooled_only:
        return net.head(None, x)
    f = net.features[frozen:](x)
    return net.head_from_features(f, sizes)[1]


def _advance_cache(net, cache_at: int, frozen: int, feats):
    """Cached maps at layer ``cache_at`` -> maps at ``frozen`` (frozen layers run once)."""
    import torch

    if frozen == cache_at:
        return feats
    mid = net.features[cache_at:frozen]
    with torch.inference_mode():
        return torch.cat([mid(feats[i : i + 64].float()).to(torch.float16) for i in range(0, len(feats), 64)])


def fit(
    net,
    spec,
    split,
    out_dir,
    cfg: TrainConfig,
    resume: bool = False,
    log=print,
    stop_after: int | None = None,
):
    """Train ``net`` (a DescriptorNet with a head) on ``split``; returns the metrics rows.

    ``stop_after`` ends the run after that many epochs of this call (tests; like an interrupt)."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if net.head is None:
        raise ValueError("fit() needs a DescriptorNet with a classifier head")
    frozen = freeze_prefix(net, cfg.freeze)
    use_cache = cfg.cache and frozen > 0
    groups = param_groups(net, cfg)
    opt = torch.optim.SGD(
        groups, lr=cfg.warmup_start_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    last_path = out_dir / "last.pt"
    start_epoch, rows, best = resume_state(last_path, net, opt, log) if resume else (0, [], -1.0)
    autocast = cfg.bf16 == "on" or (cfg.bf16 == "auto" and cpu_has_bf16())
    train_data, val_data = _training_inputs(net, spec, split, cfg, frozen, use_cache, log)
    steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)

    def logits_of(data):
        if use_cache:
            return lambda b: (_suffix_logits(net, frozen, b[0], b[1], data.pooled is not None), b[2])
        return lambda b: (net.forward_both(b[0], b[1])[1], b[2])

    def val_batches():
        if use_cache:
            return (
                val_data.batch(torch.arange(i, min(i + 128, len(val_data))))
                for i in range(0, len(val_data), 128)
            )
        return loader(val_data, cfg.batch_size, False, cfg.workers)

    def save(path, epoch, best_top1):
        trained = {f"features.{k}": v for k, v in net.features.state_dict().items()}
        s = spec.replace(weights_sha256=fingerprint(trained))
        save_checkpoint(
            path,
            s,
            {
                k: v.detach().clone()
                for k, v in net.state_dict().items()
                if k.startswith(("features.", "head."))
            },
            epoch=epoch,
            optimizer=opt.state_dict(),
            metrics=rows,
            best_top1=best_top1,
            config=cfg.to_dict(),
            rng=torch.get_rng_state(),
        )

    lr = cfg.warmup_start_lr
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after is not None and epoch - start_epoch >= stop_after:
                break
            te = time.perf_counter()
            train_mode(net, frozen)
            if use_cache:
                g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
                perm = torch.randperm(len(train_data), generator=g)
                batches = (
                    train_data.batch(perm[i : i + cfg.batch_size])
                    for i in range(0, len(perm), cfg.batch_size)
                )
            else:
                torch.manual_seed(cfg.seed * 1000 + epoch)
                batches = loader(train_data, cfg.batch_size, True, cfg.workers, seed=cfg.seed * 1000 + epoch)
            trained = train_epoch(
                opt,
                batches,
                logits_of(train_data),
                epoch * steps_per_epoch,
                steps_per_epoch,
                cfg,
                lr,
                autocast,
            )
            lr = trained["lr"]
            top1, vloss = evaluate_batches(net, val_batches(), logits_of(val_data), autocast)
            row = {
                "epoch": epoch + 1,
                **trained,
                "val_loss": vloss,
                "val_top1": top1,
                "seconds": time.perf_counter() - te,
            }
            best = close_epoch(rows, row, best, save, out_dir, cfg.epochs, log)
    except KeyboardInterrupt:
        save(last_path, len(rows), best)
        log(f"interrupted: saved {last_path} after epoch {len(rows)}; continue with --resume")
        raise
    plot_metrics(out_dir, rows, log)
    return rows


def _training_inputs(net, spec, split, cfg: TrainConfig, frozen: int, use_cache: bool, log):
    """(train, val) for ``fit``: image datasets (train augmented), or with ``use_cache`` the frozen
    prefix's features computed once (``_Cached``: eval input policy, no augmentation)."""

    if not use_cache:
        aug = Augment(cfg.hflip, tuple(cfg.crop_scale), cfg.jitter, cfg.rotation)
        return ImageDataset(split.train, spec.input_size, aug), ImageDataset(split.val, spec.input_size)
    t0 = time.perf_counter()
    cache_at = min(frozen, cfg.cache_at if cfg.cache_at is not None else frozen)

    def prog(name):
        return lambda d, n: (
            log(f"  caching {name} features {d}/{n}") if d == n or d % 512 < cfg.batch_size else None
        )

    tr = compute_features(
        net, cache_at, split.train, spec.input_size, cache_dir=cfg.cache_dir, progress=prog("train")
    )
    va = compute_features(
        net, cache_at, split.val, spec.input_size, cache_dir=cfg.cache_dir, progress=prog("val")
    )
    train_data = _Cached(net, frozen, _advance_cache(net, cache_at, frozen, tr[0]), tr[1], tr[2])
    val_data = _Cached(net, frozen, _advance_cache(net, cache_at, frozen, va[0]), va[1], va[2])
    log(
        f"cached features of layers [0, {frozen}) in {time.perf_counter() - t0:.1f} s "
        f"({'pooled vectors' if train_data.pooled is not None else 'maps'}; no image augmentation)"
    )
    return train_data, val_data


def prepare_model(
    arch: str,
    weights: str | None,
    size: int,
    pooling: str,
    head: str,
    classes,
    dropout=0.5,
    mean=None,
    std=None,
):
    """(spec, net) to fine-tune: trunk from ``weights``; the checkpoint's head is kept when it has the
    same kind and classes, else a new head."""
    import torch

    from retrieval.nets.heads import build_head  # lazy: loads torch only when used
    from retrieval.nets.model import trunk_widths  # lazy: loads torch and torchvision only when used

    spec, net = build(arch, weights, pooling, size)
    classes = tuple(classes)
    if not (spec.head == head and spec.class_names == classes and net.head is not None):
        torch.manual_seed(0)
        widths = spec.widths or trunk_widths(arch)
        net.head = build_head(head, int(widths[-1]), len(classes), dropout)
        spec = spec.replace(head=head, class_names=classes)
    if mean is not None:
        spec = spec.replace(mean=tuple(mean), std=tuple(std))
        net.mean.copy_(torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0)
        net.std.copy_(torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0)
    return spec, net


def evaluate_net(net, items, size: int, batch_size: int = 32) -> float:
    """Top-1 of a torch DescriptorNet with a head on ``items`` (eval input policy)."""
    import torch

    net.eval()
    correct = n = 0
    with torch.inference_mode():
        for x, s, y in loader(ImageDataset(items, size), batch_size, False, 1 if len(items) > 64 else 0):
            correct += (net.logits(x, s).argmax(1) == y).sum().item()
            n += len(y)
    return correct / max(n, 1)


def load_checkpoint_model(path, size: int | None = None):
    """(spec, net) of a vgg-retrieval checkpoint with its own arch, pooling and input size (``size``
    overrides the input size)."""

    obj = torch_load(path, "checkpoint")
    stored = ModelSpec.from_dict(obj["spec"]) if isinstance(obj, dict) and "spec" in obj else None
    if stored is None:
        return build("vgg16", str(path), "gap", size or 224)
    return build(stored.arch, str(path), stored.pooling, size or stored.input_size, stored.gem_p)


def evaluate_cached(net, frozen: int, feats, sizes, labels, batch: int = 128) -> float:
    """Top-1 of ``net`` on cached outputs of ``net.features[:frozen]``."""
    import torch

    net.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(labels), batch):
            f = net.features[frozen:](feats[i : i + batch].float())
            correct += (
                (net.head_from_features(f, sizes[i : i + batch])[1].argmax(1) == labels[i : i + batch])
                .sum()
                .item()
            )
    return correct / max(len(labels), 1)
