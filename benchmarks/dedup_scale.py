"""Dedup at scale: 1,000,000 synthetic 512-d descriptors with planted near duplicates.

Background vectors look like pooled ReLU features (non-negative, drawn around 2,000 "topics", so
unrelated images still have cosine ~0.4-0.8, as real VGG descriptors do). Planted clusters: a base
vector and 1-4 copies at an exact, chosen cosine to it (uniform in [threshold + 0.01, 0.995]).
Runs the same code as ``vgg-retrieval dedup`` (``search.near_pairs`` + ``groups.group_pairs``) and
prints time, peak memory (ru_maxrss) and the recall of planted pairs, as a markdown table.
Run:  python benchmarks/dedup_scale.py [--n 1000000] [--clusters 50000] [--nprobe 16]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def synthesize(n: int, d: int, clusters: int, threshold: float, seed: int = 0):
    """(x float32 [n, d] unit rows, planted pairs (base, copy) int64 [m, 2], their cosines)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((2000, d)).astype(np.float32)
    x = np.empty((n, d), np.float32)
    chunk = 100_000
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        t = rng.integers(0, len(topics), e - s)
        v = np.maximum(topics[t] + 1.5 * rng.standard_normal((e - s, d)).astype(np.float32), 0)
        x[s:e] = v / np.linalg.norm(v, axis=1, keepdims=True)
    sizes = rng.integers(1, 5, clusters)  # copies per base
    slots = rng.permutation(n)[: clusters + sizes.sum()]
    bases, copies = slots[:clusters], slots[clusters:]
    pairs, cos = [], []
    pos = 0
    for b, k in zip(bases.tolist(), sizes.tolist()):
        for c in copies[pos : pos + k].tolist():
            target = rng.uniform(threshold + 0.01, 0.995)
            noise = np.maximum(
                x[b] + 1.0 * rng.standard_normal(d).astype(np.float32), 0
            )  # a plausible other vector
            noise -= (noise @ x[b]) * x[b]
            noise /= np.linalg.norm(noise)
            x[c] = target * x[b] + np.sqrt(1 - target**2) * noise
            pairs.append((b, c))
            cos.append(target)
        pos += k
    return x, np.array(pairs, np.int64), np.array(cos, np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=50_000)
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--nprobe", type=int, default=None)
    ap.add_argument("--k", type=int, default=None)
    args = ap.parse_args()
    import faiss

    from indexer.dedup.candidates import DEFAULT_K, DEFAULT_NPROBE, near_pairs
    from indexer.dedup.find import DEFAULT_THRESHOLD
    from indexer.dedup.groups import group_pairs, keeper_rank

    thr = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    nprobe = args.nprobe or DEFAULT_NPROBE
    k = args.k or DEFAULT_K
    t0 = time.perf_counter()
    x, planted, cos = synthesize(args.n, args.dim, args.clusters, thr)
    t_gen = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    sample = x[rng.choice(args.n, 2000, replace=False)]
    bg = sample @ sample.T
    bg = bg[np.triu_indices(len(sample), 1)]
    rss_data = rss_gb()
    print(
        f"synthesized {args.n:,} x {args.dim} vectors ({x.nbytes / 1e9:.2f} GB) with {len(planted):,} planted pairs "
        f"in {t_gen:.0f}s; background cosine mean {bg.mean():.2f}, 99.9th pct {np.quantile(bg, 0.999):.2f}, "
        f"max {bg.max():.2f}; faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads",
        flush=True,
    )

    t1 = time.perf_counter()
    i, j, s, info = near_pairs(x, thr, k=k, nprobe=nprobe)

    rss_pairs = rss_gb()
    t2 = time.perf_counter()
    n = args.n
    rank = keeper_rank(np.ones(n), np.ones(n), np.zeros(n), np.arange(n))
    groups = group_pairs(n, i, j, s, rank)
    t_groups = time.perf_counter() - t2
    total = time.perf_counter() - t1

    found = set(zip(i.tolist(), j.tolist()))
    hit = np.array([(min(a, b), max(a, b)) in found for a, b in planted.tolist()])
    group_of = np.full(n, -1, np.int64)
    for g, (keep, members, _) in enumerate(groups):
        group_of[keep] = g
        group_of[members] = g
    same = (group_of[planted[:, 0]] >= 0) & (group_of[planted[:, 0]] == group_of[planted[:, 1]])
    planted_set = {(min(a, b), max(a, b)) for a, b in planted.tolist()}
    # pairs of copies of one base are true near duplicates too (when above the threshold)
    base_of = {}
    for a, b in planted.tolist():
        base_of[a] = a
        base_of[b] = a
    other = [
        (a, b)
        for a, b in found
        if (a, b) not in planted_set and not (a in base_of and base_of.get(b) == base_of[a])
    ]

    print(f"\n### Dedup of {n:,} synthetic {args.dim}-d descriptors (threshold {thr:.2f})\n")
    print("| item | value |")
    print("|---|---|")
    print(f"| FAISS index | {info['faiss']}, k={info['k']}, re-query up to k={info['max_k']} |")
    print(f"| index build (train + add) | {info['build_seconds']:.0f} s |")
    print(f"| k-NN search of all {n:,} vectors | {info['search_seconds']:.0f} s |")
    print(f"| grouping | {t_groups:.1f} s ({len(groups):,} groups) |")
    print(f"| total dedup time | {total:.0f} s ({total / 60:.1f} min) |")
    print(
        f"| peak RSS | {rss_gb():.2f} GB (vectors alone {x.nbytes / 1e9:.2f} GB; after synthesis "
        f"{rss_data:.2f} GB, after search {rss_pairs:.2f} GB) |"
    )
    print(
        f"| planted pairs recalled (found as a pair >= threshold) | {hit.mean():.4f} ({hit.sum():,}/{len(hit):,}) |"
    )
    print(f"| planted pairs in the same group | {same.mean():.4f} |")
    print(f"| pairs found that were not planted | {len(other):,} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
