"""Searching an index: query images to descriptors (and class scores), FAISS results to hits, and
the indexed files a caller may read."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from retrieval.errors import UserError
from retrieval.preprocess import ImageError, load_and_prepare

from . import vectors
from .reports import SearchHit
from .store import Store


def embed_queries(index, queries: Iterable, with_logits: bool = False):
    """``Index.embed_queries``: descriptors of query images (paths, bytes or PIL images); with
    ``with_logits``, also the class scores from the same forward pass (None without a classifier)."""
    prepared = []
    for q in queries:
        name = q if isinstance(q, (str, os.PathLike)) else "query image"
        if isinstance(q, (str, os.PathLike)):
            p = Path(q)
            if not p.exists():
                raise UserError(f"query image not found: {q}")
            if not p.is_file():
                raise UserError(f"query is not a file: {q}")
        try:
            prepared.append(load_and_prepare(q, index.spec.input_size))
        except ImageError as e:
            raise UserError(f"cannot use {name}: {e}") from None
    if not prepared:
        empty = np.zeros((0, index.spec.descriptor_dim), np.float32)
        return (empty, None) if with_logits else empty
    images = np.stack([p.array for p in prepared])
    sizes = np.array([p.valid for p in prepared], dtype=np.int64)
    if with_logits:
        return index.embedder.embed_with_logits(images, sizes)
    return index.embedder.embed_batch(images, sizes)


def search_vectors(index, queries: np.ndarray, k: int = 10, nprobe: int | None = None,
                   ef_search: int | None = None) -> list[list[SearchHit]]:
    """``Index.search_vectors``: hits for descriptor rows, ``nprobe``/``ef_search`` overriding the stored defaults."""
    if k < 1:
        raise UserError(f"top-k must be at least 1 (got {k})")
    for name, value in (("nprobe", nprobe), ("ef-search", ef_search)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be at least 1 (got {value})")
    queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, index.spec.descriptor_dim)
    faiss_index, queries = index.committed.search_space(queries)  # whitened when the index has a whitening
    k = min(k, faiss_index.ntotal)
    if k == 0:
        return [[] for _ in range(len(queries))]
    cfg = vectors.IndexConfig.from_meta(index.store.meta("vectors_index"))
    scores, ids = vectors.search(faiss_index, queries, k, nprobe or cfg.nprobe, ef_search or cfg.ef_search,
                                 gpu_index=index.committed.gpu_index(faiss_index))
    return hits(index.store, scores, ids)


def hits(store: Store, scores: np.ndarray, ids: np.ndarray) -> list[list[SearchHit]]:
    """FAISS results ([Q, k] scores and image ids) as SearchHits, one database read for all."""
    rows = store.rows_by_id({int(i) for i in ids.ravel() if i >= 0})
    results = []
    for qs, qi in zip(scores, ids):
        found = []
        for score, i in zip(qs, qi):
            row = rows.get(int(i))
            if row is None:
                continue  # removed by an update since these vectors were loaded
            found.append(SearchHit(row.id, row.path, float(score), row.label, row.width, row.height,
                                   row.size, row.format, row.sha256, row.time_s, row.source))
        results.append(found)
    return results


def indexed_file(store: Store, image: int | str) -> Path:
    """``Index.indexed_file``: the file of an indexed image, only inside one of the index's folders."""
    row = store.rows_by_id([image]).get(int(image)) if isinstance(image, (int, np.integer)) \
        else store.row_by_path(str(image))
    if row is None:
        raise UserError(f"not an indexed image: {image}")
    path = os.path.normpath(os.path.abspath(row.source or row.path))
    for root in store.roots():
        root = os.path.normpath(os.path.abspath(root))
        if path.startswith(root.rstrip(os.sep) + os.sep):
            return Path(path)
    raise UserError(f"refusing to read {row.path}: it is outside the index's folders")
