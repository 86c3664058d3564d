"""Neighbour re-ranking (``indexer.search.neighbour_rerank``) and query expansion: mAP of each search
setting on every labelled set we have, for each descriptor, and what re-ranking costs per query.

Sets (as benchmarks/descriptor_frontier.py builds them; every query is itself indexed, as when a
user searches by one of their photos, and left out of its own results):
- ``holidays150``: personal photo series (1-3 other shots per scene), INRIA Holidays protocol;
- ``paris5``: 250 photos of 5 landmarks, about 50 relevant per query;
- ``pairs``: stereo/viewpoint pairs among the high-resolution sample photos (one relevant photo).
Rankings go through ``neighbour_rerank.ranked``, the code ``Index.search`` runs, over a flat FAISS
index of the set: the top ``depth`` hits re-scored, each with its nearest among them, the others
after them as they were. One row takes each hit's nearest photo in the whole set instead (the query
left out), as database-side augmentation proper would: the cheaper rule should lose nothing to it. Descriptors
are the frontier's, cached under --work (exported and embedded once, bf16 where the CPU has it).

The cost table times one query against N random unit vectors (flat index, this CPU): plain search
and the default re-ranking, median of --repeats.
Run:  PYTHONPATH=. python benchmarks/neighbour_rerank.py [--sizes 224] [--poolings gem]
      [--cost-n 10000 100000] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import descriptor_frontier as frontier  # noqa: E402

from benchmarks.decode_overlap import cpu_line  # noqa: E402
from benchmarks.prune_distill import average_precision  # noqa: E402
from indexer.search import neighbour_rerank as nr  # noqa: E402
from indexer.search import query_expansion as qx  # noqa: E402

# (label, qe, depth): the old default, each part alone, the new default, then the depth's range
SETTINGS = [
    ("qe 1 (old default)", 1, 0),
    ("plain", 0, 0),
    ("rerank 100 (default)", 0, 100),
    ("rerank 100 + qe 1", 1, 100),
    ("rerank 25", 0, 25),
    ("rerank 50", 0, 50),
    ("rerank 200", 0, 200),
    ("rerank 100, whole set", 0, -100),
]


def flat(x: np.ndarray):
    import faiss

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(np.ascontiguousarray(x, np.float32))
    return (lambda q, n: index.search(np.ascontiguousarray(q, np.float32), min(n, index.ntotal))), (
        lambda ids: x[ids]
    )


def set_map(v: np.ndarray, pool: list[int], queries: list[int], relevant: list[set], qe: int, depth: int):
    """mAP of ``queries`` over ``pool`` with the product's ranking (the query left out)."""
    pool_arr = np.asarray(pool)
    base = v[pool_arr]
    search, stored = flat(base)
    if depth < 0:
        ids = whole_set_rerank(base, [pool.index(q) for q in queries], v[queries], -depth)
    else:
        _, ids = nr.ranked(search, stored, v[queries], len(pool), qe, qx.DEFAULT_ALPHA, depth)
    return float(np.mean(aps_of(ids, pool_arr, queries, relevant)))


def aps_of(ids: np.ndarray, pool_arr: np.ndarray, queries: list[int], relevant: list[set]) -> np.ndarray:
    """AP of each query from its ranked rows of the pool (``ids``, -1 = none), the query left out."""
    aps = []
    for row, q, rel in zip(ids, queries, relevant):
        order = pool_arr[row[row >= 0]]
        order = order[order != q]
        hit = np.isin(order, list(rel))
        aps.append(average_precision(np.flatnonzero(hit), len(rel)))
    return np.array(aps)


def whole_set_rerank(base: np.ndarray, own: list[int], queries: np.ndarray, depth: int) -> np.ndarray:
    """Rows of ``base`` per query, best first: the top ``depth`` others re-scored, each with its
    nearest photo of the whole set (never itself or the query's own photo ``own``)."""
    g = base @ base.T
    np.fill_diagonal(g, -np.inf)
    out = []
    for q, o in zip(queries, own):
        s = base @ q
        s[o] = np.inf  # the query's own photo first, as the product keeps it
        order = np.argsort(-s, kind="stable")
        head = order[1 : depth + 1]
        gh = g[head].copy()
        gh[:, o] = -np.inf
        nb = gh.argmax(axis=1)
        w = np.clip(gh[np.arange(len(head)), nb], 0, None) ** qx.DEFAULT_ALPHA
        aug = base[head] + w[:, None] * base[nb]
        sa = (aug / np.linalg.norm(aug, axis=1, keepdims=True)) @ q
        out.append(np.concatenate([order[:1], head[np.argsort(-sa, kind="stable")], order[depth + 1 :]]))
    return np.stack(out)


def quality(args) -> None:
    from retrieval.engines import cpu_runs_bf16

    precision = "bf16" if cpu_runs_bf16() else "f32"
    files, measured = frontier.sets()
    args.work.mkdir(exist_ok=True)
    for size in args.sizes:
        for pooling in args.poolings:
            spec, folder = frontier.model_dir(args.work, size, pooling, (1.0,), False)
            v, _ = frontier.embed(spec, folder, files, precision, folder / f"vectors-{precision}.npz")
            print(f"\n{size} {pooling} ({precision}): mAP")
            print(f"{'setting':<24}" + "".join(f"{name:>17}" for name in measured) + f"{'mean':>8}")
            base_row = None
            for label, qe, depth in SETTINGS:
                row = [set_map(v, *measured[name], qe, depth) for name in measured]
                base_row = base_row or row
                cells = "".join(f"{m:.3f} ({m - b:+.3f})".rjust(17) for m, b in zip(row, base_row))
                print(f"{label:<24}{cells}{np.mean(row):>8.3f}", flush=True)


def _median_ms(fn, repeats: int) -> float:
    fn()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append(1000 * (time.perf_counter() - t))
    return float(np.median(runs))


def cost(args) -> None:
    rng = np.random.default_rng(0)
    depth = nr.DEFAULT_RERANK
    print(f"\nre-ranking cost, one query for 30 hits, flat index (ms, median of {args.repeats})")
    print(f"{'vectors':>9}{'plain':>9}{f'rerank {depth}':>12}{'ratio':>8}{'re-scoring alone':>18}")
    for n in args.cost_n:
        x = rng.standard_normal((n, 512)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        search, stored = flat(x)
        q = x[:1] + 0.1 * rng.standard_normal((1, 512)).astype(np.float32)
        plain = _median_ms(lambda: nr.ranked(search, stored, q, 30, 0, qx.DEFAULT_ALPHA, 0), args.repeats)
        rr = _median_ms(lambda: nr.ranked(search, stored, q, 30, 0, qx.DEFAULT_ALPHA, depth), args.repeats)
        hits = search(q, depth + qx.SAME_IMAGE_SLACK)
        alone = _median_ms(lambda: nr.rerank(stored, q, hits, 30, qx.DEFAULT_ALPHA, depth), args.repeats)
        print(f"{n:>9}{plain:>9.1f}{rr:>12.1f}{rr / plain:>7.2f}x{alone:>18.2f}", flush=True)
    print(f"(the rest of the difference is FAISS fetching {depth + qx.SAME_IMAGE_SLACK} hits instead of 30)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[224])
    ap.add_argument("--poolings", nargs="+", default=["gem"])
    ap.add_argument("--cost-n", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--work", type=Path, default=ROOT / ".frontier")
    args = ap.parse_args()
    print(f"CPU: {cpu_line()}")
    quality(args)
    if args.cost_n:
        cost(args)
    print("\npairs: mAP with one relevant photo per query (24 queries: one query is 0.04).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
