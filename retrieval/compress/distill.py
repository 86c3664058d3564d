"""Label-free recovery of a pruned descriptor model: descriptor distillation on unlabelled photos.

More: docs/design-notes.md (``retrieval.compress.distill``)."""

from __future__ import annotations

import random
import time

import numpy as np

from retrieval.nets.weights import fingerprint, save_checkpoint
from retrieval.preprocess import shape_groups
from retrieval.training.data import Augment

from .distill_data import DistillConfig, _TeacherCache, _Views, plain_view


def _cosine_loss(student_desc, target):
    return (1.0 - (student_desc * target).sum(dim=1)).mean()


def _masked_cell_mean(v, sizes):
    """Mean of ``v`` [N, 1, h, w] over each image's valid conv5 cells (as the pooling masks them)."""
    import torch

    from retrieval.nets.model import FEATURE_STRIDE  # lazy: loads torch and torchvision only when used

    n, _, h, w = v.shape
    rows = torch.arange(h).view(1, 1, h, 1) * FEATURE_STRIDE
    cols = torch.arange(w).view(1, 1, 1, w) * FEATURE_STRIDE
    mask = ((rows < sizes[:, 0].view(n, 1, 1, 1)) & (cols < sizes[:, 1].view(n, 1, 1, 1))).to(v.dtype)
    return (v * mask).sum(dim=(1, 2, 3)) / mask.sum(dim=(1, 2, 3)).clamp(min=1.0)


def _map_loss(fs, ft, sizes):
    """1 - cosine of the channel vectors of every valid conv5 cell (student vs teacher)."""
    import torch.nn.functional as F

    cos = (F.normalize(fs, dim=1) * F.normalize(ft, dim=1)).sum(dim=1, keepdim=True)
    return (1.0 - _masked_cell_mean(cos, sizes)).mean()


def _restrict(desc, channels):
    """Teacher descriptors restricted to the student's kept last-conv channels, renormalised."""
    import torch.nn.functional as F

    return desc if channels is None else F.normalize(desc[:, channels], dim=1)


def _train_mode(net) -> None:
    from torch import nn

    net.train()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()  # a few small augmented batches must not move the running statistics


def _reconstruct_stage(student, teacher, kept, paths, cfg: DistillConfig, spec, progress):
    import torch

    from .reconstruct import reconstruct  # lazy: loads torch only when used

    sample = (
        paths
        if len(paths) <= cfg.reconstruct_images
        else random.Random(cfg.seed).sample(paths, cfg.reconstruct_images)
    )
    if spec is not None:  # the model's own input policy, at its own size unless reconstruct_size
        geom = spec.replace(input_size=cfg.reconstruct_size or spec.input_size).input_geometry
    else:
        geom = int(cfg.reconstruct_size or cfg.size)
    trim = bool(spec.trim_borders) if spec is not None else False
    prep = [plain_view(p, geom, trim) for p in sample]
    groups = [
        (
            torch.from_numpy(np.stack([prep[n][0] for n in g])),
            torch.tensor([prep[n][1] for n in g], dtype=torch.int64),
        )
        for g in shape_groups([a for a, _ in prep])
    ]
    cb = (lambda d, n: progress("reconstruct", d, n, {})) if progress else None
    return reconstruct(
        student,
        teacher,
        kept,
        [g[0] for g in groups],
        [g[1] for g in groups],
        ridge=cfg.reconstruct_ridge,
        seed=cfg.seed,
        progress=cb,
    )


