"""Rotation search (``indexer.search.rotation``): which turns of the query, and how much less a turned
view's score counts, on every labelled set we have, for each descriptor.

Sets as benchmarks/descriptor_frontier.py builds them (every query is itself indexed and left out of
its own results): ``holidays150`` (personal photo series; some of its photos are stored sideways
without an EXIF orientation, as in the public benchmark it is half of), ``paris5`` (250 photos of 5
landmarks, 50 relevant per query), ``pairs`` (stereo/viewpoint pairs, one relevant photo). Rankings
go through the product's code: each view of a query (upright, then its turns) is searched and
re-ranked as ``Index.search`` does (``neighbour_rerank.ranked``, default depth, no QE), then
``rotation.merge_by_max`` keeps each photo's best view, a turned view's score less the margin.

``halves 5%``: the 5th percentile of the mAP gain over "upright only" on 500 random halves of the
queries (holidays150 and paris5): how much a collection like half of ours can lose. The turned query
descriptors are embedded once and cached under --work beside the frontier's vectors.
Run:  PYTHONPATH=. python benchmarks/rotation_search.py [--sizes 224] [--poolings gem] [--int8] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import descriptor_frontier as frontier  # noqa: E402
from neighbour_rerank import aps_of, flat  # noqa: E402

from benchmarks.decode_overlap import cpu_line  # noqa: E402
from indexer.search import neighbour_rerank as nr  # noqa: E402
from indexer.search import query_expansion as qx  # noqa: E402
from indexer.search import rotation  # noqa: E402

ALL_TURNS = ("90", "180", "270")  # the order of the cached turned descriptors
# (label, turns, margin): upright only (no rotation search), the old option, then the margin's range
SETTINGS = [
    ("upright only", (), 0.0),
    ("90/180/270, no margin (old)", ("90", "180", "270"), 0.0),
    ("90/270, no margin", ("90", "270"), 0.0),
    ("90/270, margin 0.04", ("90", "270"), 0.04),
    ("90/270, margin 0.06 (default)", ("90", "270"), 0.06),
    ("90/270, margin 0.08", ("90", "270"), 0.08),
    ("90/270, margin 0.10", ("90", "270"), 0.10),
    ("90/180/270, margin 0.06", ("90", "180", "270"), 0.06),
]


def turned_views(spec, folder: Path, files: list[Path], queries: list[int], precision: str, name: str):
    """Descriptors [Q, 3, d] of each query turned by 90, 180 and 270 degrees (cached)."""
    from PIL import Image

    from retrieval.engines import load_embedder
    from retrieval.preprocess import open_image, prepare

    cache = folder / f"turned-{name}-{precision}.npy"
    if cache.exists():
        return np.load(cache)
    options = {} if precision == "int8" else {"precision": precision}
    emb = load_embedder("openvino", spec, folder, batch_size=8, **options)
    turns = [getattr(Image.Transpose, f"ROTATE_{t}") for t in ALL_TURNS]
    out = []
    for q in queries:
        im = open_image(str(files[q]))
        out.append(emb.embed_prepared([prepare(im.transpose(t), spec.input_geometry) for t in turns]))
    views = np.stack(out).astype(np.float32)
    np.save(cache, views)
    return views


def per_query_ap(v, turned, pool, queries, relevant, turns, margin) -> np.ndarray:
    """AP of each query over ``pool`` with the product's ranking: views searched and re-ranked one by
    one, then merged by ``rotation.merge_by_max`` with ``margin``."""
    pool_arr = np.asarray(pool)
    search, stored = flat(v[pool_arr])
    pick = [ALL_TURNS.index(t) for t in turns]
    views = np.concatenate([v[queries][:, None], turned[:, pick]], axis=1)  # [Q, V, d]
    n_views = views.shape[1]
    scores, ids = nr.ranked(
        search, stored, views.reshape(-1, v.shape[1]), len(pool), 0, qx.DEFAULT_ALPHA, nr.DEFAULT_RERANK
    )
    if n_views > 1:
        scores, ids = rotation.merge_by_max(scores, ids, n_views, len(pool), margin)
    return aps_of(ids, pool_arr, queries, relevant)


def halves_5th(gain: np.ndarray, rounds: int = 500) -> float:
    rng = np.random.default_rng(0)
    n = len(gain)
    return float(np.percentile([gain[rng.permutation(n)[: n // 2]].mean() for _ in range(rounds)], 5))


def main() -> int:
    from retrieval.engines import cpu_runs_bf16

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[224])
    ap.add_argument("--poolings", nargs="+", default=["gem"])
    ap.add_argument("--int8", action="store_true", help="the INT8 model an index makes (default: bf16/f32)")
    ap.add_argument("--work", type=Path, default=ROOT / ".frontier")
    args = ap.parse_args()
    print(f"CPU: {cpu_line()}")
    precision = "int8" if args.int8 else ("bf16" if cpu_runs_bf16() else "f32")
    files, measured = frontier.sets()
    args.work.mkdir(exist_ok=True)
    halved = ("holidays150", "paris5")
    for size in args.sizes:
        for pooling in args.poolings:
            spec, folder = frontier.model_dir(args.work, size, pooling, (1.0,), args.int8)
            v, _ = frontier.embed(spec, folder, files, precision, folder / f"vectors-{precision}.npz")
            turned = {
                name: turned_views(spec, folder, files, measured[name][1], precision, name)
                for name in measured
            }
            print(f"\n{size} {pooling} ({precision}), re-ranking {nr.DEFAULT_RERANK}, no QE: mAP (gain)")
            head = "".join(f"{name:>17}" for name in measured) + "".join(
                f"{n + ' halves 5%':>24}" for n in halved
            )
            print(f"{'setting':<32}{head}")
            base = None
            for label, turns, margin in SETTINGS:
                row = {n: per_query_ap(v, turned[n], *measured[n], turns, margin) for n in measured}
                base = base or row
                cells = "".join(
                    f"{row[n].mean():.3f} ({row[n].mean() - base[n].mean():+.3f})".rjust(17) for n in measured
                )
                spread = "".join(
                    f"{halves_5th(row[n] - base[n]):+.4f}".rjust(24) if turns else " " * 24 for n in halved
                )
                print(f"{label:<32}{cells}{spread}", flush=True)
    print(
        "\nTurned views cost an image query 1 + len(turns) model runs (the web UI keeps an indexed "
        "photo's stored upright descriptor and embeds only its turns)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
