"""Near-duplicate pairs from descriptors with FAISS k-NN, never an N x N matrix.

More: docs/design-notes.md (``indexer.dedup.candidates``)."""

from __future__ import annotations

import math
import time

import faiss
import numpy as np

EXACT_LIMIT = 100_000
DEFAULT_K = 16
MAX_K = 256
DEFAULT_NPROBE = 16
CHUNK = 8192
PCA_DIM = 64


def build_search_index(
    xb: np.ndarray,
    exact_limit: int = EXACT_LIMIT,
    nlist: int | None = None,
    nprobe: int = DEFAULT_NPROBE,
    train_size: int | None = None,
    seed: int = 1234,
):
    """(faiss index over ``xb`` with ids 0..N-1, description dict)."""
    n, d = xb.shape
    if n <= exact_limit:
        index = faiss.IndexFlatIP(d)
        index.add(xb)
        return index, {"faiss": "IndexFlatIP (exact)", "n": n}
    nlist = nlist or int(min(65536, max(64, 2 ** round(math.log2(4 * math.sqrt(n))))))
    train_size = min(n, train_size or 40 * nlist)
    rng = np.random.default_rng(seed)
    sample = xb[np.sort(rng.choice(n, train_size, replace=False))]
    # candidates come from a PCA-64 copy (8x less to train, store and scan); every candidate is then
    # re-scored with the full vectors, so reported similarities are exact cosines. L2 on unit
    # vectors ranks like cosine (|a-b|^2 = 2 - 2 cos), and L2 k-means keeps the lists balanced.
    pca_dim = min(d, PCA_DIM)
    index = faiss.index_factory(d, f"PCA{pca_dim},IVF{nlist}_HNSW32,Flat", faiss.METRIC_L2)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = seed
    ivf.cp.niter = 10
    ivf.clustering_index = faiss.IndexFlatL2(pca_dim)  # exact (BLAS) k-means; HNSW only for assignment
    index.train(sample)
    del sample
    for i in range(0, n, CHUNK * 8):
        index.add(xb[i : i + CHUNK * 8])
    ivf.nprobe = nprobe
    faiss.downcast_index(ivf.quantizer).hnsw.efSearch = max(64, 2 * nprobe)
    return index, {
        "faiss": f"PCA{pca_dim},IVF{nlist}_HNSW32,Flat (L2, nprobe={nprobe}, trained on {train_size}; "
        f"candidates re-scored with the full {d}-d vectors)",
        "n": n,
        "nlist": nlist,
        "nprobe": nprobe,
        "rescore": True,
    }


def near_pairs(
    xb: np.ndarray,
    threshold: float,
    k: int = DEFAULT_K,
    max_k: int = MAX_K,
    index=None,
    progress=None,
    floor: float | None = None,
    **build_options,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Pairs (i < j) of rows of ``xb`` with cosine >= ``threshold``: arrays (i, j, score), stats.

    ``floor`` (< threshold): also the pairs with floor <= cosine < threshold among each row's ``k``
    nearest neighbours (candidates for keypoint verification); only rows still full at
    ``threshold`` ask again with a larger k."""
    xb = np.ascontiguousarray(xb, dtype=np.float32)
    n = len(xb)
    t0 = time.perf_counter()
    if index is None:
        index, info = build_search_index(xb, **build_options)
    else:
        info = {"faiss": type(index).__name__, "n": n}
    rescore = bool(info.get("rescore"))

    def search(q, kk):
        scores, ids = index.search(q, kk)
        if rescore:  # exact cosines of the candidates, best first
            scores = np.full(ids.shape, -2.0, np.float32)
            for s in range(0, len(q), 512):
                cand = ids[s : s + 512]
                scores[s : s + 512] = np.einsum("qd,qkd->qk", q[s : s + 512], xb[np.maximum(cand, 0)])
            scores[ids < 0] = -2.0
            order = np.argsort(-scores, axis=1)
            scores, ids = np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)
        return scores, ids

    t_build = time.perf_counter() - t0
    k = max(2, min(k, n))
    lowest = threshold if floor is None else min(floor, threshold)
    parts_i, parts_j, parts_s = [], [], []
    overflow = []
    for start in range(0, n, CHUNK):
        scores, ids = search(xb[start : start + CHUNK], k)
        _collect(start, scores, ids, lowest, parts_i, parts_j, parts_s)
        full = np.nonzero(scores[:, -1] >= threshold)[0]
        overflow.extend((start + full).tolist())
        if progress:
            progress(min(n, start + CHUNK), n)
    big_k = min(max_k, n)
    if overflow and big_k > k:  # dense clusters: ask those again with a larger k
        rows = np.array(overflow, dtype=np.int64)
        for s in range(0, len(rows), 1024):
            r = rows[s : s + 1024]
            scores, ids = search(xb[r], big_k)
            for row, sc, idx in zip(r, scores, ids):
                keep = (sc >= threshold) & (idx >= 0)
                parts_i.append(np.full(int(keep.sum()), row, dtype=np.int64))
                parts_j.append(idx[keep].astype(np.int64))
                parts_s.append(sc[keep].astype(np.float32))
    if parts_i:
        i = np.concatenate(parts_i)
        j = np.concatenate(parts_j)
        s = np.concatenate(parts_s)
    else:
        i = j = np.zeros(0, np.int64)
        s = np.zeros(0, np.float32)
    i, j, s = _canonical(i, j, s)
    info.update(
        {
            "k": k,
            "max_k": big_k,
            "dense_rows_requeried": len(overflow),
            "pairs": int(len(i)),
            "build_seconds": round(t_build, 3),
            "search_seconds": round(time.perf_counter() - t0 - t_build, 3),
        }
    )
    return i, j, s, info


def _collect(start, scores, ids, threshold, parts_i, parts_j, parts_s) -> None:
    mask = (scores >= threshold) & (ids >= 0)
    rows, cols = np.nonzero(mask)
    parts_i.append(rows.astype(np.int64) + start)
    parts_j.append(ids[rows, cols].astype(np.int64))
    parts_s.append(scores[rows, cols].astype(np.float32))


def _canonical(i, j, s):
    """Drop self pairs, orient i < j, keep one copy of each pair (its highest score)."""
    keep = i != j
    i, j, s = i[keep], j[keep], s[keep]
    a, b = np.minimum(i, j), np.maximum(i, j)
    order = np.lexsort((-s, b, a))
    a, b, s = a[order], b[order], s[order]
    first = np.ones(len(a), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[first], b[first], np.minimum(s[first], 1.0)


def merge_pairs(i, j, sc, ri, rj, rs):
    """The union of two pair lists (i < j in both), each pair once."""
    if len(ri) == 0:
        return i, j, sc
    known = set(zip(i.tolist(), j.tolist()))
    new = np.array([(a, b) not in known for a, b in zip(ri.tolist(), rj.tolist())], dtype=bool)
    return (
        np.concatenate([i, ri[new]]),
        np.concatenate([j, rj[new]]),
        np.concatenate([sc, rs[new].astype(np.float32)]),
    )
