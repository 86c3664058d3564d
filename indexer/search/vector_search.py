"""Searching an index: query images to descriptors (and class scores), FAISS results to hits, and
the indexed files a caller may read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from indexer import vectors
from indexer.reports import SearchHit
from indexer.storage.offline import in_any
from indexer.storage.store import Store
from retrieval.errors import UserError
from retrieval.preprocess import ImageError, draft_side, load_and_prepare

from . import neighbour_rerank as nr
from . import rotation
from .options import SearchOptions


def _check_query_path(q) -> None:
    if isinstance(q, (str, os.PathLike)):
        p = Path(q)
        if not p.exists():
            raise UserError(f"query image not found: {q}")
        if not p.is_file():
            raise UserError(f"query is not a file: {q}")


def embed_queries(index, queries: Iterable, with_logits: bool = False):
    """``Index.embed_queries``: descriptors of query images (paths, bytes or PIL images); with
    ``with_logits``, also the class scores from the same forward pass (None without a classifier)."""
    prepared = []
    for q in queries:
        name = q if isinstance(q, (str, os.PathLike)) else "query image"
        _check_query_path(q)
        try:
            prepared.append(load_and_prepare(q, index.spec.input_geometry))
        except ImageError as e:
            raise UserError(f"cannot use {name}: {e}") from None
    if not prepared:
        empty = np.zeros((0, index.spec.descriptor_dim), np.float32)
        return (empty, None) if with_logits else empty
    images = [p.array for p in prepared]
    sizes = np.array([p.valid for p in prepared], dtype=np.int64)
    if with_logits:
        return index.embedder.embed_with_logits(images, sizes)
    return index.embedder.embed_batch(images, sizes)


def embed_and_search(
    index, queries: Iterable, k: int = 10, with_logits: bool = False, options: SearchOptions = SearchOptions()
):
    """``Index.embed_and_search``: (hits per query, the queries' descriptors, their class scores or
    None). With ``options.rotations`` each query is also searched turned by 90 and 270 degrees and
    every image keeps its best score, a turned view's less a margin (``indexer.search.rotation``);
    descriptors and class scores stay the upright ones."""
    options = options.resolved()
    queries = list(queries)
    if not options.rotations:
        out = embed_queries(index, queries, with_logits)
        d, logits = out if with_logits else (out, None)
        return search_vectors(index, d, k, options), d, logits
    views, draft = [], draft_side(index.spec.input_geometry)
    for q in queries:  # each file decoded once, at the scale the model needs
        _check_query_path(q)
        upright = rotation.upright_view(q, q if isinstance(q, (str, os.PathLike)) else "query image", draft)
        views += [upright, *rotation.turns(upright)]
    out = embed_queries(index, views, with_logits)
    d, logits = out if with_logits else (out, None)
    upright = slice(None, None, rotation.VIEWS)
    return search_views(index, d, k, options), d[upright], None if logits is None else logits[upright]


def search_views(
    index, views: np.ndarray, k: int = 10, options: SearchOptions = SearchOptions()
) -> list[list[SearchHit]]:
    """Hits per query of ``views`` (``rotation.VIEWS`` descriptor rows per query: upright, then its
    turns), every image scored by its best view, a turned view's less ``rotation.TURN_MARGIN``."""
    scores, ids = search_ids(index, views, k, options)
    return hits(index.store, *rotation.merge_by_max(scores, ids, rotation.VIEWS, max(k, 1)))


def search_vectors(
    index, queries: np.ndarray, k: int = 10, options: SearchOptions = SearchOptions()
) -> list[list[SearchHit]]:
    """``Index.search_vectors``: hits for descriptor rows (``options.rotations`` does not apply: a
    descriptor has no pixels to turn)."""
    return hits(index.store, *search_ids(index, queries, k, options))


def search_ids(
    index, queries: np.ndarray, k: int = 10, options: SearchOptions = SearchOptions()
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS results ([Q, k] scores and ids) of ``search_vectors``: ``nprobe``/``ef_search``
    overriding the index's stored ones, alpha-QE over the top ``qe`` hits, then the top ``rerank``
    hits re-scored with their neighbours (``neighbour_rerank``)."""
    if k < 1:
        raise UserError(f"top-k must be at least 1 (got {k})")
    o = options.resolved()
    queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, index.spec.descriptor_dim)
    # whitened when the index has a whitening: queries, results and QE's stored vectors in one space
    faiss_index, queries = index.committed.search_space(queries)
    if faiss_index.ntotal == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    cfg = vectors.IndexConfig.from_meta(index.store.meta("vectors_index"))
    gpu_index = index.committed.gpu_index(faiss_index)

    def search(x: np.ndarray, n: int):
        return vectors.search(
            faiss_index,
            x,
            min(n, faiss_index.ntotal),
            o.nprobe or cfg.nprobe,
            o.ef_search or cfg.ef_search,
            gpu_index=gpu_index,
        )

    return nr.ranked(search, faiss_index.reconstruct_batch, queries, k, o.qe, o.qe_alpha, o.rerank)


def hits(store: Store, scores: np.ndarray, ids: np.ndarray) -> list[list[SearchHit]]:
    """FAISS results ([Q, k] scores and image ids) as SearchHits, one database read for all."""
    rows = store.rows_by_id({int(i) for i in ids.ravel() if i >= 0})
    offline = list(store.offline_folders())
    captures = store.captures(rows)
    results = []
    for qs, qi in zip(scores, ids):
        found = []
        for score, i in zip(qs, qi):
            row = rows.get(int(i))
            if row is None:
                continue  # removed by an update since these vectors were loaded
            found.append(
                SearchHit(
                    row.id,
                    row.path,
                    float(score),
                    row.label,
                    row.width,
                    row.height,
                    row.size,
                    row.format,
                    row.sha256,
                    row.time_s,
                    row.source,
                    offline=bool(offline) and in_any(row.source or row.path, offline) is not None,
                    capture=captures.get(row.id),
                )
            )
        results.append(found)
    return results


def indexed_file(store: Store, image: int | str) -> Path:
    """``Index.indexed_file``: the file of an indexed image, only inside one of the index's folders."""
    row = (
        store.rows_by_id([image]).get(int(image))
        if isinstance(image, (int, np.integer))
        else store.row_by_path(str(image))
    )
    if row is None:
        raise UserError(f"not an indexed image: {image}")
    path = os.path.normpath(os.path.abspath(row.source or row.path))
    for root in store.roots():
        root = os.path.normpath(os.path.abspath(root))
        if path.startswith(root.rstrip(os.sep) + os.sep):
            return Path(path)
    raise UserError(f"refusing to read {row.path}: it is outside the index's folders")
