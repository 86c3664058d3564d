"""Training video classifiers (``vgg-retrieval train-video``) with the image recipe.

More: docs/design-notes.md (``retrieval.video.train``)."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.errors import UserError
from retrieval.nets.weights import (
    CHECKPOINT_FORMAT,
    fingerprint,
    load_weights,
    requested_weights,
    save_checkpoint,
    torch_load,
)
from retrieval.training.recipe import (
    close_epoch,
    evaluate_batches,
    freeze_prefix,
    plot_metrics,
    resume_state,
    train_epoch,
    train_mode,
)

from .clips import ClipDataset, clip_loader
from .models import VIDEO_TASK, VideoSpec, build_video_net, load_2d_trunk, trunk_state


@dataclass
class VideoTrainConfig:
    epochs: int = 30
    batch_size: int = 8
    lr: float = 0.01
    min_lr: float = 0.0
    head_lr_mult: float = 10.0
    warmup_epochs: float = 2.0
    warmup_start_lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    freeze: int = 0  # feature modules frozen from the input side; -1: the whole trunk
    cache: bool = True  # vgg-lstm with a frozen trunk: frame descriptors computed once
    crop_scale: tuple = (0.6, 1.0)
    grad_clip: float = 5.0
    seed: int = 0
    workers: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["crop_scale"] = list(self.crop_scale)
        return d


def param_groups(net, cfg: VideoTrainConfig):
    trunk_ids = {id(p) for p in net.features.parameters()}
    trunk = [p for p in net.features.parameters() if p.requires_grad]
    rest = [p for p in net.parameters() if p.requires_grad and id(p) not in trunk_ids]
    groups = []
    if trunk:
        groups.append({"params": trunk, "lr_mult": 1.0, "name": "trunk"})
    if rest:
        groups.append({"params": rest, "lr_mult": cfg.head_lr_mult, "name": "head"})
    return groups


def checkpoint_state(net) -> dict:
    """What a checkpoint stores of ``net``: every tensor but the normalisation buffers (in the spec)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items() if k not in ("mean", "std")}


def datasets(spec: VideoSpec, split, cfg: VideoTrainConfig):

    common = dict(
        frames=spec.frames,
        size=spec.input_size,
        fit=spec.fit,
        sampling=spec.sampling,
        stride=spec.stride,
        fixed=spec.model == "vgg3d",
    )
    train = ClipDataset(split.train, train=True, crop_scale=tuple(cfg.crop_scale), seed=cfg.seed, **common)
    val = ClipDataset(split.val, **common)
    return train, val


def frame_descriptor_cache(net, dataset, batch_size: int = 8, workers: int = 0, log=None):
    """(descriptors [N, T, C], lengths [N], labels [N]) of a VGG-LSTM's frozen trunk over ``dataset``."""
    import torch

    descs, lengths, labels = [], [], []
    was = net.training
    net.eval()
    t = 0
    with torch.inference_mode():
        for clips, sizes, lens, ys in clip_loader(dataset, batch_size, False, workers):
            d = net.frame_descriptors(clips, sizes, lens)
            t = max(t, d.shape[1])
            descs.append(d)
            lengths.append(lens)
            labels.append(ys)
            if log and sum(len(x) for x in labels) % (batch_size * 16) < batch_size:
                log(f"  frame descriptors {sum(len(x) for x in labels)}/{len(dataset)}")
    net.train(was)
    if not descs:
        return (
            torch.zeros(0, 1, net.spec.conv_widths[-1]),
            torch.zeros(0, dtype=torch.int64),
            torch.zeros(0, dtype=torch.int64),
        )
    out = torch.zeros(sum(len(d) for d in descs), t, descs[0].shape[2])
    i = 0
    for d in descs:
        out[i : i + len(d), : d.shape[1]] = d
        i += len(d)
    return out, torch.cat(lengths), torch.cat(labels)


