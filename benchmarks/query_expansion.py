"""Search-time alpha query expansion (and database-side augmentation, DBA): what K and alpha gain.

Sets (every query left out of its own results and of its expansion: an outside photo):
  paris5         retrieval/paris5, 250 photos of 5 landmarks; every photo a query, the other photos
                 of its landmark relevant (about 50 each); mAP with the INRIA Holidays trapezoid rule
  paris5-sparse  the first ``--sparse`` photos of each landmark among the pairs set's 38 photos:
                 few relevant photos per query, as for most photos of a personal collection; mAP
  pairs          the stereo/viewpoint pairs of tests/conftest.py (PAIRS) among its distractors and
                 the 10 UKBench base photos; each side of a pair queries for the other; recall@1
Rows: QE K x alpha, without and with DBA (every database vector replaced by
``dba(vectors, --dba-k, alpha)``, computed for each query without it; queries stay plain). Queries
go through ``indexer.search.query_expansion.expanded_search``, the code the index uses. With
``--rotations``, one more row: plain search with the query's 90/180/270 degree turns too (max over
the four), as ``Index.search(..., rotations=True)``: it measures what rotation search costs in
quality on upright photos (these sets have no turned ones).

Descriptors: ONE embedding pass of all photos with the shared VGG16 trunk, default spec, OpenVINO
FP32 (``retrieval.nets.builder.build`` + export), cached in /tmp/vgg-retrieval-qe (by model id and the
photo list). Quality only, no speed numbers.

Run:  PYTHONPATH=. python benchmarks/query_expansion.py [--ks 0 1 2 3 5 10] [--alphas 1 3] [--dba-k 3]
      [--rotations]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from benchmarks.prune_distill import PARIS, mean_ap_of_orders, paris5  # noqa: E402
from indexer.search.query_expansion import DEFAULT_ALPHA  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
CACHE = Path("/tmp/vgg-retrieval-qe")


def pairs_set() -> tuple[list[Path], np.ndarray, np.ndarray]:
    """The pairs gallery (both sides of each pair, the distractors, the UKBench base photos), its
    labels (a pair shares one; every other photo its own) and the query rows (both sides)."""
    from conftest import DISTRACTORS, PAIRS, SAMPLES

    files = [SAMPLES / p for pair in PAIRS for p in pair] + [SAMPLES / p for p in DISTRACTORS]
    files += sorted((DATA / "dedup" / "base_images").glob("*.jpg"))
    labels = np.concatenate(
        [np.repeat(np.arange(len(PAIRS)), 2), len(PAIRS) + np.arange(len(files) - 2 * len(PAIRS))]
    )
    return files, labels, np.arange(2 * len(PAIRS))


def sparse_paris(labels: np.ndarray, per_label: int, n_distractors: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the first ``per_label`` photos of each paris5 landmark, and labels for those rows
    followed by ``n_distractors`` photos of unique labels: few relevant photos per query."""
    rows = np.concatenate([np.flatnonzero(labels == c)[:per_label] for c in np.unique(labels)])
    return rows, np.concatenate([labels[rows], labels.max() + 1 + np.arange(n_distractors)])


def embed(paths: list, key: str, turns: bool = False) -> np.ndarray:
    """Descriptors of ``paths`` with the default VGG16 spec, OpenVINO FP32, cached under ``key``;
    ``turns``: of the photos turned by 90 degrees, then all turned by 180, then by 270
    (``indexer.search.rotation``)."""
    from indexer.search.rotation import turned_copies
    from retrieval.engines import load_embedder
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build
    from retrieval.preprocess import load_and_prepare

    spec, net = build("vgg16", str(WEIGHTS))
    out = CACHE / f"{spec.model_id}-{key}.npy"
    if out.exists():
        return np.load(out)
    model_dir = CACHE / f"model-{spec.model_id}"
    if not (model_dir / "model.json").exists():
        export_model(spec, net, model_dir, formats=("openvino",))
    emb = load_embedder("openvino", spec, model_dir, batch_size=8)
    sources = [(p, t) for t in range(3) for p in paths] if turns else [(p, None) for p in paths]
    parts = []
    for i in range(0, len(sources), 16):
        images = [p if t is None else turned_copies(p)[t] for p, t in sources[i : i + 16]]
        prep = [load_and_prepare(im, spec.input_size) for im in images]
        parts.append(
            emb.embed_batch(np.stack([p.array for p in prep]), np.array([p.valid for p in prep], np.int64))
        )
        print(f"  embedded {min(i + 16, len(sources))}/{len(sources)}", file=sys.stderr, flush=True)
    emb.close()
    d = np.concatenate(parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, d)
    return d


def turned_descriptors(paths: list) -> np.ndarray:
    """[len(paths), 3, dim]: descriptors of each photo turned by 90, 180 and 270 degrees."""
    return embed(paths, "turns-" + _key(paths), turns=True).reshape(3, len(paths), -1).transpose(1, 0, 2)


def _key(paths) -> str:
    return hashlib.sha1("\n".join(map(str, paths)).encode()).hexdigest()[:12]


