"""The engine registry: engine names -> loaders, filled by ``@register_engine`` (the way timm registers
models).

Registering costs nothing heavy: a loader imports its runtime (torch, OpenVINO, ONNX Runtime,
TensorRT) only when it is called, so listing the engines (the CLI's choices) never loads one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from retrieval.errors import UserError


@dataclass(frozen=True)
class EngineEntry:
    """One registered engine.

    ``load(spec, model_dir, *, net, batch_size, threads, **options)`` returns an ``Embedder``.
    ``model_files``: what the engine reads from an exported model folder (``vgg-retrieval export``),
    the first being the one it opens; empty for an engine that needs no export (torch).
    ``ray``: it can run on a Ray actor from the model files shipped there (``index --engine ray``).
    ``order``: its place in listings (the CLI's choices), lowest first; ties by name."""

    name: str
    load: Callable
    model_files: tuple[str, ...] = ()
    ray: bool = False
    order: int = 100

    @property
    def needs_export(self) -> bool:
        return bool(self.model_files)


_ENGINES: dict[str, EngineEntry] = {}


def register_engine(name: str, *, model_files: tuple[str, ...] = (), ray: bool = False, order: int = 100):
    """Decorator: register ``loader`` as the engine ``name`` (see ``EngineEntry`` for the fields)."""

    def decorate(loader: Callable) -> Callable:
        if name in _ENGINES and _ENGINES[name].load is not loader:
            raise ValueError(f"engine {name!r} is already registered (by {_ENGINES[name].load.__module__})")
        _ENGINES[name] = EngineEntry(name, loader, tuple(model_files), bool(ray), int(order))
        return loader

    return decorate


def unregister_engine(name: str) -> None:
    """Forget ``name`` (for engines registered at run time, e.g. by a test)."""
    _ENGINES.pop(name, None)


def engine_names() -> tuple[str, ...]:
    """The registered engines in listing order (today: openvino, onnxruntime, torch, tensorrt)."""
    return tuple(e.name for e in sorted(_ENGINES.values(), key=lambda e: (e.order, e.name)))


def ray_engine_names() -> tuple[str, ...]:
    """The engines a Ray actor can run from an exported model folder."""
    return tuple(n for n in engine_names() if _ENGINES[n].ray)


def engine_entry(name: str) -> EngineEntry:
    """The registration of ``name``, or a one-line UserError listing the known engines."""
    entry = _ENGINES.get(name)
    if entry is None:
        raise UserError(f"unknown engine {name!r}; choose one of {', '.join(engine_names())}")
    return entry


def exported_file(model_dir: Path, name: str, what: str) -> Path:
    """``model_dir/name``, or a one-line UserError saying the export is missing."""
    path = Path(model_dir) / name
    if not path.exists():
        raise UserError(f"no {what} in {model_dir} (run vgg-retrieval export)")
    return path
