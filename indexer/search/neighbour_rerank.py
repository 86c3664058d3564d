"""Neighbour re-ranking: the top hits of a search scored again, each hit's stored vector augmented
by that of its nearest other hit (database-side augmentation, done at search time over the hits
only, so nothing stored changes when photos come and go).

More: docs/design-notes.md (``indexer.search.neighbour_rerank``)."""

from __future__ import annotations

import numpy as np

from retrieval.descriptors import unit_rows
from retrieval.errors import UserError

from .query_expansion import (
    SAME_IMAGE,
    SAME_IMAGE_SLACK,
    SearchFn,
    VectorsFn,
    expand_queries,
    same_image_first,
    weights,
)

# hits re-scored per query by default (0 = off), each with its nearest among them:
# benchmarks/neighbour_rerank.py
DEFAULT_RERANK = 100


def check_depth(depth) -> None:
    """UserError unless ``depth`` is a whole number >= 0."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise UserError(f"--rerank must be a whole number >= 0 (0 = off), got {depth!r}")


def nearest_others(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, cosine) of each row's nearest other row of ``x`` (unit rows): never itself or a byte
    copy of it (at SAME_IMAGE or above); (-1, 0) for a row without one."""
    g = x @ x.T
    g[np.eye(len(x), dtype=bool) | (g >= SAME_IMAGE)] = -np.inf
    at = g.argmax(axis=1) if len(x) else np.zeros(0, np.int64)
    score = g[np.arange(len(x)), at]
    found = np.isfinite(score)
    return np.where(found, at, -1), np.where(found, score, 0.0).astype(np.float32)


def rerank(
    stored_vectors: VectorsFn,
    queries: np.ndarray,
    first: tuple[np.ndarray, np.ndarray],
    k: int,
    alpha: float,
    depth: int,
    own: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of ``first`` (each query's hits, best first: [Q, n] scores and ids) after
    scoring its first ``depth`` other hits again as ``q . normalise(x + s ** alpha * n)``: ``x`` the
    hit's stored vector, ``n`` that of its nearest among those ``depth`` hits and ``s`` their cosine;
    the hits after them follow as they were. Hits at SAME_IMAGE or above (the query itself, its byte
    copies; also those of ``own``, the results of a search with the queries before query expansion)
    stay first at their own scores and are nobody's neighbour.
    Neighbours come from the query's own hits, not the whole index: one small matrix product per
    query, whatever the index's size (benchmarks/neighbour_rerank.py measured it against the
    nearest photo in the whole index: the same mAP on every set)."""
    f_s, f_i = first
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    out_s, out_i = _kept(first, k)
    split = [
        _split(f_s[q], f_i[q], depth, None if own is None else (own[0][q], own[1][q]))
        for q in range(len(f_i))
    ]
    head_ids = np.unique(np.concatenate([f_i[q][head] for q, (_, head, _) in enumerate(split)]))
    if len(head_ids) == 0:
        return out_s, out_i
    x_all = np.ascontiguousarray(stored_vectors(head_ids), dtype=np.float32)
    with _one_blas_thread():
        for q, (same, head, tail) in enumerate(split):
            x = x_all[np.searchsorted(head_ids, f_i[q][head])]
            nb, score = nearest_others(x)
            n = np.where((nb >= 0)[:, None], x[np.maximum(nb, 0)], 0.0)
            s = unit_rows(x + weights(score, alpha)[:, None] * n) @ queries[q]
            order = np.argsort(-s, kind="stable")
            got_s = np.concatenate([f_s[q][same], s[order], f_s[q][tail]])[:k]
            got_i = np.concatenate([f_i[q][same], f_i[q][head][order], f_i[q][tail]])[:k]
            out_s[q], out_i[q] = 0.0, -1
            out_s[q, : len(got_s)], out_i[q, : len(got_i)] = got_s, got_i
    return out_s, out_i


_controller = None


def _one_blas_thread():
    """A context with BLAS on one thread. These products are small (100 x 100 x 512), and between
    FAISS's OpenMP calls a multi-threaded OpenBLAS waited on spinning threads: 8-16 ms a query
    instead of 0.9 (benchmarks/neighbour_rerank.py's cost table)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController  # lazy: it lists the loaded libraries once

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def _split(scores: np.ndarray, ids: np.ndarray, depth: int, own) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of one query's hits: (the query's own photo and byte copies, the first ``depth``
    others, the rest)."""
    valid = ids >= 0
    same = valid & (scores >= SAME_IMAGE)
    if own is not None:
        same |= valid & np.isin(ids, own[1][(own[1] >= 0) & (own[0] >= SAME_IMAGE)])
    others = np.flatnonzero(valid & ~same)
    return np.flatnonzero(same), others[:depth], others[depth:]


def ranked(
    search: SearchFn,
    stored_vectors: VectorsFn,
    queries: np.ndarray,
    k: int,
    qe: int,
    alpha: float,
    depth: int = DEFAULT_RERANK,
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the ``k`` best for each query: alpha-QE over its top ``qe`` hits
    (``query_expansion``), then its top ``depth`` hits re-scored by ``rerank`` (0: not re-scored),
    the others after them as they were. The query itself and its byte copies stay first, at their own scores."""
    check_depth(depth)
    expanded, first = expand_queries(search, stored_vectors, queries, qe, alpha)
    if depth == 0:
        found = search(expanded, k)
    else:
        hits = search(expanded, max(k, depth + SAME_IMAGE_SLACK))
        found = rerank(stored_vectors, expanded, hits, k, alpha, depth, own=first)
    return found if first is None else same_image_first(first, found, k)


def _kept(first: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``first`` cut or padded (score 0, id -1) to ``k`` columns."""
    out_s = np.zeros((len(first[1]), k), np.float32)
    out_i = np.full((len(first[1]), k), -1, np.int64)
    n = min(k, first[1].shape[1])
    out_s[:, :n], out_i[:, :n] = first[0][:, :n], first[1][:, :n]
    return out_s, out_i
