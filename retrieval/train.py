"""Fine-tuning the descriptor trunk and a classifier head on an ImageFolder dataset.

The recipe (all flags of ``vgg-retrieval train``): augmentation (random resized crop, horizontal
flip 0.5, colour jitter +-0.2, rotation +-15 degrees), SGD (momentum 0.9, weight decay 5e-4), label
smoothing 0.1, a linear warm-up from 1e-4 to the base LR over 5 epochs then cosine annealing to
``min_lr`` (per step), per-group LRs (the head ``head_lr_mult`` x the trunk's), the first ``freeze``
feature layers frozen, bf16 autocast where the CPU has native bf16 (AVX512-BF16/AMX).

With a frozen prefix, ``cache`` computes the prefix's output once (eval input policy, no
augmentation) and trains the rest on it: with the whole trunk frozen and the ``gap-linear`` head the
cache is reduced to the pooled 512-d vectors and an epoch takes milliseconds.

Each epoch writes ``last.pt`` (and ``best.pt`` when val top-1 improves), ``metrics.csv`` and
``metrics.png``; an interrupt saves ``last.pt`` first; ``resume`` continues from it.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError


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


def lr_at(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Base LR at optimizer step ``step``: linear warm-up then cosine annealing."""
    t = step / max(1, steps_per_epoch)  # epochs done, fractional
    total = float(cfg.epochs)
    warm = min(float(cfg.warmup_epochs), total)
    if warm > 0 and t < warm:
        return cfg.warmup_start_lr + (cfg.lr - cfg.warmup_start_lr) * t / warm
    span = max(total - warm, 1e-9)
    progress = min(max((t - warm) / span, 0.0), 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def freeze_prefix(net, n: int) -> int:
    """Freeze ``net.features[:n]`` (n = -1: all); returns the number of frozen layers."""
    layers = len(net.features)
    n = layers if n < 0 or n > layers else n
    for i, m in enumerate(net.features):
        for p in m.parameters():
            p.requires_grad_(i >= n)
    return n


def param_groups(net, cfg: TrainConfig):
    trunk = [p for p in net.features.parameters() if p.requires_grad]
    head = [p for p in net.head.parameters() if p.requires_grad] if net.head is not None else []
    groups = []
    if trunk:
        groups.append({"params": trunk, "lr_mult": 1.0, "name": "trunk"})
    if head:
        groups.append({"params": head, "lr_mult": cfg.head_lr_mult, "name": "head"})
    return groups


def resume_state(last_path: Path, net, opt, log=print) -> tuple[int, list, float]:
    """For --resume: ``net``, ``opt`` and torch's RNG restored from ``last_path``; returns (epochs
    done, metrics rows, best val top-1)."""
    import torch

    from .weights import torch_load

    if not last_path.exists():
        raise UserError(f"nothing to resume: {last_path} not found")
    ck = torch_load(last_path, "checkpoint")
    net.load_state_dict({**net.state_dict(), **ck["state_dict"]})
    opt.load_state_dict(ck["optimizer"])
    start_epoch, rows, best = int(ck["epoch"]), list(ck.get("metrics", [])), float(ck.get("best_top1", -1.0))
    if "rng" in ck:
        torch.set_rng_state(ck["rng"])
    log(f"resumed from {last_path} after epoch {start_epoch}")
    return start_epoch, rows, best


def set_lr(opt, step: int, steps_per_epoch: int, cfg) -> float:
    """Every param group at ``lr_at(step)`` x its ``lr_mult``; returns the base LR."""
    base = lr_at(step, steps_per_epoch, cfg)
    for g in opt.param_groups:
        g["lr"] = base * g["lr_mult"]
    return base


def train_mode(net, frozen: int) -> None:
    net.train()
    for i, m in enumerate(net.features):
        if i < frozen:
            m.eval()  # frozen BN layers keep their statistics


def close_epoch(rows: list, row: dict, best: float, save, out_dir: Path, epochs: int, log=print,
                has_val: bool = True) -> float:
    """Record an epoch's ``row``: ``save(path, epoch)`` to best.pt when val top-1 improved (every
    epoch without validation data) and to last.pt, metrics files, one log line; returns the best."""
    rows.append(row)
    top1 = row["val_top1"]
    if top1 > best or not has_val:
        best = top1 if has_val else best
        save(out_dir / "best.pt", row["epoch"])
    save(out_dir / "last.pt", row["epoch"])
    write_metrics(out_dir, rows)
    log(f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f} train {row['train_top1']:.3f} "
        f"val {top1:.4f} (best {best:.4f}) lr {row['lr']:.2e} {row['seconds']:.1f}s")
    return best


