"""Query expansion at search time, and database-side augmentation for benchmarks
(``neighbour_rerank`` does it at search time).

More: docs/design-notes.md (``indexer.search.query_expansion``)."""

from __future__ import annotations

import math
from typing import Callable

import faiss
import numpy as np

from retrieval.descriptors import unit_rows
from retrieval.errors import UserError

# K of alpha-QE by default (0 = off). QE over 1 hit gained on paris5 (50 photos per landmark) but not
# on personal photo series (holidays150: 1-3 other shots per scene); with neighbour re-ranking on,
# it lost 0.018 mAP there and gained 0.017 on paris5 (benchmarks/neighbour_rerank.py), so it is off.
DEFAULT_QE = 0
DEFAULT_ALPHA = 3.0
SAME_IMAGE = 0.9999  # a hit this close is the query itself (or a byte copy): never expanded over
SAME_IMAGE_SLACK = 4  # hits fetched beyond K, to have K others after leaving those out


def check_options(qe: int, alpha: float) -> None:
    """UserError unless ``qe`` is a whole number >= 0 and ``alpha`` a finite number >= 0."""
    if isinstance(qe, bool) or not isinstance(qe, (int, np.integer)) or qe < 0:
        raise UserError(f"query expansion --qe must be a whole number >= 0 (0 = off), got {qe!r}")
    if not isinstance(alpha, (int, float, np.floating)) or not math.isfinite(alpha) or alpha < 0:
        raise UserError(f"query expansion --qe-alpha must be a number >= 0, got {alpha!r}")


def weights(scores: np.ndarray, alpha: float) -> np.ndarray:
    """The weight of each neighbour: its cosine score clipped at 0, to the power ``alpha``."""
    return np.clip(np.asarray(scores, np.float32), 0.0, None) ** np.float32(alpha)


def expand(
    queries: np.ndarray, neighbours: np.ndarray, scores: np.ndarray, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """alpha-QE: ``queries`` [Q, d], their top-K ``neighbours`` [Q, K, d] with ``scores`` [Q, K]
    -> normalise(q + sum_i s_i ** alpha * x_i), [Q, d]. A missing neighbour has score 0 (weight 0
    for alpha > 0; give it a zero vector)."""
    w = weights(scores, alpha)
    return unit_rows(
        np.asarray(queries, np.float32) + np.einsum("qk,qkd->qd", w, np.asarray(neighbours, np.float32))
    )


SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (queries, k) -> (scores, ids)
VectorsFn = Callable[[np.ndarray], np.ndarray]  # valid ids [n] -> their stored vectors [n, d]


def expand_queries(
    search: SearchFn, stored_vectors: VectorsFn, queries: np.ndarray, qe: int, alpha: float = DEFAULT_ALPHA
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """(the queries after alpha-QE over their top ``qe`` hits, the first search's results: None
    when ``qe`` is 0, the queries then as given). ``stored_vectors`` gives the stored vectors of ids."""
    check_options(qe, alpha)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if qe == 0 or len(queries) == 0:
        return queries, None
    first = search(queries, qe + SAME_IMAGE_SLACK)
    scores, ids = others(*first, qe)
    neighbours = np.zeros((*ids.shape, queries.shape[1]), np.float32)
    found = ids >= 0
    if found.any():
        neighbours[found] = stored_vectors(ids[found])
    scores = np.where(found, scores, 0.0)
    return expand(queries, neighbours, scores, alpha), first


def expanded_search(
    search: SearchFn,
    stored_vectors: VectorsFn,
    queries: np.ndarray,
    k: int,
    qe: int,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the ``k`` best for each query after alpha-QE over its top ``qe`` hits
    (plain ``search`` when ``qe`` is 0). ``stored_vectors`` gives the stored vectors of ids."""
    expanded, first = expand_queries(search, stored_vectors, queries, qe, alpha)
    if first is None:
        return search(expanded, k)
    return same_image_first(first, search(expanded, k), k)


def same_image_first(
    first: tuple[np.ndarray, np.ndarray], expanded: tuple[np.ndarray, np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The expanded results, with the first search's hits at SAME_IMAGE or above (the query itself and
    its byte copies) kept first at their own scores: a copy of the query stays "1.000, rank 1", and QE
    orders everything else."""
    f_s, f_i = first
    e_s, e_i = expanded
    if not (f_s >= SAME_IMAGE).any():
        return e_s, e_i
    n = e_i.shape[1]
    out_s = np.zeros((len(e_i), n), np.float32)
    out_i = np.full((len(e_i), n), -1, np.int64)
    for r in range(len(e_i)):
        same = (f_i[r] >= 0) & (f_s[r] >= SAME_IMAGE)
        rest = ~np.isin(e_i[r], f_i[r][same])
        s = np.concatenate([f_s[r][same], e_s[r][rest]])[:n]
        i = np.concatenate([f_i[r][same], e_i[r][rest]])[:n]
        out_s[r, : len(s)], out_i[r, : len(i)] = s, i
    return out_s, out_i


def others(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` hits of each row that are not the query itself: hits at SAME_IMAGE or above
    (the indexed photo used as the query, or a byte copy of it) would only add the query again, so an
    indexed query expands over ``k`` other photos, like a query from outside the collection."""
    out_s = np.zeros((len(ids), k), np.float32)
    out_i = np.full((len(ids), k), -1, np.int64)
    for r in range(len(ids)):
        keep = (ids[r] >= 0) & (scores[r] < SAME_IMAGE)
        n = min(k, int(keep.sum()))
        out_s[r, :n] = scores[r][keep][:n]
        out_i[r, :n] = ids[r][keep][:n]
    return out_s, out_i


def dba(vectors: np.ndarray, k: int, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Database-side augmentation: each row of ``vectors`` (L2-normalised, [N, d]) replaced by
    normalise(x + sum s_j ** alpha * x_j) over its ``k`` nearest other rows (cosine). ``k`` = 0
    returns a copy. For benchmarks: indexes do not store augmented vectors (module docstring)."""
    check_options(k, alpha)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if k == 0 or len(x) < 2:
        return x.copy()
    k = min(k, len(x) - 1)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    scores, ids = flat.search(x, k + 1)
    own = ids == np.arange(len(x))[:, None]
    # drop each row's own entry (or, when duplicates pushed it out, the last one) -> k others
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(len(x)), drop] = False
    ids = ids[keep].reshape(len(x), k)
    scores = np.where(ids >= 0, scores[keep].reshape(len(x), k), 0.0)
    return expand(x, x[np.maximum(ids, 0)], scores, alpha)
