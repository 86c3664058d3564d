"""Inference engines behind one ``Embedder`` interface: openvino, onnxruntime, torch, tensorrt.

More: docs/design-notes.md (``retrieval.engines``)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from retrieval.errors import UserError
from retrieval.spec import ModelSpec

from .base import Embedder
from .export import export_model, read_sidecar
from .int8_gain import INT8_PAYS, int8_gain, int8_pays
from .openvino_engine import cpu_runs_bf16
from .registry import (
    EngineEntry,
    engine_entry,
    engine_names,
    exported_file,
    ray_engine_names,
    register_engine,
    unregister_engine,
)

DEFAULT_ENGINE = "openvino"

for _module in pkgutil.iter_modules(__path__):
    if _module.name.endswith("_engine"):
        importlib.import_module(f"{__name__}.{_module.name}")
del _module


def __getattr__(name: str):
    if name == "ENGINES":  # computed on each access: engines registered later are listed too
        return engine_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_embedder(
    engine: str,
    spec: ModelSpec,
    model_dir: str | Path | None = None,
    net=None,
    batch_size: int = 8,
    threads: int | None = None,
    **options,
) -> Embedder:
    """The registered engine ``engine`` loaded for ``spec``; a one-line UserError for an unknown name
    or a missing export."""
    entry = engine_entry(engine)
    if entry.needs_export and model_dir is None:
        raise UserError(f"the {engine} engine needs an exported model folder (vgg-retrieval export)")
    return entry.load(
        spec,
        None if model_dir is None else Path(model_dir),
        net=net,
        batch_size=batch_size,
        threads=threads,
        **options,
    )


__all__ = [
    "Embedder",
    "ENGINES",
    "DEFAULT_ENGINE",
    "load_embedder",
    "register_engine",
    "unregister_engine",
    "engine_names",
    "ray_engine_names",
    "engine_entry",
    "exported_file",
    "EngineEntry",
    "export_model",
    "cpu_runs_bf16",
    "int8_gain",
    "int8_pays",
    "INT8_PAYS",
    "read_sidecar",
]
