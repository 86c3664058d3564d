"""OpenVINO engine over the exported IR (``model.xml``/``model.bin``), CPU by default.

The IR is compiled for static shapes ``[n, S, S, 3]``: OpenVINO's CPU plugin is far faster at a fixed
shape than with dynamic shapes. One compiled model is kept per batch size seen (in practice the
configured batch size, plus 1 for single queries and the short last batch of a run). With the
"buckets" input policy the IR has dynamic height and width, and one static model is compiled per
(batch size, bucket shape) the first time that shape comes (``spec.input_shapes()``: a handful).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..export import IR_FILE
from ..spec import ModelSpec
from .base import Embedder
from .registry import exported_file, register_engine

# f32 keeps descriptors identical (cosine >= 0.9999) to PyTorch's; bf16/f16 trade that for speed.
DEFAULT_PRECISION = "f32"


@register_engine("openvino", model_files=(IR_FILE, "model.bin"), ray=True, order=0)
def load(spec: ModelSpec, model_dir: Path, *, net=None, batch_size: int = 8, threads: int | None = None,
         **options) -> Embedder:
    return OpenVinoEmbedder(spec, exported_file(model_dir, IR_FILE, "OpenVINO IR"), batch_size=batch_size,
                            threads=threads, **options)


class OpenVinoEmbedder(Embedder):
    name = "openvino"

    def __init__(self, spec: ModelSpec, xml_path: str | Path, batch_size: int = 8, threads: int | None = None,
                 device: str = "CPU", precision: str = DEFAULT_PRECISION, performance: str = "LATENCY"):
        super().__init__(spec, batch_size)
        import openvino as ov

        self._core = ov.Core()
        self._model = self._core.read_model(str(xml_path))
        self.has_logits = any("logits" in o.get_names() for o in self._model.outputs)
        self.device = device
        self.config = {"PERFORMANCE_HINT": performance}
        if device == "CPU":
            self.config["INFERENCE_PRECISION_HINT"] = precision
            if threads:
                self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self._requests: dict[tuple[int, int, int], object] = {}
        if spec.input_policy == "square":  # buckets: compiled when a shape first comes
            self._request(self.batch_size, spec.input_size, spec.input_size)

    def _request(self, n: int, h: int, w: int):
        key = (n, h, w)
        if key not in self._requests:
            model = self._model.clone()
            model.reshape({"image": [n, h, w, 3], "size": [n, 2]})
            compiled = self._core.compile_model(model, self.device, self.config)
            self._requests[key] = (compiled.create_infer_request(), compiled.output("descriptor"),
                                   compiled.output("logits") if self.has_logits else None)
        return self._requests[key]

    def _run(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        request, output, _ = self._request(*images.shape[:3])
        result = request.infer({"image": images, "size": sizes})
        return np.array(result[output], dtype=np.float32)

    def _run_both(self, images: np.ndarray, sizes: np.ndarray):
        request, output, logits = self._request(*images.shape[:3])
        result = request.infer({"image": images, "size": sizes})
        return np.array(result[output], dtype=np.float32), np.array(result[logits], dtype=np.float32)
