"""The model pipeline: ``stats``, ``train``, ``prune``, ``optimize``, ``quantize``, ``benchmark``
(over ``retrieval.training.pipeline``, ``retrieval.compress.prune``, ``indexer.student`` and
``retrieval.compress.quantize``).
See docs/model-pipeline.md."""

from __future__ import annotations

import json
from pathlib import Path

import click

from indexer import optimize_index
from retrieval import ARCHS, POOLINGS
from retrieval.compress import EPOCHS, ROUND_TO
from retrieval.training import DEFAULT_CACHE

from .options import index_option


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--size", type=int, default=None, help="Resize the longer side first (as the model does).")
@click.option("--json", "as_json", is_flag=True)
def stats(data, size, as_json):
    """Exact per-channel mean/std of every image under DATA (pixels in [0,1], streaming)."""
    from retrieval.training import dataset_stats  # lazy: loads torch only when used

    res = dataset_stats(data, size)
    if as_json:
        click.echo(json.dumps(res))
    else:
        click.echo(f"{res['images']} images, {res['pixels']} pixels: mean {res['mean']} std {res['std']}")


def _recipe_options(f):
    opts = [
        click.option("--epochs", type=int, default=30, show_default=True),
        click.option("--batch-size", type=int, default=32, show_default=True),
        click.option("--lr", type=float, default=0.01, show_default=True, help="Base LR (trunk)."),
        click.option("--min-lr", type=float, default=0.0, show_default=True),
        click.option(
            "--head-lr-mult", type=float, default=10.0, show_default=True, help="Head LR = this x base LR."
        ),
        click.option("--warmup-epochs", type=float, default=5.0, show_default=True),
        click.option("--warmup-start-lr", type=float, default=1e-4, show_default=True),
        click.option("--momentum", type=float, default=0.9, show_default=True),
        click.option("--weight-decay", type=float, default=5e-4, show_default=True),
        click.option("--label-smoothing", type=float, default=0.1, show_default=True),
        click.option("--dropout", type=float, default=0.5, show_default=True),
        click.option(
            "--freeze",
            default="all",
            show_default=True,
            help="Feature layers frozen from the input side: a number of `features` modules, or 'all'/'none'.",
        ),
        click.option(
            "--cache/--no-cache",
            default=True,
            show_default=True,
            help="Cache the frozen prefix's features once (no image augmentation then).",
        ),
        click.option(
            "--cache-at", type=int, default=None, help="Layer at which the disk cache is kept (<= --freeze)."
        ),
        click.option(
            "--cache-dir", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True
        ),
        click.option("--hflip", type=float, default=0.5, show_default=True),
        click.option("--crop-scale", type=(float, float), default=(0.5, 1.0), show_default=True),
        click.option("--jitter", type=float, default=0.2, show_default=True),
        click.option("--rotation", type=float, default=15.0, show_default=True),
        click.option("--bf16", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--workers", type=int, default=1, show_default=True),
        click.option("--val-fraction", type=float, default=0.2, show_default=True),
        click.option("--limit-per-class", type=int, default=None, help="Use a small subset (quick runs)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder.")
@click.option("--arch", type=click.Choice(ARCHS), default="vgg16", show_default=True)
@click.option("--weights", default=None, help="Starting weights (name, .pth, or checkpoint).")
@click.option("--size", "input_size", type=int, default=128, show_default=True, help="Input size.")
@click.option("--pooling", type=click.Choice(POOLINGS), default="gap", show_default=True)
@click.option("--head", type=click.Choice(["gap-linear", "vgg"]), default="gap-linear", show_default=True)
@click.option(
    "--normalize",
    type=click.Choice(["imagenet", "data"]),
    default="imagenet",
    show_default=True,
    help="Input mean/std: ImageNet's, or the dataset's own (computed like `stats`).",
)
@click.option("--resume", is_flag=True, help="Continue OUT/last.pt.")
@_recipe_options
def train(data, out, arch, weights, input_size, pooling, head, normalize, resume, **recipe):
    """Fine-tune on an ImageFolder tree DATA (train/ + val/, else a seeded 80/20 split)."""
    from retrieval.training import train_classifier  # lazy: loads torch only when used

    train_classifier(
        data,
        out,
        arch=arch,
        weights=weights,
        input_size=input_size,
        pooling=pooling,
        head=head,
        normalize=normalize,
        resume=resume,
        log=click.echo,
        **recipe,
    )


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--ratio", type=float, default=0.3, show_default=True, help="Share of channels removed per layer."
)
@click.option(
    "--layers",
    default="all",
    show_default=True,
    help="Conv ordinals to prune (0-based: '10-11', 'all'); the last conv is always kept.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Dataset for accuracy and recovery [default: the checkpoint's].",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--recover-epochs", type=int, default=2, show_default=True)
@click.option("--recover-lr", type=float, default=0.002, show_default=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--limit-per-class", type=int, default=None)
def prune(
    checkpoint, ratio, layers, data, out, recover_epochs, recover_lr, cache_dir, batch_size, limit_per_class
):
    """L1-norm channel pruning of CHECKPOINT, then a short recovery fine-tune."""
    from retrieval.compress import prune_checkpoint  # lazy: loads torch only when used

    prune_checkpoint(
        checkpoint,
        out,
        ratio=ratio,
        layers=layers,
        data=data,
        recover_epochs=recover_epochs,
        recover_lr=recover_lr,
        cache_dir=cache_dir,
        batch_size=batch_size,
        limit_per_class=limit_per_class,
        log=click.echo,
    )


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "--calib", type=click.Path(path_type=Path), required=True, help="Dataset for calibration (train split)."
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--subset", type=int, default=300, show_default=True, help="Calibration images.")
@click.option("--val-limit", type=int, default=None, help="Check accuracy on at most this many val images.")
@click.option("--preset", type=click.Choice(["mixed", "performance"]), default="mixed", show_default=True)
@click.option(
    "--format",
    "formats",
    type=click.Choice(["openvino", "onnx", "both"]),
    default="openvino",
    show_default=True,
    help="openvino: NNCF INT8 IR in OUT/int8; onnx: ONNX Runtime QDQ INT8 model in OUT/int8-onnx; both.",
)
@click.option(
    "--for-tensorrt",
    is_flag=True,
    help="Make the ONNX INT8 model symmetric (zero point 0), as TensorRT's explicit INT8 needs.",
)
def quantize(source, calib, out, subset, val_limit, preset, formats, for_tensorrt):
    """INT8 PTQ of SOURCE (a checkpoint, or an exported model folder): NNCF for OpenVINO and/or
    ONNX Runtime static quantization (QDQ) for ONNX Runtime and TensorRT."""
    from retrieval.compress import quantize_model  # lazy: loads torch only when used

    quantize_model(
        source,
        calib,
        out,
        subset=subset,
        val_limit=val_limit,
        preset=preset,
        formats=formats,
        for_tensorrt=for_tensorrt,
        log=click.echo,
    )


@click.command()
@click.option(
    "--variant",
    "variants",
    multiple=True,
    required=True,
    help="LABEL=ENGINE:PATH (torch: checkpoint/.pth; openvino/onnxruntime: model folder). First = reference.",
)
@click.option(
    "--data", type=click.Path(path_type=Path), required=True, help="Dataset (its val split is used)."
)
@click.option("--limit", type=int, default=300, show_default=True, help="Val images for top-1 and agreement.")
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Report path prefix (.md and .json)."
)
@click.option("--threads", type=int, default=None)
@click.option("--size", type=int, default=None, help="Input size for torch weights without a stored spec.")
@click.option("--latency-runs", type=int, default=20, show_default=True)
@click.option("--throughput-batches", type=int, default=6, show_default=True)
def benchmark(variants, data, limit, out, threads, size, latency_runs, throughput_batches):
    """Compare model variants: top-1, latency, throughput, size, descriptor agreement."""
    from retrieval.compress import benchmark_variants  # lazy: loads torch only when used

    md, js = benchmark_variants(
        variants,
        data,
        out,
        limit=limit,
        threads=threads,
        size=size,
        latency_runs=latency_runs,
        throughput_batches=throughput_batches,
        log=click.echo,
    )
    click.echo(md.read_text())
    click.echo(f"wrote {md} and {js}")


@click.command()
@index_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Checkpoint to write (and OUT.json, the report).",
)
@click.option(
    "--flops",
    type=float,
    default=0.5,
    show_default=True,
    help="Share of the model's FLOPs to keep (every conv layer pruned by L1 norm; the last stays 512 wide).",
)
@click.option(
    "--photos",
    type=int,
    default=256,
    show_default=True,
    help="Distil on at most this many of the index's photos (a seeded sample).",
)
@click.option(
    "--epochs",
    type=int,
    default=EPOCHS,
    show_default=True,
    help="Gradient distillation epochs after the layer refit (0: the refit alone).",
)
@click.option(
    "--round-to",
    type=int,
    default=ROUND_TO,
    show_default=True,
    help="Kept widths are multiples of this (32: measured faster in OpenVINO INT8 than 8 at equal FLOPs).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def optimize(index_dir, out, flops, photos, epochs, round_to, quiet):
    """Prune the index's model to --flops and recover it without labels on the index's own photos:
    each layer refitted to the unpruned model's outputs, then --epochs of descriptor distillation
    (the stored descriptors are the targets of the photos as indexed; augmented views run the teacher).
    The result is a checkpoint for a new index (`index --weights OUT`): its model differs, so it
    never mixes descriptors with this index."""
    from retrieval.compress import DistillConfig  # lazy: loads torch only when used

    bar = _StageBar(quiet)
    try:
        report = optimize_index(
            index_dir,
            out,
            flops=flops,
            limit=photos,
            round_to=round_to,
            cfg=DistillConfig(epochs=epochs, reconstruct_images=photos),
            progress=bar,
        )
    finally:
        bar.close()
    s, t = report["student"], report["teacher"]
    click.echo(
        f"wrote {out}: {s['gflops']:.2f} GFLOPs (teacher {t['gflops']:.2f}), {s['params'] / 1e6:.2f} M parameters, "
        f"descriptor cosine to the teacher {report['cosine_to_teacher']['mean']:.3f} on "
        f"{report['cosine_to_teacher']['photos']} photos; report {out}.json"
    )


class _StageBar:
    """``progress(stage, done, total, info)`` as one tqdm bar per stage (none when quiet)."""

    def __init__(self, quiet: bool):
        self.quiet, self.stage, self.bar = quiet, None, None

    def __call__(self, stage, done, total, info=None):
        if self.quiet:
            return
        if stage != self.stage:
            from tqdm import tqdm

            self.close()
            self.stage, self.bar = stage, tqdm(total=total, desc=stage, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


COMMANDS = (stats, train, prune, optimize, quantize, benchmark)
