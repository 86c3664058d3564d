"""torch is an optional extra (``pip install 'vgg-retrieval[train]'``): training, pruning,
distillation, the torch engine and the torch exporter need it; indexing, search, dedup and the UI do
not (the model is then written as an ONNX graph straight from the weights, ``retrieval.onnx_graph``).

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


def require_torch(what: str) -> None:
    """UserError "WHAT needs torch: pip install ..." unless torch can be imported."""
    if not torch_available():
        raise UserError(f"{what} needs torch: {INSTALL_HINT} (a CPU-only build: add "
                        f"--extra-index-url https://download.pytorch.org/whl/cpu)")
