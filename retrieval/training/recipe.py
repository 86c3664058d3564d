"""The training recipe shared by image (``retrieval.training.train``) and video (``retrieval.video.train``)
fine-tuning: the LR schedule (linear warm-up then cosine, per step), freezing a prefix of the trunk,
resuming, one epoch of optimizer steps, evaluation, and each epoch's checkpoints and metrics files.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from retrieval.errors import UserError
from retrieval.nets.weights import torch_load

from .config import TrainConfig


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


def resume_state(last_path: Path, net, opt, log=print) -> tuple[int, list, float]:
    """For --resume: ``net``, ``opt`` and torch's RNG restored from ``last_path``; returns (epochs
    done, metrics rows, best val top-1)."""
    import torch

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


def close_epoch(
    rows: list, row: dict, best: float, save, out_dir: Path, epochs: int, log=print, has_val: bool = True
) -> float:
    """Record an epoch's ``row``: ``save(path, epoch, best)`` to best.pt when val top-1 improved
    (every epoch without validation data) and to last.pt, metrics files, one log line; returns the
    best. The checkpoints carry the best including this epoch (a resumed run compares with it)."""
    rows.append(row)
    top1 = row["val_top1"]
    if top1 > best or not has_val:
        best = top1 if has_val else best
        save(out_dir / "best.pt", row["epoch"], best)
    save(out_dir / "last.pt", row["epoch"], best)
    write_metrics(out_dir, rows)
    log(
        f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f} train {row['train_top1']:.3f} "
        f"val {top1:.4f} (best {best:.4f}) lr {row['lr']:.2e} {row['seconds']:.1f}s"
    )
    return best


def train_epoch(
    opt,
    batches,
    logits_and_labels,
    step: int,
    steps_per_epoch: int,
    cfg,
    lr: float,
    autocast: bool = False,
    grad_clip: float = 0.0,
) -> dict:
    """One epoch of optimizer steps over ``batches`` (``logits_and_labels(batch)`` -> (logits, labels)),
    the first at global step ``step``: per-step LR, label-smoothed cross-entropy, bf16 autocast for the
    forward pass when ``autocast``, gradient-norm clipping when ``grad_clip`` > 0. Returns the metrics
    row's ``lr`` (the last step's; ``lr`` when there were no batches), ``train_loss`` and ``train_top1``."""
    import torch
    import torch.nn.functional as F

    params = [p for g in opt.param_groups for p in g["params"]]
    loss_sum, correct, n = 0.0, 0, 0
    for batch in batches:
        lr = set_lr(opt, step, steps_per_epoch, cfg)
        with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            logits, y = logits_and_labels(batch)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip and grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        step += 1
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return {"lr": lr, "train_loss": loss_sum / max(n, 1), "train_top1": correct / max(n, 1)}


def evaluate_batches(net, batches, logits_and_labels, autocast: bool = False) -> tuple[float, float]:
    """(top-1, mean cross-entropy) of ``net`` in eval mode over ``batches`` (NaN when there are none)."""
    import torch
    import torch.nn.functional as F

    net.eval()
    correct, loss_sum, n = 0, 0.0, 0
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        for batch in batches:
            logits, y = logits_and_labels(batch)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
            n += len(y)
    return (correct / n if n else float("nan")), (loss_sum / n if n else float("nan"))


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