class _Cached:
    """Training inputs from cached prefix features: maps (fp16) or pooled vectors."""

    def __init__(self, net, frozen: int, feats, sizes, labels):
        import torch

        self.sizes, self.labels = sizes, labels
        self.pooled = None
        self.maps = feats
        if frozen >= len(net.features) and not getattr(net.head, "uses_map", False):
            with torch.no_grad():  # nothing trainable before the pooling: keep only the vectors
                self.pooled = torch.cat([net.pool(feats[i:i + 256].float(), sizes[i:i + 256])
                                         for i in range(0, len(feats), 256)])
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
        return torch.cat([mid(feats[i:i + 64].float()).to(torch.float16) for i in range(0, len(feats), 64)])


def fit(net, spec, split, out_dir, cfg: TrainConfig, resume: bool = False, log=print, stop_after: int | None = None):
    """Train ``net`` (a DescriptorNet with a head) on ``split``; returns the metrics rows.

    ``stop_after`` ends the run after that many epochs of this call (tests; like an interrupt)."""
    import torch
    import torch.nn.functional as F

    from .data import Augment, ImageDataset, compute_features, loader
    from .weights import fingerprint, save_checkpoint

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if net.head is None:
        raise ValueError("fit() needs a DescriptorNet with a classifier head")
    frozen = freeze_prefix(net, cfg.freeze)
    use_cache = cfg.cache and frozen > 0
    groups = param_groups(net, cfg)
    opt = torch.optim.SGD(groups, lr=cfg.warmup_start_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    last_path = out_dir / "last.pt"
    start_epoch, rows, best = resume_state(last_path, net, opt, log) if resume else (0, [], -1.0)
    autocast = cfg.bf16 == "on" or (cfg.bf16 == "auto" and cpu_has_bf16())

    # ---- inputs ----
    t0 = time.perf_counter()
    if use_cache:
        cache_at = min(frozen, cfg.cache_at if cfg.cache_at is not None else frozen)

        def prog(name):
            return lambda d, n: log(f"  caching {name} features {d}/{n}") if d == n or d % 512 < cfg.batch_size else None

        tr = compute_features(net, cache_at, split.train, spec.input_size, cache_dir=cfg.cache_dir, progress=prog("train"))
        va = compute_features(net, cache_at, split.val, spec.input_size, cache_dir=cfg.cache_dir, progress=prog("val"))
        train_data = _Cached(net, frozen, _advance_cache(net, cache_at, frozen, tr[0]), tr[1], tr[2])
        val_data = _Cached(net, frozen, _advance_cache(net, cache_at, frozen, va[0]), va[1], va[2])
        log(f"cached features of layers [0, {frozen}) in {time.perf_counter() - t0:.1f} s "
            f"({'pooled vectors' if train_data.pooled is not None else 'maps'}; no image augmentation)")
        n_train = len(train_data)
    else:
        aug = Augment(cfg.hflip, tuple(cfg.crop_scale), cfg.jitter, cfg.rotation)
        train_ds = ImageDataset(split.train, spec.input_size, aug)
        val_ds = ImageDataset(split.val, spec.input_size)
        n_train = len(train_ds)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)

    def evaluate():
        net.eval()
        correct, loss_sum, n = 0, 0.0, 0
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            if use_cache:
                for i in range(0, len(val_data), 128):
                    idx = torch.arange(i, min(i + 128, len(val_data)))
                    x, s, y = val_data.batch(idx)
                    logits = _suffix_logits(net, frozen, x, s, val_data.pooled is not None).float()
                    loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                    correct += (logits.argmax(1) == y).sum().item()
                    n += len(y)
            else:
                for x, s, y in loader(val_ds, cfg.batch_size, False, cfg.workers):
                    _, logits = net.forward_both(x, s)
                    logits = logits.float()
                    loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                    correct += (logits.argmax(1) == y).sum().item()
                    n += len(y)
        return (correct / n if n else float("nan")), (loss_sum / n if n else float("nan"))

    def save(path, epoch):
        trained = {f"features.{k}": v for k, v in net.features.state_dict().items()}
        s = spec.replace(weights_sha256=fingerprint(trained))
        save_checkpoint(path, s, {k: v.detach().clone() for k, v in net.state_dict().items()
                                  if k.startswith(("features.", "head."))},
                        epoch=epoch, optimizer=opt.state_dict(), metrics=rows, best_top1=best,
                        config=cfg.to_dict(), rng=torch.get_rng_state())

    epoch = start_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after is not None and epoch - start_epoch >= stop_after:
                break
            te = time.perf_counter()
            train_mode(net, frozen)
            step = epoch * steps_per_epoch
            loss_sum, correct, n = 0.0, 0, 0
            if use_cache:
                g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
                perm = torch.randperm(len(train_data), generator=g)
                batches = (train_data.batch(perm[i:i + cfg.batch_size]) for i in range(0, len(perm), cfg.batch_size))
            else:
                torch.manual_seed(cfg.seed * 1000 + epoch)
                batches = loader(train_ds, cfg.batch_size, True, cfg.workers, seed=cfg.seed * 1000 + epoch)
            for x, s, y in batches:
                lr = set_lr(opt, step, steps_per_epoch, cfg)
                with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                    if use_cache:
                        logits = _suffix_logits(net, frozen, x, s, train_data.pooled is not None)
                    else:
                        logits = net.forward_both(x, s)[1]
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                loss_sum += loss.item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
                n += len(y)
            top1, vloss = evaluate()
            row = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(n, 1), "train_top1": correct / max(n, 1),
                   "val_loss": vloss, "val_top1": top1, "seconds": time.perf_counter() - te}
            best = close_epoch(rows, row, best, save, out_dir, cfg.epochs, log)
    except KeyboardInterrupt:
        save(last_path, len(rows))
        log(f"interrupted: saved {last_path} after epoch {len(rows)}; continue with --resume")
        raise
    plot_metrics(out_dir, rows, log)
    return rows


