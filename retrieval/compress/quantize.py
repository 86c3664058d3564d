"""INT8 post-training quantization: of the OpenVINO IR with NNCF, and of the ONNX graph with ONNX
Runtime (QDQ, which TensorRT also consumes).

The calibration set is a few hundred images run through the same input policy as search; the
result is a model folder like ``vgg-retrieval export`` writes (``model.xml``/``.bin`` + ``model.json``
with ``"precision": "int8"``), so every OpenVINO consumer loads it unchanged. The spec (and model id)
is the FP32 source's: INT8 descriptors are an approximation of the same model, checked here by
top-1 and descriptor agreement against FP32 on the validation split.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
import shutil
from pathlib import Path

import numpy as np

from retrieval.engines import load_embedder
from retrieval.engines.export import IR_FILE, ONNX_FILE, SIDECAR, export_model, read_sidecar
from retrieval.errors import UserError
from retrieval.preprocess import load_and_prepare, trim_prepared
from retrieval.training.data import load_split
from retrieval.training.pipeline import load_classifier_checkpoint

# Left in FP32: the input normalisation and masking, and the pooling + L2 normalisation after the
# last conv. They cost next to nothing, and NNCF would otherwise quantize the inputs of GeM's powers
# and divisions (measured on paris5: GeM INT8 mAP 0.806 with them quantized, against 0.827 in FP32).
FP32_OP_TYPES = (
    "Power",
    "Multiply",
    "Divide",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceL2",
    "Maximum",
    "Minimum",
    "Clamp",
    "Sqrt",
)


def quantize_ir(
    model_dir,
    out_dir,
    calib_items,
    subset_size: int = 300,
    preset: str = "mixed",
    fast_bias_correction: bool = True,
    progress=None,
) -> Path:
    """NNCF INT8 post-training quantization of ``model_dir``'s IR into ``out_dir`` (IR + sidecar),
    calibrated on ``calib_items`` (image paths, or (path, label) pairs) run through the same input
    policy as inference (border trimming included). ``progress(done, total)`` hears each image
    prepared for calibration."""
    try:
        import nncf
    except ImportError:
        raise UserError(
            "INT8 quantization needs NNCF: pip install nncf (or make the index with --precision fp32)"
        ) from None
    import openvino as ov

    quiet_nncf()

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    spec, sidecar = read_sidecar(model_dir)
    if not (model_dir / IR_FILE).exists():
        raise UserError(f"no OpenVINO IR in {model_dir}")
    s = spec.input_geometry  # buckets: the IR has dynamic height/width, each item comes in its bucket's shape

    items = list(calib_items)[:subset_size]
    seen = [0]

    def transform(item):
        p = load_and_prepare(item[0] if isinstance(item, tuple) else item, s)
        array, valid = trim_prepared(p.array, p.valid, s) if spec.trim_borders else (p.array, p.valid)
        seen[0] += 1
        if progress is not None:
            progress(min(seen[0], len(items)), len(items))
        return {"image": array[None], "size": np.array([valid], dtype=np.int64)}

    model = ov.Core().read_model(str(model_dir / IR_FILE))
    with contextlib.redirect_stdout(io.StringIO()) if progress is not None else contextlib.nullcontext():
        # NNCF draws its own bar on stdout; the caller's ``progress`` shows the same steps
        q = nncf.quantize(
            model,
            nncf.Dataset(items, transform),
            subset_size=len(items),
            preset=nncf.QuantizationPreset.MIXED
            if preset == "mixed"
            else nncf.QuantizationPreset.PERFORMANCE,
            fast_bias_correction=fast_bias_correction,
            ignored_scope=nncf.IgnoredScope(types=list(FP32_OP_TYPES), validate=False),
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(out_dir / IR_FILE), compress_to_fp16=False)
    sidecar = dict(sidecar)
    sidecar["files"] = {"openvino": IR_FILE}
    sidecar["precision"] = "int8"
    sidecar["quantization"] = {
        "tool": f"nncf {nncf.__version__}",
        "calibration_images": len(items),
        "preset": preset,
        "source": str(model_dir.resolve()),
    }
    (out_dir / SIDECAR).write_text(json.dumps(sidecar, indent=2))
    return out_dir


def quantize_onnx(
    model_dir,
    out_dir,
    calib_items,
    subset_size: int = 300,
    per_channel: bool = True,
    for_tensorrt: bool = False,
) -> Path:
    """INT8 static quantization of ``model.onnx`` with ONNX Runtime: a QDQ graph, INT8 weights per
    channel, activations calibrated on ``calib_items``. For ONNX Runtime on the CPU, activations
    are asymmetric uint8 (x86's fast u8 x s8 dot products); ``for_tensorrt`` makes everything
    symmetric int8 (zero point 0), which is what TensorRT's explicit quantization accepts."""
    import tempfile

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    spec, sidecar = read_sidecar(model_dir)
    src = model_dir / ONNX_FILE
    if not src.exists():
        raise UserError(f"no ONNX model in {model_dir}")
    items = list(calib_items)[:subset_size]
    if not items:
        raise UserError("no calibration images")
    s = spec.input_geometry

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(items)

        def get_next(self):
            item = next(self._it, None)
            if item is None:
                return None
            p = load_and_prepare(item[0] if isinstance(item, tuple) else item, s)
            return {"image": p.array[None], "size": np.array([p.valid], dtype=np.int64)}

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out_dir / ONNX_FILE),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv", "MatMul", "Gemm"],
            extra_options={"ActivationSymmetric": for_tensorrt, "WeightSymmetric": True},
        )
    import onnxruntime

    sidecar = dict(sidecar)
    sidecar["files"] = {"onnx": ONNX_FILE}
    sidecar["precision"] = "int8"
    sidecar["quantization"] = {
        "tool": f"onnxruntime {onnxruntime.__version__} quantize_static (QDQ, "
        f"{'symmetric s8 for TensorRT' if for_tensorrt else 'u8 activations'}, "
        f"{'per-channel' if per_channel else 'per-tensor'} weights)",
        "calibration_images": len(items),
        "source": str(model_dir.resolve()),
    }
    (out_dir / SIDECAR).write_text(json.dumps(sidecar, indent=2))
    return out_dir