def distill(
    student,
    teacher,
    paths,
    cfg: DistillConfig | None = None,
    *,
    spec=None,
    teacher_vectors=None,
    kept: dict | None = None,
    progress=None,
) -> dict:
    """Train ``student`` (a pruned DescriptorNet; in place) to give ``teacher``'s descriptors on the
    unlabelled photos ``paths``. ``teacher_vectors`` [N, D]: the teacher's stored descriptors of
    the plain views (``indexer.student.index_targets``), so the teacher runs on augmented views only; ``teacher``
    may be None when nothing else needs it (``augmented_views=0``, ``reconstruct_images=0``).
    ``kept``: ``retrieval.compress.prune.prune_model``'s kept channels (the descriptor's channel map when the
    last conv was pruned). ``spec``: the model's spec (input policy and border trimming of plain
    views; without it, ``size`` squares).
    ``progress(stage, done, total, info)`` is called per reconstructed layer and per batch.
    Returns a report: reconstruct residuals, per-epoch mean loss and seconds."""
    import math

    import torch
    import torch.nn.functional as F

    from .prune import conv_positions  # lazy: loads torch only when used

    cfg = cfg or DistillConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    kept = kept or {}
    if teacher is None and (
        cfg.augmented_views > 0 or cfg.reconstruct_images > 0 or teacher_vectors is None or cfg.map_weight > 0
    ):
        raise ValueError("a teacher network is needed for augmented views, reconstruction and the map loss")
    last = kept.get(len(conv_positions(student.features)) - 1)
    trim = bool(spec.trim_borders) if spec is not None else False
    report: dict = {"photos": len(paths), "config": {k: str(v) for k, v in vars(cfg).items()}, "epochs": []}
    if teacher is not None:
        teacher.eval()
    if cfg.reconstruct_images > 0 and teacher is not None:
        t = time.perf_counter()
        report["reconstruct_residuals"] = _reconstruct_stage(
            student, teacher, kept, paths, cfg, spec, progress
        )
        report["reconstruct_seconds"] = time.perf_counter() - t
    if cfg.epochs <= 0:
        return report
    stored = (
        None
        if teacher_vectors is None
        else _restrict(torch.as_tensor(np.asarray(teacher_vectors, np.float32)), last)
    )
    cache = _TeacherCache(cfg.cache_dir, _teacher_id(teacher, spec), cfg) if teacher is not None else None
    # plain views as the index prepares them (its stored descriptors are of those), augmented ones at cfg.size
    views = _Views(
        paths, cfg.size, cfg.augment, trim, cfg.seed, spec.input_geometry if spec is not None else None
    )
    keys = ([(i, 0) for i in range(len(paths))] if cfg.plain_views else []) + [
        (i, j) for i in range(len(paths)) for j in range(1, cfg.augmented_views + 1)
    ]
    if not keys:
        raise ValueError("no views: enable plain_views or augmented_views")
    params = [p for p in student.features.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    steps = cfg.epochs * math.ceil(len(keys) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k / steps, 1.0)))
    )
    rng = random.Random(cfg.seed)
    for epoch in range(cfg.epochs):
        t, total, n = time.perf_counter(), 0.0, 0
        order = keys[:]
        rng.shuffle(order)
        for b in range(0, len(order), cfg.batch_size):
            batch = order[b : b + cfg.batch_size]
            groups = views.batch(batch, epoch)
            target, tmaps = _targets(
                teacher, cache, stored, batch, groups, epoch, last, cfg.map_weight > 0, paths
            )
            _train_mode(student)
            loss = 0.0
            for g, (pos, x, s) in enumerate(groups):  # one forward pass per input shape
                fs = student.features(student.prepare(x, s))
                share = len(pos) / len(batch)
                loss = loss + share * _cosine_loss(F.normalize(student.pool(fs, s), dim=1), target[pos])
                if tmaps is not None:
                    loss = loss + share * cfg.map_weight * _map_loss(fs, tmaps[g], s)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch)
            n += len(batch)
            if progress:
                progress("distill", epoch * len(order) + n, cfg.epochs * len(order), {"loss": total / n})
        if cache is not None:
            cache.save()
        report["epochs"].append(
            {"epoch": epoch + 1, "loss": total / max(n, 1), "seconds": time.perf_counter() - t}
        )
    student.eval()
    return report


