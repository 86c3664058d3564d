"""ONNX Runtime engine over the exported ``model.onnx``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.spec import ModelSpec

from .base import Embedder
from .export import ONNX_FILE
from .registry import exported_file, register_engine


@register_engine("onnxruntime", model_files=(ONNX_FILE,), ray=True, order=10)
def load(
    spec: ModelSpec, model_dir: Path, *, net=None, batch_size: int = 8, threads: int | None = None, **options
) -> Embedder:
    return OnnxRuntimeEmbedder(
        spec,
        exported_file(model_dir, ONNX_FILE, "ONNX model"),
        batch_size=batch_size,
        threads=threads,
        **options,
    )


class OnnxRuntimeEmbedder(Embedder):
    name = "onnxruntime"

    def __init__(
        self,
        spec: ModelSpec,
        onnx_path: str | Path,
        batch_size: int = 8,
        threads: int | None = None,
        providers: list[str] | None = None,
    ):
        super().__init__(spec, batch_size)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(onnx_path), opts, providers=providers or ["CPUExecutionProvider"]
        )
        self.has_logits = "logits" in {o.name for o in self.session.get_outputs()}

    def _run(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        return self.session.run(["descriptor"], {"image": images, "size": sizes})[0]

    def _run_both(self, images: np.ndarray, sizes: np.ndarray):
        d, lg = self.session.run(["descriptor", "logits"], {"image": images, "size": sizes})
        return d, lg
