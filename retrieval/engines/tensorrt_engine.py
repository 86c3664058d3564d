"""TensorRT engine (NVIDIA GPUs) over the exported ``model.onnx``.

More: docs/design-notes.md (``retrieval.engines.tensorrt_engine``)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from retrieval.errors import UserError
from retrieval.spec import ModelSpec

from .base import Embedder
from .export import ONNX_FILE
from .onnxruntime_engine import OnnxRuntimeEmbedder
from .registry import exported_file, register_engine

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISION = "fp16"
MAX_BATCH = 64


def gpu_available() -> bool:
    """An NVIDIA GPU that CUDA can use (through torch's CUDA runtime)."""
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def tensorrt_routes() -> list[str]:
    """Which TensorRT routes this machine has: 'tensorrt' (the Python package) and/or 'onnxruntime'."""
    routes = []
    try:
        import tensorrt  # noqa: F401

        routes.append("tensorrt")
    except Exception:
        pass
    try:
        import onnxruntime as ort

        if "TensorrtExecutionProvider" in ort.get_available_providers():
            routes.append("onnxruntime")
    except Exception:
        pass
    return routes


@register_engine("tensorrt", model_files=(ONNX_FILE,), order=30)
def load_exported(
    spec: ModelSpec, model_dir: Path, *, net=None, batch_size: int = 8, threads: int | None = None, **options
) -> Embedder:
    """``load`` on the folder's ``model.onnx`` (``threads`` does not apply to a GPU)."""
    return load(spec, exported_file(model_dir, ONNX_FILE, "ONNX model"), batch_size=batch_size, **options)


def load(
    spec: ModelSpec,
    onnx_path: Path,
    batch_size: int = 8,
    precision: str = DEFAULT_PRECISION,
    route: str | None = None,
) -> Embedder:
    if precision not in PRECISIONS:
        raise UserError(f"unknown TensorRT precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if not gpu_available():
        raise UserError(
            "the tensorrt engine needs an NVIDIA GPU with CUDA; none is visible on this machine "
            "(use --engine openvino on a CPU)"
        )
    routes = tensorrt_routes()
    if route is not None and route not in routes:
        routes = []
    if not routes:
        raise UserError(
            "the tensorrt engine needs TensorRT: pip install 'vgg-retrieval[tensorrt]' (the tensorrt "
            "package) or onnxruntime-gpu with TensorRT"
        )
    if batch_size > MAX_BATCH:
        raise UserError(
            f"the tensorrt engine is built for batches up to {MAX_BATCH} (got --batch-size {batch_size})"
        )
    if routes[0] == "tensorrt":
        return TensorRtEmbedder(spec, onnx_path, batch_size, precision)
    return _onnxruntime_trt(spec, onnx_path, batch_size, precision)


def _onnxruntime_trt(spec: ModelSpec, onnx_path: Path, batch_size: int, precision: str) -> Embedder:

    trt_options = {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(onnx_path.parent),
        "trt_fp16_enable": precision in ("fp16", "int8"),
        "trt_int8_enable": precision == "int8",
    }
    emb = OnnxRuntimeEmbedder(
        spec,
        onnx_path,
        batch_size=batch_size,
        providers=[
            ("TensorrtExecutionProvider", trt_options),
            "CUDAExecutionProvider",
            "CPUExecutionProvider",
        ],
    )
    emb.name = "tensorrt"
    return emb


def plan_path(onnx_path: Path, precision: str, gpu_name: str, trt_version: str) -> Path:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-").lower() or "gpu"
    return onnx_path.parent / f"tensorrt-{precision}-{gpu}-trt{trt_version}-b{MAX_BATCH}.plan"


def image_profile(spec: ModelSpec, opt_batch: int) -> tuple[tuple, tuple, tuple]:
    """(min, opt, max) shapes of the ``image`` input: batch 1..MAX_BATCH; S x S for the square input
    policy; for buckets, every bucket's height and width lie between the min and max (one profile
    covers them all, optimised for the 1:1 bucket)."""
    shapes = spec.input_shapes()
    lo = (min(h for h, _ in shapes), min(w for _, w in shapes))
    hi = (max(h for h, _ in shapes), max(w for _, w in shapes))
    s = spec.input_size
    opt = (s, s) if (s, s) in shapes else shapes[0]
    return (1, *lo, 3), (opt_batch, *opt, 3), (MAX_BATCH, *hi, 3)


def build_plan(onnx_path: Path, spec: ModelSpec, precision: str, opt_batch: int = 8) -> bytes:
    """Serialize a TensorRT engine for ``model.onnx``: dynamic batch 1..MAX_BATCH, fixed S x S input
    (buckets: dynamic height and width covering the buckets, ``image_profile``)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"TensorRT cannot parse {onnx_path}: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 2 << 30)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)  # QDQ nodes in the ONNX give the scales (explicit quantization)
    opt = max(1, min(opt_batch, MAX_BATCH))
    profile = builder.create_optimization_profile()
    profile.set_shape("image", *image_profile(spec, opt))
    profile.set_shape("size", (1, 2), (opt, 2), (MAX_BATCH, 2))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UserError(f"TensorRT could not build an engine for {onnx_path} ({precision})")
    return bytes(plan)


class TensorRtEmbedder(Embedder):
    name = "tensorrt"

    def __init__(
        self, spec: ModelSpec, onnx_path: str | Path, batch_size: int = 8, precision: str = DEFAULT_PRECISION
    ):
        super().__init__(spec, batch_size)
        import tensorrt as trt
        import torch

        self._torch = torch
        onnx_path = Path(onnx_path)
        digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
        path = plan_path(onnx_path, precision, torch.cuda.get_device_name(0), trt.__version__)
        key = path.with_suffix(".json")
        plan = None
        if path.is_file() and key.is_file():
            try:
                if json.loads(key.read_text()).get("onnx_sha256") == digest:
                    plan = path.read_bytes()
            except (OSError, ValueError):
                plan = None
        if plan is None:
            plan = build_plan(onnx_path, spec, precision, batch_size)
            try:  # a cache: a read-only model folder just means building again next time
                tmp = path.with_suffix(".plan.tmp")
                tmp.write_bytes(plan)
                tmp.replace(path)
                key.write_text(json.dumps({"onnx_sha256": digest, "precision": precision}))
            except OSError:
                pass
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._engine = trt.Runtime(self._logger).deserialize_cuda_engine(plan)
        if self._engine is None:
            raise UserError(f"TensorRT could not load the cached engine {path} (delete it to rebuild)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        self.has_logits = "logits" in names
        self.precision = precision
        self._stream = torch.cuda.Stream()

    def _infer(self, images: np.ndarray, sizes: np.ndarray, outputs: tuple[str, ...]):
        torch = self._torch
        n = len(images)
        dev = torch.device("cuda", 0)
        image = torch.from_numpy(images).to(dev, non_blocking=False)
        size = torch.from_numpy(sizes).to(dev)
        out = {"descriptor": torch.empty((n, self.spec.descriptor_dim), dtype=torch.float32, device=dev)}
        if self.has_logits:
            out["logits"] = torch.empty((n, len(self.spec.class_names)), dtype=torch.float32, device=dev)
        ctx = self._context
        ctx.set_input_shape("image", tuple(image.shape))
        ctx.set_input_shape("size", tuple(size.shape))
        ctx.set_tensor_address("image", image.data_ptr())
        ctx.set_tensor_address("size", size.data_ptr())
        for name, t in out.items():
            ctx.set_tensor_address(name, t.data_ptr())
        with torch.cuda.stream(self._stream):
            if not ctx.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        self._stream.synchronize()
        return tuple(out[name].cpu().numpy() for name in outputs)

    def _run(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        return self._infer(images, sizes, ("descriptor",))[0]

    def _run_both(self, images: np.ndarray, sizes: np.ndarray):
        return self._infer(images, sizes, ("descriptor", "logits"))