def calibration_items(split, n: int, seed: int = 0):
    items = list(split.train)
    random.Random(seed).shuffle(items)
    return items[:n]


def evaluate_embedder(embedder, items, limit: int | None = None):
    """(top-1 or None, descriptors [N, D]) of an engine on labelled ``items``."""

    items = list(items)[:limit] if limit else list(items)
    descs, correct = [], 0
    bs = embedder.batch_size
    for i in range(0, len(items), bs):
        chunk = items[i : i + bs]
        prep = [load_and_prepare(f, embedder.spec.input_geometry) for f, _ in chunk]
        images = [p.array for p in prep]
        sizes = np.array([p.valid for p in prep], dtype=np.int64)
        d, lg = embedder.embed_with_logits(images, sizes)
        descs.append(d)
        if lg is not None:
            correct += int((lg.argmax(1) == np.array([y for _, y in chunk])).sum())
    top1 = correct / len(items) if embedder.has_logits and items else None
    return top1, (np.concatenate(descs) if descs else np.zeros((0, embedder.spec.descriptor_dim), np.float32))


def copy_model(src, dst) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


# --- the whole quantization step (``vgg-retrieval quantize``) --------------------------------------
def _fp32_model(source, out: Path, log) -> Path:
    """The FP32 exported model folder of ``source``: exported from a checkpoint, or ``source`` itself."""
    if Path(source).is_file():
        spec, net, _ = load_classifier_checkpoint(source)
        fp32_dir = export_model(spec, net, out / "fp32")
        log(f"exported FP32 {spec.describe()} to {fp32_dir}")
        return fp32_dir
    if not (Path(source) / "model.json").exists():
        raise UserError(f"{source} is neither a checkpoint nor an exported model folder")
    return Path(source)