def ranked(
    database: np.ndarray, queries: np.ndarray, own: np.ndarray | None, qe: int, alpha: float, views: int = 1
) -> np.ndarray:
    """Database positions by decreasing score for each query (its own position ``own`` left out,
    when the database holds it), after alpha-QE over the top ``qe``; ``views`` > 1: consecutive
    query rows are turns of one query, each database item scored by its best turn."""
    from indexer.search.query_expansion import expanded_search

    def search(x: np.ndarray, n: int):
        sims = x @ database.T
        if own is not None:
            sims[np.arange(len(x)), np.repeat(own, views)] = -np.inf
        if views > 1:
            sims = np.repeat(sims.reshape(-1, views, sims.shape[1]).max(axis=1), views, axis=0)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :n]
        return np.take_along_axis(sims, order, axis=1), order

    n = len(database) - (own is not None)
    _, order = expanded_search(search, lambda ids: database[ids], queries, n, qe, alpha)
    order = order[::views]
    return order if own is None else np.array([o[o != i] for i, o in zip(own, order)])


def evaluate(descriptors, labels, rows, qe, alpha, dba_k, turned=None) -> tuple[float, float]:
    """(mAP, recall@1) of the queries ``rows`` over the database ``descriptors`` (each query left
    out of its own results); ``turned`` [len(rows), 3, dim]: the queries' turns, for rotation search.
    DBA is computed for each query on the database without it (the query must not leak into its
    neighbours' augmented vectors)."""
    from indexer.search.query_expansion import dba

    queries, views = descriptors[rows], 1
    if turned is not None:
        queries, views = (
            np.concatenate([queries[:, None], turned], axis=1).reshape(-1, descriptors.shape[1]),
            4,
        )
    if not dba_k:
        orders = ranked(descriptors, queries, rows, qe, alpha, views)
    else:
        orders = []
        for n, i in enumerate(rows):
            others = np.delete(np.arange(len(descriptors)), i)
            database = dba(descriptors[others], dba_k, alpha)
            orders.append(
                others[ranked(database, queries[n * views : (n + 1) * views], None, qe, alpha, views)[0]]
            )
    top1 = [labels[order[0]] == labels[i] for i, order in zip(rows, orders)]
    return mean_ap_of_orders(orders, labels[rows], labels), float(np.mean(top1))


def measure(sets: dict, qe, alpha, dba_k, rotations=False) -> list[float]:
    """paris5 mAP, paris5-sparse mAP, pairs recall@1 for one setting."""
    out = []
    for name, (d, labels, rows, turned) in sets.items():
        m, r1 = evaluate(d, labels, rows, qe, alpha, dba_k, turned if rotations else None)
        out.append(r1 if name == "pairs" else m)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2, 3, 5, 10])
    ap.add_argument("--alphas", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--dba-k", type=int, default=3, help="DBA neighbours in the DBA rows")
    ap.add_argument("--sparse", type=int, default=4, help="photos per landmark in the sparse paris5 column")
    ap.add_argument("--rotations", action="store_true", help="also a row for rotation search (3 more passes)")
    args = ap.parse_args()
    paris_paths, labels = paris5()
    pair_files, pair_labels, pair_rows = pairs_set()
    everything = [Path(p) for p in paris_paths] + pair_files
    d = embed(everything, _key(everything))
    d_paris, d_pairs = d[: len(paris_paths)], d[len(paris_paths) :]
    sparse_rows, sparse_labels = sparse_paris(labels, args.sparse, len(d_pairs))
    turned = [None] * 3
    if args.rotations:
        pair_queries = [pair_files[i] for i in pair_rows]
        t_paris, t_pairs = turned_descriptors(paris_paths), turned_descriptors(pair_queries)
        turned = [t_paris, t_paris[sparse_rows], t_pairs]
    sets = {
        "paris5": (d_paris, labels, np.arange(len(d_paris)), turned[0]),
        "sparse": (
            np.concatenate([d_paris[sparse_rows], d_pairs]),
            sparse_labels,
            np.arange(len(sparse_rows)),
            turned[1],
        ),
        "pairs": (d_pairs, pair_labels, pair_rows, turned[2]),
    }
    print(
        f"\nVGG16 default spec, OpenVINO FP32, one embedding pass. paris5: {len(d_paris)} photos ({PARIS}), "
        f"5 landmarks, mAP (Holidays trapezoid, query excluded); paris5-sparse: the first {args.sparse} photos of "
        f"each landmark among the {len(d_pairs)} photos of the pairs set, mAP; pairs: {len(pair_rows)} queries "
        f"(both sides of tests/conftest.py PAIRS) among {len(d_pairs)} photos, recall@1\n"
    )
    print(
        f"| QE K | alpha | DBA | paris5 mAP | paris5-sparse ({args.sparse}/landmark) mAP | pairs recall@1 |"
    )
    print("|---:|---:|---|---:|---:|---:|")
    for dba_k in (0, args.dba_k):
        for alpha in args.alphas:
            for k in args.ks:
                m, sparse, r1 = measure(sets, k, alpha, dba_k)
                print(
                    f"| {k} | {alpha:g} | {f'K={dba_k}' if dba_k else 'off'} | {m:.4f} | {sparse:.4f} | {r1:.3f} |",
                    flush=True,
                )
    if args.rotations:
        m, sparse, r1 = measure(sets, 0, DEFAULT_ALPHA, 0, rotations=True)
        print(f"| 0 + rotations | - | off | {m:.4f} | {sparse:.4f} | {r1:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
