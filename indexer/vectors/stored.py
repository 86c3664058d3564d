"""What a FAISS index holds and changing it in place: its ids, its vectors, removing ids; the
FAISS introspection the other parts share (which type an index is)."""

from __future__ import annotations

import faiss
import numpy as np


def new_index(dim: int) -> faiss.Index:
    """Exact inner-product search over L2-normalised vectors (= cosine), with our own ids."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def ids_of(index: faiss.Index) -> np.ndarray:
    """The ids of every stored vector (IDMap order for flat/hnsw, inverted-list order for IVF)."""
    if index.ntotal == 0:
        return np.zeros(0, dtype=np.int64)
    top = faiss.downcast_index(index)
    if isinstance(top, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.vector_to_array(top.id_map).astype(np.int64)
    invlists = ivf_of(index).invlists
    parts = []
    for lst in range(invlists.nlist):
        n = invlists.list_size(lst)
        if n:
            ptr = invlists.get_ids(lst)
            parts.append(faiss.rev_swig_ptr(ptr, n).astype(np.int64))
            invlists.release_ids(lst, ptr)
    return np.concatenate(parts)


def all_vectors(index: faiss.Index) -> np.ndarray:
    """The stored vectors in ``ids_of`` order: exact for flat, hnsw and IVF-Flat, decoded from the
    codes (approximate) for SQ/PQ types."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    top = faiss.downcast_index(index)
    inner = faiss.downcast_index(top.index) if isinstance(top, faiss.IndexIDMap2) else None
    if isinstance(inner, faiss.IndexFlat):
        return (
            faiss.rev_swig_ptr(inner.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d).copy()
        )
    ids = ids_of(index)
    return np.concatenate([index.reconstruct_batch(ids[i : i + 65536]) for i in range(0, len(ids), 65536)])


def remove(index: faiss.Index, ids) -> int:
    """Remove ``ids`` in place (types that can delete natively: flat, IVF)."""
    ids = np.asarray(list(ids), dtype=np.int64)
    if len(ids) == 0:
        return 0
    if ivf_of(index) is not None and not isinstance(faiss.downcast_index(index), faiss.IndexIDMap):
        return index.remove_ids(faiss.IDSelectorArray(ids))  # what the hashtable direct map supports
    return index.remove_ids(faiss.IDSelectorBatch(ids))


def without(index: faiss.Index, ids) -> faiss.Index:
    """``index`` minus ``ids``: removed in place, or for HNSW (no deletes in FAISS) a graph rebuilt
    from the remaining stored vectors."""
    ids = np.asarray(list(ids), dtype=np.int64)
    if len(ids) == 0:
        return index
    if not is_hnsw(index):
        remove(index, ids)
        return index
    have = ids_of(index)
    keep = ~np.isin(have, ids)
    if keep.all():
        return index
    fresh = faiss.clone_index(index)  # same type and parameters (and training, for HNSW-SQ)
    fresh.reset()
    _add(fresh, all_vectors(index)[keep], have[keep])
    return fresh


def ivf_of(index: faiss.Index):
    return faiss.try_extract_index_ivf(index)


def is_hnsw(index: faiss.Index) -> bool:
    top = faiss.downcast_index(index)
    inner = faiss.downcast_index(top.index) if isinstance(top, (faiss.IndexIDMap, faiss.IndexIDMap2)) else top
    return isinstance(inner, faiss.IndexHNSW)


def is_exact(index: faiss.Index) -> bool:
    """True when stored vectors are kept as float32 (flat, HNSW-Flat, IVF-Flat), not lossy codes."""
    top = faiss.downcast_index(index)
    inner = faiss.downcast_index(top.index) if isinstance(top, (faiss.IndexIDMap, faiss.IndexIDMap2)) else top
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    return isinstance(inner, (faiss.IndexFlat, faiss.IndexIVFFlat))


def _add(index: faiss.Index, x: np.ndarray, ids: np.ndarray) -> None:
    for i in range(0, len(x), 65536):
        index.add_with_ids(
            np.ascontiguousarray(x[i : i + 65536], dtype=np.float32),
            np.ascontiguousarray(ids[i : i + 65536], dtype=np.int64),
        )
