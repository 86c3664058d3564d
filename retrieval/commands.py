"""CLI commands of the model pipeline: stats, train, prune, quantize, benchmark.

``register(cli)`` adds them to the ``vgg-retrieval`` click group. See docs/model-pipeline.md.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from .errors import UserError
from .spec import ARCHS, POOLINGS

DEFAULT_CACHE = Path.home() / ".cache" / "vgg-retrieval" / "features"


def _split(data, val_fraction, seed, limit=None):
    from .data import load_split

    return load_split(data, val_fraction, seed, limit)


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--size", type=int, default=None, help="Resize the longer side first (as the model does).")
@click.option("--json", "as_json", is_flag=True)
def stats(data, size, as_json):
    """Exact per-channel mean/std of every image under DATA (pixels in [0,1], streaming)."""
    from .data import IMAGE_EXTS, channel_stats

    if not Path(data).is_dir():
        raise UserError(f"dataset folder not found: {data}")
    paths = sorted(p for p in Path(data).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    if not paths:
        raise UserError(f"no images under {data}")
    t = time.perf_counter()
    mean, std, n = channel_stats(paths, size)
    res = {"images": len(paths), "pixels": int(n), "mean": [round(float(v), 6) for v in mean],
           "std": [round(float(v), 6) for v in std], "seconds": round(time.perf_counter() - t, 2)}
    if as_json:
        click.echo(json.dumps(res))
    else:
        click.echo(f"{res['images']} images, {n} pixels: mean {res['mean']} std {res['std']}")


def _recipe_options(f):
    opts = [
        click.option("--epochs", type=int, default=30, show_default=True),
        click.option("--batch-size", type=int, default=32, show_default=True),
        click.option("--lr", type=float, default=0.01, show_default=True, help="Base LR (trunk)."),
        click.option("--min-lr", type=float, default=0.0, show_default=True),
        click.option("--head-lr-mult", type=float, default=10.0, show_default=True, help="Head LR = this x base LR."),
        click.option("--warmup-epochs", type=float, default=5.0, show_default=True),
        click.option("--warmup-start-lr", type=float, default=1e-4, show_default=True),
        click.option("--momentum", type=float, default=0.9, show_default=True),
        click.option("--weight-decay", type=float, default=5e-4, show_default=True),
        click.option("--label-smoothing", type=float, default=0.1, show_default=True),
        click.option("--dropout", type=float, default=0.5, show_default=True),
        click.option("--freeze", default="all", show_default=True,
                     help="Feature layers frozen from the input side: a number of `features` modules, or 'all'/'none'."),
        click.option("--cache/--no-cache", default=True, show_default=True,
                     help="Cache the frozen prefix's features once (no image augmentation then)."),
        click.option("--cache-at", type=int, default=None, help="Layer at which the disk cache is kept (<= --freeze)."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True),
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


def _config(kw, n_features):
    from .train import TrainConfig

    fr = str(kw.pop("freeze"))
    freeze = -1 if fr == "all" else 0 if fr == "none" else int(fr)
    names = {f for f in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**{k: v for k, v in kw.items() if k in names}, freeze=freeze)
    if cfg.cache_dir is not None:
        cfg.cache_dir = str(cfg.cache_dir)
    return cfg


@click.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder.")
@click.option("--arch", type=click.Choice(ARCHS), default="vgg16", show_default=True)
@click.option("--weights", default=None, help="Starting weights (name, .pth, or checkpoint).")
@click.option("--size", "input_size", type=int, default=128, show_default=True, help="Input size.")
@click.option("--pooling", type=click.Choice(POOLINGS), default="gap", show_default=True)
@click.option("--head", type=click.Choice(["gap-linear", "vgg"]), default="gap-linear", show_default=True)
@click.option("--normalize", type=click.Choice(["imagenet", "data"]), default="imagenet", show_default=True,
              help="Input mean/std: ImageNet's, or the dataset's own (computed like `stats`).")
@click.option("--resume", is_flag=True, help="Continue OUT/last.pt.")
@_recipe_options
def train(data, out, arch, weights, input_size, pooling, head, normalize, resume, **kw):
    """Fine-tune on an ImageFolder tree DATA (train/ + val/, else a seeded 80/20 split)."""
    from .train import fit, prepare_model

    split = _split(data, kw["val_fraction"], kw["seed"], kw.pop("limit_per_class"))
    mean = std = None
    if normalize == "data":
        from .data import channel_stats

        m, s, _ = channel_stats([f for f, _ in split.train], input_size)
        mean, std = tuple(float(v) for v in m), tuple(float(v) for v in s)
    spec, net = prepare_model(arch, weights, input_size, pooling, head, split.classes, kw["dropout"], mean, std)
    cfg = _config(kw, len(net.features))
    cfg.extra = {"data": str(Path(data).resolve()), "val_fraction": kw["val_fraction"], "seed": kw["seed"]}
    click.echo(f"{len(split.train)} train / {len(split.val)} val images, {len(split.classes)} classes; {spec.describe()}")
    t = time.perf_counter()
    rows = fit(net, spec, split, out, cfg, resume=resume, log=click.echo)
    best = max((r["val_top1"] for r in rows), default=float("nan"))
    click.echo(f"done in {time.perf_counter() - t:.1f} s: best val top-1 {best:.4f}; {out / 'best.pt'}")


def _load_ckpt(path):
    from .train import load_checkpoint_model
    from .weights import torch_load

    if not Path(path).is_file():
        raise UserError(f"checkpoint not found: {path}")
    obj = torch_load(path, "checkpoint")
    spec, net = load_checkpoint_model(path)
    if net.head is None:
        raise UserError(f"{path} has no classifier head: train one first (vgg-retrieval train)")
    return spec, net, obj


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--ratio", type=float, default=0.3, show_default=True, help="Share of channels removed per layer.")
@click.option("--layers", default="all", show_default=True,
              help="Conv ordinals to prune (0-based: '10-11', 'all'); the last conv is always kept.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Dataset for accuracy and recovery [default: the checkpoint's].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--recover-epochs", type=int, default=2, show_default=True)
@click.option("--recover-lr", type=float, default=0.002, show_default=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=DEFAULT_CACHE, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--limit-per-class", type=int, default=None)
def prune(checkpoint, ratio, layers, data, out, recover_epochs, recover_lr, cache_dir, batch_size, limit_per_class):
    """L1-norm channel pruning of CHECKPOINT, then a short recovery fine-tune."""
    from .prune import conv_positions, count_params, gflops, l1_prune, parse_layers
    from .train import TrainConfig, evaluate_net, fit
    from .weights import fingerprint, save_checkpoint

    spec, net, obj = _load_ckpt(checkpoint)
    info = (obj.get("config") or {}).get("extra") or {}
    data = data or info.get("data")
    if not data:
        raise UserError("pass --data (the checkpoint does not name its dataset)")
    split = _split(data, info.get("val_fraction", 0.2), info.get("seed", 0), limit_per_class)
    if tuple(split.classes) != tuple(spec.class_names):
        raise UserError(f"{data} classes {split.classes} differ from the checkpoint's {spec.class_names}")
    pos = conv_positions(net.features)
    chosen = parse_layers(layers, len(pos))
    if not chosen:
        raise UserError("no conv layer to prune")
    before = {"params": count_params(net), "gflops": gflops(net, spec.input_size),
              "weights_mb": _weights_mb(net), "file_mb": Path(checkpoint).stat().st_size / 1e6}
    first = pos[chosen[0]]  # layers before it are unchanged: evaluate (and recover) from their cache
    t = time.perf_counter()
    if first > 0:
        from .data import compute_features
        from .train import evaluate_cached

        vf = compute_features(net, first, split.val, spec.input_size, cache_dir=cache_dir)

        def top1():
            return evaluate_cached(net, first, *vf)
    else:
        def top1():
            return evaluate_net(net, split.val, spec.input_size)
    before["top1"] = top1()
    click.echo(f"before: {before['params'] / 1e6:.2f} M params, {before['gflops']:.2f} GFLOPs, top-1 {before['top1']:.4f} "
               f"({time.perf_counter() - t:.0f} s)")
    widths = l1_prune(net, ratio, chosen)
    pspec = spec.replace(widths=widths, descriptor_dim=widths[-1],
                         weights_sha256=fingerprint({f"features.{k}": v for k, v in net.features.state_dict().items()}))
    pruned_top1 = top1()
    click.echo(f"pruned {len(chosen)} conv layers by {ratio:.0%}: widths {list(widths)}; top-1 before recovery {pruned_top1:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    if recover_epochs > 0:
        cfg = TrainConfig(epochs=recover_epochs, lr=recover_lr, warmup_epochs=0, head_lr_mult=1.0, batch_size=batch_size,
                          freeze=first, cache=True, cache_dir=str(cache_dir))
        cfg.extra = {**info, "data": str(Path(data).resolve()), "pruned_from": str(Path(checkpoint).resolve())}
        t = time.perf_counter()
        rows = fit(net, pspec, split, out, cfg, log=click.echo)
        click.echo(f"recovery: {time.perf_counter() - t:.1f} s")
        torch_load_best(out / "best.pt", net)
        pspec = pspec.replace(weights_sha256=fingerprint({f"features.{k}": v for k, v in net.features.state_dict().items()}))
    final = out / "pruned.pt"
    save_checkpoint(final, pspec, {k: v for k, v in net.state_dict().items() if k.startswith(("features.", "head."))},
                    config={"extra": {**info, "data": str(Path(data).resolve())}}, metrics=rows)
    after = {"params": count_params(net), "gflops": gflops(net, spec.input_size), "weights_mb": _weights_mb(net),
             "file_mb": final.stat().st_size / 1e6,
             "top1": top1() if recover_epochs > 0 else pruned_top1}
    report = {"ratio": ratio, "layers": chosen, "widths": list(widths), "before": before, "pruned_no_recovery_top1": pruned_top1,
              "after": after}
    (out / "prune_report.json").write_text(json.dumps(report, indent=2))
    click.echo(f"after:  {after['params'] / 1e6:.2f} M params ({after['params'] / before['params']:.2f}x), "
               f"{after['gflops']:.2f} GFLOPs ({after['gflops'] / before['gflops']:.2f}x), "
               f"weights {after['weights_mb']:.1f} MB (was {before['weights_mb']:.1f}), top-1 {after['top1']:.4f} (was {before['top1']:.4f})")
    click.echo(f"wrote {final}")


def _weights_mb(net) -> float:
    """Bytes of the trunk + head tensors (a checkpoint file without optimizer state)."""
    return sum(v.numel() * v.element_size() for k, v in net.state_dict().items()
               if k.startswith(("features.", "head."))) / 1e6


def torch_load_best(path, net):
    from .weights import torch_load

    if path.exists():
        ck = torch_load(path, "checkpoint")
        net.load_state_dict({**net.state_dict(), **ck["state_dict"]})
    return net


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--calib", type=click.Path(path_type=Path), required=True, help="Dataset for calibration (train split).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--subset", type=int, default=300, show_default=True, help="Calibration images.")
@click.option("--val-limit", type=int, default=None, help="Check accuracy on at most this many val images.")
@click.option("--preset", type=click.Choice(["mixed", "performance"]), default="mixed", show_default=True)
@click.option("--format", "formats", type=click.Choice(["openvino", "onnx", "both"]), default="openvino",
              show_default=True, help="openvino: NNCF INT8 IR in OUT/int8; onnx: ONNX Runtime QDQ INT8 model in "
                                      "OUT/int8-onnx; both.")
@click.option("--for-tensorrt", is_flag=True,
              help="Make the ONNX INT8 model symmetric (zero point 0), as TensorRT's explicit INT8 needs.")
def quantize(source, calib, out, subset, val_limit, preset, formats, for_tensorrt):
    """INT8 PTQ of SOURCE (a checkpoint, or an exported model folder): NNCF for OpenVINO and/or
    ONNX Runtime static quantization (QDQ) for ONNX Runtime and TensorRT."""
    from .engines import load_embedder
    from .export import export_model, read_sidecar
    from .quantize import calibration_items, evaluate_embedder, quantize_ir, quantize_onnx

    out.mkdir(parents=True, exist_ok=True)
    if Path(source).is_file():
        spec, net, _ = _load_ckpt(source)
        fp32_dir = export_model(spec, net, out / "fp32")
        click.echo(f"exported FP32 {spec.describe()} to {fp32_dir}")
    else:
        fp32_dir = Path(source)
        if not (fp32_dir / "model.json").exists():
            raise UserError(f"{source} is neither a checkpoint nor an exported model folder")
    spec, _ = read_sidecar(fp32_dir)
    split = _split(calib, 0.2, 0)
    items = calibration_items(split, subset)
    made = []  # (name, engine, folder)
    if formats in ("openvino", "both"):
        t = time.perf_counter()
        made.append(("int8", "openvino", quantize_ir(fp32_dir, out / "int8", items, subset, preset)))
        click.echo(f"NNCF: {len(items)} calibration images, {time.perf_counter() - t:.1f} s -> {made[-1][2]}")
    if formats in ("onnx", "both"):
        t = time.perf_counter()
        made.append(("int8_onnx", "onnxruntime",
                     quantize_onnx(fp32_dir, out / "int8-onnx", items, subset, for_tensorrt=for_tensorrt)))
        click.echo(f"ONNX Runtime: {len(items)} calibration images, {time.perf_counter() - t:.1f} s -> {made[-1][2]}")
    import numpy as np

    ref_engine = made[0][1]
    res = {}
    for name, engine, d in [("fp32", ref_engine, fp32_dir)] + made:
        emb = load_embedder(engine, spec, d, batch_size=8)
        t = time.perf_counter()
        top1, desc = evaluate_embedder(emb, split.val, val_limit)
        res[name] = {"top1": top1, "seconds": time.perf_counter() - t, "desc": desc}
    report = {"fp32_top1": res["fp32"]["top1"], "val_images": len(res["fp32"]["desc"]),
              "fp32_seconds": res["fp32"]["seconds"]}
    f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for name, engine, d in made:
        cos = float(np.mean(np.sum(res["fp32"]["desc"] * res[name]["desc"], axis=1)))
        report.update({f"{name}_top1": res[name]["top1"], f"{name}_descriptor_cosine_mean": cos,
                       f"{name}_seconds": res[name]["seconds"], f"{name}_engine": engine})
        if name == "int8":
            report["descriptor_cosine_mean"] = cos
        click.echo(f"val ({report['val_images']} images): FP32 top-1 {f(report['fp32_top1'])}, {name} ({engine}) top-1 "
                   f"{f(res[name]['top1'])}, descriptor cosine {cos:.4f}; eval {report['fp32_seconds']:.0f}s vs "
                   f"{res[name]['seconds']:.0f}s")
    (out / "quantize_report.json").write_text(json.dumps(report, indent=2))


@click.command()
@click.option("--variant", "variants", multiple=True, required=True,
              help="LABEL=ENGINE:PATH (torch: checkpoint/.pth; openvino/onnxruntime: model folder). First = reference.")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset (its val split is used).")
@click.option("--limit", type=int, default=300, show_default=True, help="Val images for top-1 and agreement.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Report path prefix (.md and .json).")
@click.option("--threads", type=int, default=None)
@click.option("--size", type=int, default=None, help="Input size for torch weights without a stored spec.")
@click.option("--latency-runs", type=int, default=20, show_default=True)
@click.option("--throughput-batches", type=int, default=6, show_default=True)
def benchmark(variants, data, limit, out, threads, size, latency_runs, throughput_batches):
    """Compare model variants: top-1, latency, throughput, size, descriptor agreement."""
    from .bench import run_benchmark, write_report

    import random

    split = _split(data, 0.2, 0)
    items = list(split.val)
    random.Random(0).shuffle(items)
    items = items[:limit] if limit else items
    rows = run_benchmark(list(variants), items, latency_runs=latency_runs, throughput_batches=throughput_batches,
                         size=size, threads=threads, log=click.echo)
    md, js = write_report(rows, out, len(items))
    click.echo(md.read_text())
    click.echo(f"wrote {md} and {js}")


def top_classes(embedder, images, sizes, k: int = 5):
    """Per image, the top-k (class, probability) of a model with a classifier, else None: for
    ``vgg-retrieval search`` (one forward pass gives descriptors and logits)."""
    import numpy as np

    names = tuple(embedder.spec.class_names)
    if not names or not getattr(embedder, "has_logits", False):
        return None
    lg = embedder.logits_batch(images, sizes)
    p = np.exp(lg - lg.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return [[(names[j], float(row[j])) for j in np.argsort(-row)[:k]] for row in p]


def register(cli) -> None:
    for cmd in (stats, train, prune, quantize, benchmark):
        cli.add_command(cmd)


def top_classes_of_files(embedder, sources, k: int = 5):
    """``top_classes`` for image files/bytes/PIL images (None without a classifier or class names)."""
    import numpy as np

    from .preprocess import load_and_prepare

    if not embedder.spec.class_names or not getattr(embedder, "has_logits", False):
        return None
    prep = [load_and_prepare(s, embedder.spec.input_size) for s in sources]
    return top_classes(embedder, np.stack([p.array for p in prep]), np.array([p.valid for p in prep], np.int64), k)
