"""Inference engines behind one ``Embedder`` interface: torch, onnxruntime, openvino, tensorrt.

``load_embedder(engine, spec, model_dir)`` picks one. ONNX Runtime, OpenVINO and TensorRT run the
exported files in ``model_dir`` (see ``retrieval.export``); torch rebuilds the network from the
spec's weights. TensorRT needs an NVIDIA GPU (see ``tensorrt_engine``).
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..spec import ModelSpec
from .base import Embedder

ENGINES = ("openvino", "onnxruntime", "torch", "tensorrt")
DEFAULT_ENGINE = "openvino"


def load_embedder(engine: str, spec: ModelSpec, model_dir: str | Path | None = None, net=None,
                  batch_size: int = 8, threads: int | None = None, **options) -> Embedder:
    from ..export import IR_FILE, ONNX_FILE

    if engine == "torch":
        from .torch_engine import TorchEmbedder

        return TorchEmbedder(spec, net=net, batch_size=batch_size, threads=threads)
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if model_dir is None:
        raise UserError(f"the {engine} engine needs an exported model folder (vgg-retrieval export)")
    model_dir = Path(model_dir)
    if engine == "tensorrt":
        from . import tensorrt_engine

        path = model_dir / ONNX_FILE
        if not path.exists():
            raise UserError(f"no ONNX model in {model_dir} (run vgg-retrieval export)")
        return tensorrt_engine.load(spec, path, batch_size=batch_size, **options)
    if engine == "onnxruntime":
        from .onnxruntime_engine import OnnxRuntimeEmbedder

        path = model_dir / ONNX_FILE
        if not path.exists():
            raise UserError(f"no ONNX model in {model_dir} (run vgg-retrieval export)")
        return OnnxRuntimeEmbedder(spec, path, batch_size=batch_size, threads=threads, **options)
    from .openvino_engine import OpenVinoEmbedder

    path = model_dir / IR_FILE
    if not path.exists():
        raise UserError(f"no OpenVINO IR in {model_dir} (run vgg-retrieval export)")
    return OpenVinoEmbedder(spec, path, batch_size=batch_size, threads=threads, **options)


__all__ = ["Embedder", "ENGINES", "DEFAULT_ENGINE", "load_embedder"]
