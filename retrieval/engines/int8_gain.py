"""How much faster OpenVINO runs INT8 than FP32 convolutions on this CPU, measured in about half a second.

INT8 is the default precision of a new index where it pays: with VNNI or AMX it runs VGG16 4-16x
faster than FP32 at f32. On AVX2 alone it depends on the core: on an AMD EPYC 7002 (Zen 2) OpenVINO
2026.4 runs INT8 convolutions with its older kernel (``jit_avx2_I8``) and FP32 with brgemm
(``brgconv_avx2_f32``), and VGG16 embedded at 6.9 img/s in INT8 against 6.35 in FP32 (1.09x) - too
little to pay back the quantization of a new index (about 10 s) before several hundred photos,
and an approximation of the FP32 model for nothing. Measured on three 3x3 convolutions of 128
channels at 56x56 (the shape of VGG16's third block), INT8 by FakeQuantize as NNCF writes it.
``VGG_RETRIEVAL_INT8_GAIN`` (a number) sets the gain instead of measuring it. Where the CPU plugin
cannot run the probe, the gain is taken as ``INT8_PAYS``: INT8, the default before the probe."""

from __future__ import annotations

import functools
import os
import time

import numpy as np

ENV = "VGG_RETRIEVAL_INT8_GAIN"
INT8_PAYS = 1.3  # INT8 is the default where it runs convolutions at least this much faster than f32
_SECONDS = 0.1  # timed per model and round, after two warm-up runs (0.4 s in all)


def _convolutions(int8: bool, channels: int = 128, side: int = 56, layers: int = 3):
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, channels, side, side], np.float32, name="x")
    y, rng = x, np.random.default_rng(0)
    for _ in range(layers):
        w = ops.constant(rng.normal(0, 0.05, (channels, channels, 3, 3)).astype(np.float32))
        if int8:  # activations u8, weights s8: what the CPU plugin runs as an INT8 convolution
            lo, hi = ops.constant(np.float32(0)), ops.constant(np.float32(4))
            y = ops.fake_quantize(y, lo, hi, lo, hi, 256)
            wl, wh = ops.constant(np.float32(-0.25)), ops.constant(np.float32(0.25))
            w = ops.fake_quantize(w, wl, wh, wl, wh, 255)
        y = ops.relu(ops.convolution(y, w, [1, 1], [1, 1], [1, 1], [1, 1]))
    return ov.Model([y], [x])


def _request(core, int8: bool, data: np.ndarray):
    compiled = core.compile_model(_convolutions(int8), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    for _ in range(2):
        request.infer({0: data})
    return request


def _rate(request, data: np.ndarray) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < _SECONDS:
        request.infer({0: data})
        n += 1
    return n / (time.perf_counter() - start)


@functools.lru_cache(maxsize=1)
def int8_gain() -> float:
    """INT8 convolutions' speed over f32 ones on this CPU (best of two alternated rounds each)."""
    if os.environ.get(ENV):
        try:
            return float(os.environ[ENV])
        except ValueError:
            from retrieval.errors import UserError  # lazy: only a bad setting gets here

            raise UserError(
                f"{ENV} is a number (INT8's speed over FP32 here), got {os.environ[ENV]!r}"
            ) from None
    import openvino as ov

    data = np.random.default_rng(1).random((1, 128, 56, 56), dtype=np.float32)
    try:
        core = ov.Core()
        requests = {int8: _request(core, int8, data) for int8 in (False, True)}
        best = {False: 0.0, True: 0.0}
        for _ in range(2):
            for int8, request in requests.items():
                best[int8] = max(best[int8], _rate(request, data))
        return best[True] / best[False]
    except Exception:  # noqa: BLE001 - a plugin that cannot run the probe: INT8, the default before it
        return INT8_PAYS


def int8_pays() -> bool:
    """Whether INT8 is worth its quantization on this CPU (``int8_gain`` >= ``INT8_PAYS``)."""
    return int8_gain() >= INT8_PAYS
