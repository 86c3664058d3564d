"""INT8 post-training quantization: of the OpenVINO IR with NNCF, and of the ONNX graph with ONNX
Runtime (QDQ, which TensorRT also consumes).

The calibration set is a few hundred images run through the same input policy as search; the
result is a model folder like ``vgg-retrieval export`` writes (``model.xml``/``.bin`` + ``model.json``
with ``"precision": "int8"``), so every OpenVINO consumer loads it unchanged. The spec (and model id)
is the FP32 source's: INT8 descriptors are an approximation of the same model, checked here by
top-1 and descriptor agreement against FP32 on the validation split.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np

from .errors import UserError
from .export import IR_FILE, SIDECAR, read_sidecar


def quantize_ir(model_dir, out_dir, calib_items, subset_size: int = 300, preset: str = "mixed",
                fast_bias_correction: bool = True) -> Path:
    try:
        import nncf
    except ImportError:
        raise UserError("INT8 quantization needs NNCF: pip install 'vgg-retrieval[int8]' (or: pip install nncf)") from None
    import openvino as ov

    from .preprocess import load_and_prepare

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    spec, sidecar = read_sidecar(model_dir)
    if not (model_dir / IR_FILE).exists():
        raise UserError(f"no OpenVINO IR in {model_dir}")
    s = spec.input_size

    def transform(item):
        p = load_and_prepare(item[0] if isinstance(item, tuple) else item, s)
        return {"image": p.array[None], "size": np.array([p.valid], dtype=np.int64)}

    model = ov.Core().read_model(str(model_dir / IR_FILE))
    items = list(calib_items)[:subset_size]
    q = nncf.quantize(model, nncf.Dataset(items, transform), subset_size=len(items),
                      preset=nncf.QuantizationPreset.MIXED if preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE,
                      fast_bias_correction=fast_bias_correction)
    out_dir.mkdir(parents=True, exist_ok=True)
    ov.save_model(q, str(out_dir / IR_FILE), compress_to_fp16=False)
    sidecar = dict(sidecar)
    sidecar["files"] = {"openvino": IR_FILE}
    sidecar["precision"] = "int8"
    sidecar["quantization"] = {"tool": f"nncf {nncf.__version__}", "calibration_images": len(items),
                               "preset": preset, "source": str(model_dir.resolve())}
    (out_dir / SIDECAR).write_text(json.dumps(sidecar, indent=2))
    return out_dir


def quantize_onnx(model_dir, out_dir, calib_items, subset_size: int = 300, per_channel: bool = True,
                  for_tensorrt: bool = False) -> Path:
    """INT8 static quantization of ``model.onnx`` with ONNX Runtime: a QDQ graph, INT8 weights per
    channel, activations calibrated on ``calib_items``. For ONNX Runtime on the CPU, activations
    are asymmetric uint8 (x86's fast u8 x s8 dot products); ``for_tensorrt`` makes everything
    symmetric int8 (zero point 0), which is what TensorRT's explicit quantization accepts."""
    import tempfile

    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .export import ONNX_FILE
    from .preprocess import load_and_prepare

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    spec, sidecar = read_sidecar(model_dir)
    src = model_dir / ONNX_FILE
    if not src.exists():
        raise UserError(f"no ONNX model in {model_dir}")
    items = list(calib_items)[:subset_size]
    if not items:
        raise UserError("no calibration images")
    s = spec.input_size

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
        quantize_static(str(pre), str(out_dir / ONNX_FILE), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=per_channel,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                        extra_options={"ActivationSymmetric": for_tensorrt, "WeightSymmetric": True})
    import onnxruntime

    sidecar = dict(sidecar)
    sidecar["files"] = {"onnx": ONNX_FILE}
    sidecar["precision"] = "int8"
    sidecar["quantization"] = {"tool": f"onnxruntime {onnxruntime.__version__} quantize_static (QDQ, "
                                       f"{'symmetric s8 for TensorRT' if for_tensorrt else 'u8 activations'}, "
                                       f"{'per-channel' if per_channel else 'per-tensor'} weights)",
                               "calibration_images": len(items), "source": str(model_dir.resolve())}
    (out_dir / SIDECAR).write_text(json.dumps(sidecar, indent=2))
    return out_dir


def calibration_items(split, n: int, seed: int = 0):
    items = list(split.train)
    random.Random(seed).shuffle(items)
    return items[:n]


def evaluate_embedder(embedder, items, limit: int | None = None):
    """(top-1 or None, descriptors [N, D]) of an engine on labelled ``items``."""
    from .preprocess import load_and_prepare

    items = list(items)[:limit] if limit else list(items)
    descs, correct = [], 0
    bs = embedder.batch_size
    for i in range(0, len(items), bs):
        chunk = items[i:i + bs]
        prep = [load_and_prepare(f, embedder.spec.input_size) for f, _ in chunk]
        images = np.stack([p.array for p in prep])
        sizes = np.array([p.valid for p in prep], dtype=np.int64)
        d, lg = embedder.embed_with_logits(images, sizes)
        descs.append(d)
        if lg is not None:
            correct += int((lg.argmax(1) == np.array([y for _, y in chunk])).sum())
    top1 = correct / len(items) if embedder.has_logits and items else None
    return top1, (np.concatenate(descs) if descs else np.zeros((0, embedder.spec.descriptor_dim), np.float32))


def copy_model(src, dst) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