def fit_video(
    net,
    spec: VideoSpec,
    split,
    out_dir,
    cfg: VideoTrainConfig,
    resume: bool = False,
    log=print,
    stop_after: int | None = None,
):
    """Train ``net`` (VGG3D or VGGLSTM built for ``spec``) on ``split``; returns the metrics rows.

    ``stop_after`` ends the run after that many epochs of this call (tests; like an interrupt)."""
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    frozen = freeze_prefix(net, cfg.freeze)
    cached = spec.model == "vgg-lstm" and cfg.cache and frozen >= len(net.features)
    opt = torch.optim.SGD(
        param_groups(net, cfg), lr=cfg.warmup_start_lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    last_path = out_dir / "last.pt"
    start_epoch, rows, best = resume_state(last_path, net, opt, log) if resume else (0, [], -1.0)

    train_ds, val_ds = datasets(spec, split, cfg)
    if cached:
        t0 = time.perf_counter()
        train_data = frame_descriptor_cache(
            net, val_ds.__class__(split.train, **_eval_kwargs(val_ds)), cfg.batch_size, cfg.workers
        )
        val_data = frame_descriptor_cache(net, val_ds, cfg.batch_size, cfg.workers)
        log(
            f"frame descriptors of {len(split.train)} + {len(split.val)} clips computed once in "
            f"{time.perf_counter() - t0:.1f} s (frozen trunk; no augmentation)"
        )
    steps_per_epoch = math.ceil(len(split.train) / cfg.batch_size)

    def batches(data, shuffle, epoch):
        if cached:
            desc, lens, ys = data
            idx = (
                torch.randperm(len(ys), generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
                if shuffle
                else torch.arange(len(ys))
            )
            for i in range(0, len(idx), cfg.batch_size):
                j = idx[i : i + cfg.batch_size]
                yield desc[j], None, lens[j], ys[j]
        else:
            data.set_epoch(epoch)
            yield from clip_loader(data, cfg.batch_size, shuffle, cfg.workers, seed=cfg.seed * 1000 + epoch)

    def logits_and_labels(batch):
        x, sizes, lens, y = batch
        return (net.classify_descriptors(x, lens) if cached else net(x, sizes, lens)), y

    def save(path, epoch, best_top1):
        trained = trunk_state(net)
        s = spec.replace(weights_sha256=fingerprint(trained))
        save_checkpoint(
            path,
            s,
            checkpoint_state(net),
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
            torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout
            trained = train_epoch(
                opt,
                batches(train_data if cached else train_ds, True, epoch),
                logits_and_labels,
                epoch * steps_per_epoch,
                steps_per_epoch,
                cfg,
                lr,
                grad_clip=cfg.grad_clip,
            )
            lr = trained["lr"]
            top1, vloss = evaluate_batches(
                net, batches(val_data if cached else val_ds, False, 0), logits_and_labels
            )
            row = {
                "epoch": epoch + 1,
                **trained,
                "val_loss": vloss,
                "val_top1": top1,
                "seconds": time.perf_counter() - te,
            }
            # no val clips: best.pt is the last epoch
            best = close_epoch(rows, row, best, save, out_dir, cfg.epochs, log, has_val=bool(split.val))
    except KeyboardInterrupt:
        save(last_path, len(rows), best)
        log(f"interrupted: saved {last_path} after epoch {len(rows)}; continue with --resume")
        raise
    plot_metrics(out_dir, rows, log)
    return rows


def _eval_kwargs(ds) -> dict:
    return dict(
        frames=ds.frames, size=ds.size, fit=ds.fit, sampling=ds.sampling, stride=ds.stride, fixed=ds.fixed
    )


# ---- building and loading ----


def load_video_checkpoint(path):
    """(spec, net, raw checkpoint dict) of a video classifier checkpoint, read with weights_only=True."""

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    obj = torch_load(path, "checkpoint")
    if not is_video_checkpoint(obj):
        raise UserError(
            f"{path} is not a video classifier checkpoint (train one with vgg-retrieval train-video)"
        )
    try:
        spec = VideoSpec.from_dict(obj["spec"])
    except (TypeError, ValueError) as e:
        raise UserError(f"checkpoint {path} has an invalid spec: {e}") from None
    net = build_video_net(spec)
    try:
        net.load_state_dict({**net.state_dict(), **obj.get("state_dict", {})}, strict=True)
    except RuntimeError as e:
        raise UserError(
            f"checkpoint {path} does not fit its own spec: {str(e).splitlines()[0][:200]}"
        ) from None
    return spec, net.eval(), obj


def is_video_checkpoint(obj) -> bool:

    return (
        isinstance(obj, dict)
        and obj.get("format") == CHECKPOINT_FORMAT
        and isinstance(obj.get("spec"), dict)
        and obj["spec"].get("task") == VIDEO_TASK
    )


def prepare_video_model(spec: VideoSpec, weights: str | None, seed: int = 0):
    """(spec, net) to train: random (seeded) layers, then ``weights`` into the trunk: ``random``; a
    2D VGG trunk (a torchvision name, a .pth state_dict, an image checkpoint), inflated for VGG3D;
    or a video checkpoint of the same model, arch and widths (its head too when the classes match)."""
    import torch

    net = build_video_net(spec, seed)
    name = requested_weights(weights)
    if name == "random":
        return spec.replace(weights="random", weights_sha256=fingerprint(trunk_state(net))), net
    path = Path(name)
    if path.is_file():
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            obj = None  # load_weights below reports it
        if is_video_checkpoint(obj):
            src, src_net, _ = load_video_checkpoint(path)
            if (src.model, src.arch, src.conv_widths) != (spec.model, spec.arch, spec.conv_widths):
                raise UserError(
                    f"checkpoint {path} is a {src.model} {src.arch} with widths {list(src.conv_widths)}: "
                    f"pass --model {src.model} --arch {src.arch}"
                )
            keep = src_net.state_dict()
            if src.class_names != spec.class_names or (
                src.model == "vgg-lstm"
                and (src.rnn, src.hidden, src.rnn_layers) != (spec.rnn, spec.hidden, spec.rnn_layers)
            ):
                keep = {k: v for k, v in keep.items() if k.startswith("features.")}
            if spec.model == "vgg3d" and src.frames != spec.frames:
                keep = {k: v for k, v in keep.items() if k.startswith(("features.", "head."))}
            net.load_state_dict({**net.state_dict(), **keep})
            return spec.replace(
                weights=str(path.resolve()), weights_sha256=fingerprint(trunk_state(net))
            ), net
    lw = load_weights(spec.arch, name, spec.widths)
    try:
        load_2d_trunk(net, lw.features)
    except (ValueError, RuntimeError) as e:
        raise UserError(
            f"weights {lw.source} do not fit {spec.model} {spec.arch}: {str(e).splitlines()[0][:200]}"
        ) from None
    return spec.replace(weights=lw.source, weights_sha256=fingerprint(lw.features)), net


def predict_clips(net, spec: VideoSpec, paths, batch_size: int = 4):
    """Class probabilities [N, classes] for clip paths (eval sampling and fit)."""
    import torch

    ds = ClipDataset(
        [(str(p), 0) for p in paths],
        spec.frames,
        spec.input_size,
        spec.fit,
        spec.sampling,
        spec.stride,
        fixed=spec.model == "vgg3d",
    )
    net.eval()
    out = []
    with torch.inference_mode():
        for clips, sizes, lens, _ in clip_loader(ds, batch_size, False):
            out.append(torch.softmax(net(clips, sizes, lens), dim=1))
    return torch.cat(out) if out else torch.zeros(0, len(spec.class_names))


def evaluate_clips(net, spec: VideoSpec, items, batch_size: int = 4) -> float:
    """Top-1 of ``net`` on ``(clip path, label)`` items."""
    if not items:
        return float("nan")
    p = predict_clips(net, spec, [f for f, _ in items], batch_size)
    return float((p.argmax(1).numpy() == [y for _, y in items]).mean())
