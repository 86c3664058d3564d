"""Making a model smaller and faster: L1 channel pruning (``prune``), layer refit and label-free
distillation (``reconstruct``, ``distill``), both in one call (``optimize``), INT8 quantization
(``quantize``) and comparing the variants (``bench``). Defaults (torch-free): ``defaults``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.lazy import lazy_names

if TYPE_CHECKING:  # for readers and type checkers; at run time each name loads on first use
    from .bench import benchmark_variants, run_benchmark
    from .defaults import EPOCHS, ROUND_TO
    from .distill import distill
    from .distill_data import DistillConfig
    from .optimize import optimize_model
    from .prune import count_params, gflops, prune_checkpoint, prune_model
    from .quantize import quantize_ir, quantize_model

_NAMES = {
    "EPOCHS": ".defaults",
    "ROUND_TO": ".defaults",
    "prune_checkpoint": ".prune",
    "prune_model": ".prune",
    "gflops": ".prune",
    "count_params": ".prune",
    "DistillConfig": ".distill_data",
    "distill": ".distill",
    "optimize_model": ".optimize",
    "quantize_model": ".quantize",
    "quantize_ir": ".quantize",
    "benchmark_variants": ".bench",
    "run_benchmark": ".bench",
}
__getattr__ = lazy_names(__name__, _NAMES)
__all__ = [
    "DistillConfig",
    "EPOCHS",
    "ROUND_TO",
    "benchmark_variants",
    "count_params",
    "distill",
    "gflops",
    "optimize_model",
    "prune_checkpoint",
    "prune_model",
    "quantize_ir",
    "quantize_model",
    "run_benchmark",
]
