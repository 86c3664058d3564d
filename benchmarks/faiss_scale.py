"""FAISS index types at scale: build time, memory, bytes/vector, latency, QPS and recall@10.

Data: N synthetic 512-d unit descriptors shaped like pooled ReLU features (non-negative, drawn
around 2,000 "topics", so unrelated images still have cosine ~0.4-0.8, as real VGG descriptors do),
with planted near-neighbour clusters (a base and 2-9 copies at cosine 0.90-0.99). Queries: half
are new perturbed copies of planted bases (near-duplicate search), half are fresh draws from the
same topics (browsing search). Ground truth: exact inner-product search (IndexFlatIP).

For each index type (built with ``indexer.vectors.build``, the code the index uses): build time
(training included), resident memory growth (RSS after the build minus before), bytes/vector of the written file, latency
of one query (p50/p99 over --single queries, FAISS's own threads), batch QPS (all queries at once)
and recall@10 against exact search (overall, and for each half of the queries). ``--sweep`` also prints
recall/latency for several nprobe /
efSearch values (how the defaults were chosen).

Run:  python benchmarks/faiss_scale.py [--sizes 100000,1000000] [--types flat,ivf,ivfpq,hnsw,auto]
                                       [--queries 1000] [--single 200] [--sweep] [--threads N] [--noise 1.5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402

from indexer import vectors  # noqa: E402

D = 512


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _near(rng, base: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """Unit vectors at exactly cosine ``cos`` to the unit rows of ``base``."""
    noise = rng.standard_normal(base.shape).astype(np.float32)
    noise -= (noise * base).sum(1, keepdims=True) * base
    noise = _unit(noise)
    c = cos[:, None].astype(np.float32)
    return _unit(c * base + np.sqrt(1 - c * c) * noise)


def synthesize(n: int, queries: int, seed: int = 0, noise: float = 1.5):
    """(x [n, D], q [queries, D]): background + planted clusters, half near-duplicate queries.
    ``noise``: spread around each topic (1.5: topics stay apart; 3: they overlap)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((2000, D)).astype(np.float32)

    def background(m):
        t = rng.integers(0, len(topics), m)
        return _unit(np.maximum(topics[t] + noise * rng.standard_normal((m, D)).astype(np.float32), 0))

    x = np.empty((n, D), np.float32)
    for s in range(0, n, 100_000):
        x[s : min(n, s + 100_000)] = background(min(n, s + 100_000) - s)
    bases = rng.choice(n, max(1, n // 50), replace=False)  # ~2% of vectors start a cluster
    sizes = rng.integers(2, 10, len(bases))
    slots = rng.permutation(np.setdiff1d(np.arange(n), bases))[: sizes.sum()]
    base_of = np.repeat(bases, sizes)[: len(slots)]
    x[slots] = _near(rng, x[base_of], rng.uniform(0.90, 0.99, len(slots)))
    half = queries // 2
    qb = rng.choice(bases, half)
    q = np.concatenate([_near(rng, x[qb], rng.uniform(0.92, 0.99, half)), background(queries - half)])
    return x, q


def ground_truth(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    flat = faiss.IndexFlatIP(D)
    flat.add(x)
    return flat.search(q, k)[1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth)]))


def file_bytes(index) -> int:
    with tempfile.NamedTemporaryFile(suffix=".faiss") as f:
        faiss.write_index(index, f.name)
        return os.path.getsize(f.name)


def timed_search(index, q, k, nprobe, ef, single):
    lat = []
    for i in range(min(single, len(q))):
        t0 = time.perf_counter()
        vectors.search(index, q[i : i + 1], k, nprobe, ef)
        lat.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    _, ids = vectors.search(index, q, k, nprobe, ef)
    qps = len(q) / (time.perf_counter() - t0)
    lat = np.array(lat) * 1000
    return ids, float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), qps


def factory_for(kind: str, n: int) -> str:
    if kind in ("flat", "hnsw"):
        return kind
    if kind == "auto":
        return vectors.target_factory(vectors.IndexConfig(), n, D)
    if kind == "ivfflat":  # ivf without the 8-bit codes: what SQ8 costs in recall
        return vectors.target_factory(vectors.IndexConfig(type="ivf", train_min=1), n, D).replace(
            ",SQ8", ",Flat"
        )
    if kind in ("ivf", "ivfpq"):
        return vectors.target_factory(vectors.IndexConfig(type=kind, train_min=1), n, D)
    return kind  # a raw factory string