def _quantized_models(fp32_dir, out: Path, items, subset, preset, formats, for_tensorrt, log) -> list:
    """[(name, engine, folder)] of the INT8 models made for ``formats`` (openvino, onnx, both)."""
    import time

    made = []
    if formats in ("openvino", "both"):
        t = time.perf_counter()
        made.append(("int8", "openvino", quantize_ir(fp32_dir, out / "int8", items, subset, preset)))
        log(f"NNCF: {len(items)} calibration images, {time.perf_counter() - t:.1f} s -> {made[-1][2]}")
    if formats in ("onnx", "both"):
        t = time.perf_counter()
        made.append(
            (
                "int8_onnx",
                "onnxruntime",
                quantize_onnx(fp32_dir, out / "int8-onnx", items, subset, for_tensorrt=for_tensorrt),
            )
        )
        log(
            f"ONNX Runtime: {len(items)} calibration images, {time.perf_counter() - t:.1f} s -> {made[-1][2]}"
        )
    return made


def _compare(spec, fp32_dir, made, val_items, val_limit, log) -> dict:
    """Top-1, time and descriptor cosine to FP32 of each INT8 model on ``val_items``: the report."""
    import time

    res = {}
    for name, engine, d in [("fp32", made[0][1], fp32_dir)] + made:
        emb = load_embedder(engine, spec, d, batch_size=8)
        t = time.perf_counter()
        top1, desc = evaluate_embedder(emb, val_items, val_limit)
        res[name] = {"top1": top1, "seconds": time.perf_counter() - t, "desc": desc}
    report = {
        "fp32_top1": res["fp32"]["top1"],
        "val_images": len(res["fp32"]["desc"]),
        "fp32_seconds": res["fp32"]["seconds"],
    }
    f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for name, engine, d in made:
        cos = float(np.mean(np.sum(res["fp32"]["desc"] * res[name]["desc"], axis=1)))
        report.update(
            {
                f"{name}_top1": res[name]["top1"],
                f"{name}_descriptor_cosine_mean": cos,
                f"{name}_seconds": res[name]["seconds"],
                f"{name}_engine": engine,
            }
        )
        if name == "int8":
            report["descriptor_cosine_mean"] = cos
        log(
            f"val ({report['val_images']} images): FP32 top-1 {f(report['fp32_top1'])}, {name} ({engine}) top-1 "
            f"{f(res[name]['top1'])}, descriptor cosine {cos:.4f}; eval {report['fp32_seconds']:.0f}s vs "
            f"{res[name]['seconds']:.0f}s"
        )
    return report


def quantize_model(
    source,
    calib,
    out,
    *,
    subset: int = 300,
    val_limit: int | None = None,
    preset: str = "mixed",
    formats: str = "openvino",
    for_tensorrt: bool = False,
    log=print,
) -> dict:
    """INT8 PTQ of ``source`` (a checkpoint, or an exported model folder), calibrated on ``calib``'s
    train split: NNCF for OpenVINO (OUT/int8) and/or ONNX Runtime QDQ (OUT/int8-onnx); compared with
    FP32 on the val split. Writes OUT/quantize_report.json and returns the report."""

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fp32_dir = _fp32_model(source, out, log)
    spec, _ = read_sidecar(fp32_dir)
    split = load_split(calib, 0.2, 0)
    items = calibration_items(split, subset)
    made = _quantized_models(fp32_dir, out, items, subset, preset, formats, for_tensorrt, log)
    report = _compare(spec, fp32_dir, made, split.val, val_limit, log)
    (out / "quantize_report.json").write_text(json.dumps(report, indent=2))
    return report


def quiet_nncf() -> None:
    """NNCF prints INFO lines through a handler of its own; send its logger through ``logging`` like
    ours instead, so only its warnings reach the terminal (and ``-q`` stays quiet)."""
    log = logging.getLogger("nncf")
    for handler in list(log.handlers):
        log.removeHandler(handler)
    log.propagate = True
    log.setLevel(logging.WARNING)
    # NNCF's quantize loads its torch backend, whose C++ extension loader warns "No CUDA runtime is
    # found" on every run where a CUDA build of torch sits on a machine without one: not ours to say
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