def write_metrics(out_dir: Path, rows) -> None:
    if not rows:
        return
    with open(Path(out_dir) / "metrics.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def plot_metrics(out_dir: Path, rows, log=print) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no metrics.png (metrics.csv has the numbers)")
        return None
    if not rows:
        return None
    ep = [r["epoch"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [r["train_loss"] for r in rows], label="train")
    a.plot(ep, [r["val_loss"] for r in rows], label="val")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend()
    b.plot(ep, [r["train_top1"] for r in rows], label="train")
    b.plot(ep, [r["val_top1"] for r in rows], label="val")
    b.set_xlabel("epoch"), b.set_ylabel("top-1"), b.legend()
    fig.tight_layout()
    path = Path(out_dir) / "metrics.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def prepare_model(arch: str, weights: str | None, size: int, pooling: str, head: str, classes, dropout=0.5,
                  mean=None, std=None):
    """(spec, net) to fine-tune: trunk from ``weights``; the checkpoint's head is kept when it has the
    same kind and classes, else a new head."""
    import torch

    from .builder import build
    from .heads import build_head
    from .model import trunk_widths

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

    from .data import ImageDataset, loader

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
    from .builder import build
    from .spec import ModelSpec
    from .weights import torch_load

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
            f = net.features[frozen:](feats[i:i + batch].float())
            correct += (net.head_from_features(f, sizes[i:i + batch])[1].argmax(1) == labels[i:i + batch]).sum().item()
    return correct / max(len(labels), 1)
