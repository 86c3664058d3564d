"""OpenVINO engine over the exported IR (``model.xml``/``model.bin``), CPU by default.

More: docs/design-notes.md (``retrieval.engines.openvino_engine``)."""

from __future__ import annotations

import functools
import os
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from retrieval.descriptors import unit_rows
from retrieval.spec import ModelSpec

from .base import Embedder
from .export import IR_FILE
from .registry import exported_file, register_engine

# f32 keeps descriptors identical (cosine >= 0.9999) to PyTorch's; bf16/f16 trade that for speed.
DEFAULT_PRECISION = "f32"
PERFORMANCE_MODES = ("LATENCY", "THROUGHPUT")
CACHE_DIR = ".compiled"  # beside the IR: OpenVINO's compiled blobs, so a later run loads instead of compiling


@functools.lru_cache(maxsize=1)
def cpu_runs_bf16() -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 here (AMX or AVX512-BF16): where an FP32 model can be
    run in bf16 (``--precision bf16``), several times faster than at f32."""
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def compile_cache(model_dir: Path) -> Path | None:
    """The compiled-model cache folder of the IR in ``model_dir`` (made when missing), or None where
    the folder cannot be written (a read-only index compiles every time, as before)."""
    cache = Path(model_dir) / CACHE_DIR
    try:
        cache.mkdir(exist_ok=True)
    except OSError:
        return None
    return cache if os.access(cache, os.W_OK) else None


@register_engine("openvino", model_files=(IR_FILE, "model.bin"), ray=True, order=0)
def load(
    spec: ModelSpec, model_dir: Path, *, net=None, batch_size: int = 8, threads: int | None = None, **options
) -> Embedder:
    return OpenVinoEmbedder(
        spec,
        exported_file(model_dir, IR_FILE, "OpenVINO IR"),
        batch_size=batch_size,
        threads=threads,
        **options,
    )


class OpenVinoEmbedder(Embedder):
    name = "openvino"

    def __init__(
        self,
        spec: ModelSpec,
        xml_path: str | Path,
        batch_size: int = 8,
        threads: int | None = None,
        device: str = "CPU",
        precision: str = DEFAULT_PRECISION,
        performance: str = "LATENCY",
    ):
        super().__init__(spec, batch_size)
        import openvino as ov

        self._core = ov.Core()
        cache = compile_cache(Path(xml_path).parent)
        if cache is not None:
            self._core.set_property({"CACHE_DIR": str(cache)})
        self._model = self._core.read_model(str(xml_path))
        self.has_logits = any("logits" in o.get_names() for o in self._model.outputs)
        self.device = device
        performance = str(performance).upper()
        if performance not in PERFORMANCE_MODES:
            raise ValueError(
                f"unknown OpenVINO performance mode {performance!r}; choose one of "
                f"{', '.join(PERFORMANCE_MODES)}"
            )
        self.throughput = performance == "THROUGHPUT"
        self.in_flight = 1  # batches embed_stream keeps started: OpenVINO's optimal number of requests
        self.config = {"PERFORMANCE_HINT": performance}
        if device == "CPU":
            self.config["INFERENCE_PRECISION_HINT"] = precision
            if threads:
                self.config["INFERENCE_NUM_THREADS"] = int(threads)
        self._requests: dict[tuple[int, int], object] = {}  # per (height, width)
        self._pools: dict[tuple[int, int], deque] = {}  # throughput mode: [request, its _Job or None]
        if spec.input_policy == "square":  # buckets: compiled when a shape first comes
            self._request(spec.input_size, spec.input_size)

    def _request(self, h: int, w: int):
        key = (h, w)
        if key not in self._requests:
            model = self._model.clone()
            model.reshape({"image": [-1, h, w, 3], "size": [-1, 2]})
            compiled = self._core.compile_model(model, self.device, self.config)
            self._requests[key] = (
                compiled.create_infer_request(),
                compiled.output("descriptor"),
                compiled.output("logits") if self.has_logits else None,
            )
            if self.throughput:
                n_requests = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
                self.in_flight = max(self.in_flight, n_requests)
                self._pools[key] = deque([compiled.create_infer_request(), None] for _ in range(n_requests))
        return self._requests[key]

    def _start(self, images: np.ndarray, sizes: np.ndarray) -> "_Job":
        """One forward pass started on the next request of its shape's pool (throughput mode); a
        request still holding an unread result gives it to its job first."""
        _, output, _ = self._request(*images.shape[1:3])
        pool = self._pools[images.shape[1:3]]
        slot = pool[0]
        pool.rotate(-1)
        if slot[1] is not None:
            slot[1].result()
        slot[1] = _Job(slot[0], output)
        slot[0].start_async({"image": images, "size": sizes})
        return slot[1]

    def embed_stream(self, batches: Iterable[tuple], ready: bool = False) -> Iterator[np.ndarray]:
        if not self.throughput:
            yield from super().embed_stream(batches, ready=ready)
            return
        pending: deque = deque()  # per batch: (its jobs, inverse permutation)
        for images, sizes in batches:
            chunks, inverse = self._shape_chunks(
                *((images, sizes) if ready else self.prepare_batch(images, sizes))
            )
            pending.append(([self._start(i, s) for i, s in chunks], inverse))
            if len(pending) > self.in_flight:
                yield self._finished(*pending.popleft())
        while pending:
            yield self._finished(*pending.popleft())

    def _finished(self, jobs: list, inverse) -> np.ndarray:
        out = self._joined([(job.result(),) for job in jobs], inverse)
        return unit_rows(out[0]) if out else np.zeros((0, self.spec.descriptor_dim), np.float32)

    def _run(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        request, output, _ = self._request(*images.shape[1:3])
        result = request.infer({"image": images, "size": sizes})
        return np.array(result[output], dtype=np.float32)

    def _run_both(self, images: np.ndarray, sizes: np.ndarray):
        request, output, logits = self._request(*images.shape[1:3])
        result = request.infer({"image": images, "size": sizes})
        return np.array(result[output], dtype=np.float32), np.array(result[logits], dtype=np.float32)


class _Job:
    """One started forward pass: ``result()`` waits for it and keeps a copy of its descriptors (its
    request's buffers are reused by the next pass started on it)."""

    def __init__(self, request, output):
        self.request, self.output, self.out = request, output, None

    def result(self) -> np.ndarray:
        if self.out is None:
            self.request.wait()
            self.out = np.array(self.request.get_tensor(self.output).data, dtype=np.float32)
        return self.out
