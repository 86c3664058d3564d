"""PyTorch eager engine: the reference the exported engines are checked against."""

from __future__ import annotations

import numpy as np

from retrieval.spec import ModelSpec
from retrieval.torch_extra import require_torch

from .base import Embedder
from .registry import register_engine


@register_engine("torch", order=20)
def load(
    spec: ModelSpec, model_dir=None, *, net=None, batch_size: int = 8, threads: int | None = None, **options
) -> Embedder:
    """The network ``net``, else rebuilt from the spec's weights; no export needed (``model_dir`` and the
    exported engines' ``options`` do not apply)."""
    require_torch("the torch engine")
    return TorchEmbedder(spec, net=net, batch_size=batch_size, threads=threads)


class TorchEmbedder(Embedder):
    name = "torch"

    def __init__(self, spec: ModelSpec, net=None, batch_size: int = 8, threads: int | None = None):
        super().__init__(spec, batch_size)
        import torch

        if threads:
            torch.set_num_threads(threads)
        if net is None:
            from retrieval.nets.builder import load_net  # lazy: keeps the command line's start light

            net = load_net(spec)
        self.net = net.eval()
        self.has_logits = getattr(self.net, "head", None) is not None
        self._torch = torch

    def _run(self, images: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return self.net(torch.from_numpy(images), torch.from_numpy(sizes)).numpy()

    def _run_both(self, images: np.ndarray, sizes: np.ndarray):
        torch = self._torch
        with torch.inference_mode():
            d, lg = self.net.forward_both(torch.from_numpy(images), torch.from_numpy(sizes))
            return d.numpy(), lg.numpy()