def _teacher_id(teacher, spec=None) -> str:
    """What the teacher's cached descriptors depend on: its trunk's weights, its pooling and scales,
    and (plain views) the input policy, size and border trimming they were prepared with."""

    weights = fingerprint({k: v for k, v in teacher.state_dict().items() if k.startswith("features")})[:20]
    inputs = "" if spec is None else f"|{spec.input_policy}|{spec.input_size}|{spec.trim_borders}"
    return f"{weights}|{teacher.pooling}|{teacher.gem_p}|{teacher.scales}{inputs}"


def _view_key(path: str, epoch: int, j: int) -> str:
    """The teacher cache's key of view ``j`` of ``path`` in ``epoch``: a plain view (j = 0) is the
    same in every epoch, so the teacher runs on it once."""
    return f"{path}|{epoch if j else 0}|{j}"


def _targets(teacher, cache, stored, batch, groups, epoch: int, last, want_map: bool, paths):
    """(teacher descriptors [B, D] for the student's channels in ``batch`` order, the teacher's conv5
    map of each of ``groups`` (``_Views.batch``) or None)."""
    import torch
    import torch.nn.functional as F

    out: list = [None] * len(batch)
    if not want_map:
        for n, (i, j) in enumerate(batch):
            if j == 0 and stored is not None:
                out[n] = stored[i]
            elif cache is not None and _view_key(paths[i], epoch, j) in cache.mem:
                out[n] = _restrict(cache.mem[_view_key(paths[i], epoch, j)].float()[None], last)[0]
    tmaps = [] if want_map else None
    for pos, x, s in groups:
        todo = [k for k, n in enumerate(pos) if out[n] is None]  # all of them with want_map
        if not todo:
            continue
        with torch.no_grad():
            ft = teacher.features(teacher.prepare(x[todo], s[todo]))
            d = F.normalize(teacher.pool(ft, s[todo]), dim=1)
        for k, row in zip(todo, d):
            i, j = batch[pos[k]]
            cache.mem[_view_key(paths[i], epoch, j)] = row.to(torch.float16)
            cache.dirty = True
            out[pos[k]] = _restrict(row[None], last)[0]
        if want_map:
            tmaps.append(ft if last is None else ft[:, last])
    return torch.stack(out), tmaps


def descriptor_cosine(
    student,
    paths,
    size,
    teacher=None,
    teacher_vectors=None,
    kept: dict | None = None,
    trim: bool = False,
    batch_size: int = 16,
) -> np.ndarray:
    """Per-photo cosine between the student's and the teacher's descriptors of the plain views at
    ``size`` (an int: padded squares; ``spec.input_geometry``: as the model's index prepares them),
    teacher run, or its stored ``teacher_vectors``."""
    import torch

    from .prune import conv_positions  # lazy: loads torch only when used

    last = (kept or {}).get(len(conv_positions(student.features)) - 1)
    square = size if isinstance(size, int) else 224  # the augmentation size, unused for plain views
    views = _Views(paths, square, Augment(), trim, 0, geometry=size)
    out = np.zeros(len(paths), dtype=np.float32)
    student.eval()
    with torch.no_grad():
        for b in range(0, len(paths), batch_size):
            keys = [(i, 0) for i in range(b, min(b + batch_size, len(paths)))]
            for pos, x, s in views.batch(keys, 0):
                rows = [b + k for k in pos]
                t = (
                    teacher(x, s)
                    if teacher is not None
                    else torch.as_tensor(np.asarray(teacher_vectors[rows]))
                )
                out[rows] = (student(x, s) * _restrict(t.float(), last)).sum(1).numpy()
    return out


def save_student(path, spec, net, **extra) -> None:
    """The distilled student as a normal checkpoint (``features.*`` and ``head.*``), fingerprint updated."""

    state = {
        k: v.detach().clone() for k, v in net.state_dict().items() if k.startswith(("features.", "head."))
    }
    fp = fingerprint({k: v for k, v in state.items() if k.startswith("features.")})
    save_checkpoint(path, spec.replace(weights_sha256=fp), state, **extra)
