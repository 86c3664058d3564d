"""torch is an optional extra (``pip install 'vgg-retrieval[train]'``): training, pruning,
distillation, the torch engine and the torch exporter need it; indexing, search, dedup and the UI do
not (the model is then written as an ONNX graph straight from the weights, ``retrieval.nets.onnx_graph``).

``torch_available()`` says which way this process goes; ``require_torch(what)`` is the one-line
UserError for a part that cannot run without it.
"""

from __future__ import annotations

from functools import lru_cache

from .errors import UserError

INSTALL_HINT = "pip install 'vgg-retrieval[train]'"


@lru_cache(maxsize=1)
def torch_available() -> bool:
    """Whether ``import torch`` works here (asked once per process)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


TORCH_PACKAGES = ("torch", "torchvision", "onnxscript")  # what the train extra adds


def missing_torch(error: BaseException) -> str | None:
    """The one-line message for ``error`` when it is an import of a ``train``-extra package that is
    not installed (a command that needs torch on the base install), else None."""
    name = (getattr(error, "name", None) or "").split(".")[0]
    if isinstance(error, ModuleNotFoundError) and name in TORCH_PACKAGES:
        return f"this needs {name}, which the base install leaves out: {INSTALL_HINT}"
    return None


def require_torch(what: str) -> None:
    """UserError "WHAT needs torch: pip install ..." unless torch can be imported."""
    if not torch_available():
        raise UserError(
            f"{what} needs torch: {INSTALL_HINT} (a CPU-only build: add "
            f"--extra-index-url https://download.pytorch.org/whl/cpu)"
        )
