"""Searching an index of any type, with per-call parameters, on the CPU or a GPU copy."""

from __future__ import annotations

import faiss
import numpy as np

from .index_types import DEFAULT_EF_SEARCH, DEFAULT_NPROBE
from .stored import is_hnsw, ivf_of


def search_params(index: faiss.Index, k: int, nprobe: int, ef_search: int, gpu: bool = False):
    """Per-call FAISS search parameters (thread-safe, unlike setting them on the index)."""
    ivf = ivf_of(index)
    if ivf is not None:
        if not gpu and isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
            hnsw = faiss.SearchParametersHNSW(efSearch=max(ef_search, 2 * nprobe))
            return faiss.SearchParametersIVF(nprobe=nprobe, quantizer_params=hnsw)
        return faiss.SearchParametersIVF(nprobe=nprobe)
    if is_hnsw(index):
        return faiss.SearchParametersHNSW(efSearch=max(ef_search, k))
    return None


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    nprobe: int = DEFAULT_NPROBE,
    ef_search: int = DEFAULT_EF_SEARCH,
    gpu_index: faiss.Index | None = None,
):
    """(scores, ids) of the ``k`` best per query; ``gpu_index``: a GPU copy of ``index`` to use."""
    if gpu_index is not None and k <= 2048:  # FAISS GPU's k limit
        return gpu_index.search(queries, k, params=search_params(index, k, nprobe, ef_search, gpu=True))
    params = search_params(index, k, nprobe, ef_search)
    return index.search(queries, k, params=params) if params is not None else index.search(queries, k)


def gpu_copy(index: faiss.Index) -> faiss.Index | None:
    """A copy of ``index`` on all GPUs, when FAISS was built with GPU support (the faiss-gpu extra)
    and sees a GPU; None otherwise or for types without a GPU implementation (HNSW, lossy
    transforms). IVF's HNSW coarse quantizer is swapped for an exact flat one on the GPU.
    Untested here (no GPU on the development machines)."""
    if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() == 0 or is_hnsw(index):
        return None
    try:
        cpu = index
        ivf = ivf_of(index)
        if ivf is not None and not isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexFlat):
            cpu = faiss.clone_index(index)
            ivf = ivf_of(cpu)
            flat = faiss.IndexFlatIP(ivf.d)
            flat.add(ivf.quantizer.reconstruct_n(0, ivf.nlist))
            ivf.quantizer, ivf.own_fields = flat, False
            cpu._flat_quantizer = flat  # keep it alive as long as the copy
        return faiss.index_cpu_to_all_gpus(cpu)
    except (RuntimeError, AttributeError):
        return None