def run(
    n: int, kinds: list[str], queries: int, single: int, k: int, sweep: bool, noise: float = 1.5
) -> list[dict]:
    t0 = time.perf_counter()
    x, q = synthesize(n, queries, noise=noise)
    truth = ground_truth(x, q, k)
    ids = np.arange(n, dtype=np.int64)
    print(
        f"N={n:,}: data + exact ground truth in {time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True
    )
    rows = []
    for kind in kinds:
        factory = factory_for(kind, n)
        before = rss_mb()
        t0 = time.perf_counter()
        index = vectors.build(factory, x, ids)
        build_s = time.perf_counter() - t0
        mem = rss_mb() - before  # what the built index keeps resident (training temporaries freed)
        nprobe, ef = vectors.DEFAULT_NPROBE, vectors.DEFAULT_EF_SEARCH
        found, p50, p99, qps = timed_search(index, q, k, nprobe, ef, single)
        row = {
            "n": n,
            "kind": kind,
            "factory": factory,
            "build_s": build_s,
            "mem_mb": mem,
            "bytes": file_bytes(index) / n,
            "p50": p50,
            "p99": p99,
            "qps": qps,
            "recall": recall(found, truth),
            "recall_nd": recall(found[: len(q) // 2], truth[: len(q) // 2]),
            "recall_browse": recall(found[len(q) // 2 :], truth[len(q) // 2 :]),
            "nprobe": nprobe if vectors.ivf_of(index) is not None else None,
            "ef": ef if vectors.is_hnsw(index) else None,
        }
        rows.append(row)
        print(_line(row), file=sys.stderr, flush=True)
        if sweep:
            _sweep(index, q, truth, k, single, factory)
        del index
    return rows


def _sweep(index, q, truth, k, single, factory) -> None:
    if vectors.ivf_of(index) is not None:
        for nprobe in (4, 8, 16, 32, 64, 128):
            found, p50, p99, qps = timed_search(index, q, k, nprobe, vectors.DEFAULT_EF_SEARCH, single)
            print(
                f"  sweep {factory} nprobe={nprobe}: recall@10 {recall(found, truth):.4f}, p50 {p50:.2f} ms, "
                f"p99 {p99:.2f} ms, {qps:.0f} QPS",
                file=sys.stderr,
                flush=True,
            )
    elif vectors.is_hnsw(index):
        for ef in (16, 32, 64, 128, 256):
            found, p50, p99, qps = timed_search(index, q, k, 1, ef, single)
            print(
                f"  sweep {factory} efSearch={ef}: recall@10 {recall(found, truth):.4f}, p50 {p50:.2f} ms, "
                f"p99 {p99:.2f} ms, {qps:.0f} QPS",
                file=sys.stderr,
                flush=True,
            )


HEADER = (
    "| N | type | FAISS structure | build s | RSS +MB | bytes/vector | p50 ms | p99 ms | "
    "batch QPS | recall@10 | near-dup queries | browse queries |\n"
    "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _line(r: dict) -> str:
    params = f" (nprobe {r['nprobe']})" if r["nprobe"] else f" (efSearch {r['ef']})" if r["ef"] else ""
    return (
        f"| {r['n']:,} | {r['kind']} | {r['factory']}{params} | {r['build_s']:.1f} | {r['mem_mb']:.0f} | "
        f"{r['bytes']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['qps']:.0f} | {r['recall']:.4f} | "
        f"{r['recall_nd']:.4f} | {r['recall_browse']:.4f} |"
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated N values")
    ap.add_argument(
        "--types",
        default="flat,ivf,ivfflat,ivfpq,hnsw,auto",
        help="flat, hnsw, ivf, ivfflat, ivfpq, auto or FAISS factory strings (';'-separated then)",
    )
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--sweep", action="store_true", help="also sweep nprobe / efSearch")
    ap.add_argument("--threads", type=int, default=None, help="FAISS threads [default: OpenMP's]")
    ap.add_argument(
        "--noise",
        type=float,
        default=1.5,
        help="spread of the synthetic vectors around their topic (3 makes topics overlap) [1.5]",
    )
    args = ap.parse_args(argv)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    kinds = [t.strip() for t in args.types.split(";" if ";" in args.types else ",") if t.strip()]
    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}, topic noise {args.noise}",
        flush=True,
    )
    rows = []
    for n in [int(float(s)) for s in args.sizes.split(",")]:
        rows += run(n, kinds, args.queries, args.single, args.k, args.sweep, args.noise)
    print(HEADER)
    for r in rows:
        print(_line(r))


if __name__ == "__main__":
    main()
