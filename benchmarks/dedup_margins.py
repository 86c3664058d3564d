"""The margins of the copy tests (indexer/dedup/copytests.py, rule.py): each statistic's distribution
on real negatives against generated copies.

Negatives: the candidate pairs ``find_duplicates`` verifies on real sets without copies (indexes
from benchmarks/dedup_eval.py under --work) that pass the scene test (they align and agree at
128 px: the old rule's duplicates and near misses) - minus the pairs judged "duplicate" by eye in
data/dedup_judged_pairs.csv. Copies: every (original, copy) pair of the generated set that passes
the scene test. For each copy test: the copies' 5% and 50% quantiles (or 50%/95% for an upper
bound), the negatives' share that the test alone rejects, and the negatives that pass every test
(false duplicates).
Run:  python benchmarks/dedup_margins.py [--work /tmp/vgg-retrieval-dedup-eval] [--sets paris5,...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class Recorder:
    """A Verifier that keeps every pair's evidence."""

    def __init__(self):
        from indexer.dedup.verify import Verifier

        self.inner = Verifier()
        self.unreadable = self.inner.unreadable
        self.pairs: dict = {}

    def verify(self, pairs, progress=None, mirror=None):
        out = self.inner.verify(pairs, mirror=mirror)
        self.pairs.update(zip(pairs, out))
        return out

    def compare(self, a, b, mirror=True):  # dedup's threads ask one pair at a time (batch.Settled)
        ev = self.inner.compare(a, b, mirror=mirror)
        self.pairs[(a, b)] = ev
        return ev

    def __getattr__(self, name):  # features_of... (the keeper's checks) of the inner one
        return getattr(self.inner, name)


def tests():
    """(name, bound, value of an Evidence, passes) of each copy test, from the rule's thresholds."""
    import indexer.dedup.rule as r

    return [
        (
            "residual (share of side)",
            f"<= {r.MAX_RESIDUAL} or <= {r.MAX_RESIDUAL_PX} px",
            lambda e: e.residual,
            lambda e: e.frame or e.residual <= r.MAX_RESIDUAL or e.residual_px <= r.MAX_RESIDUAL_PX,
        ),
        ("spill", f"<= {r.COPY_OUTSIDE}", lambda e: e.spill, lambda e: e.spill <= r.COPY_OUTSIDE),
        ("local", f">= {r.MIN_LOCAL}", lambda e: e.local, lambda e: e.local >= r.MIN_LOCAL),
        ("weakest", f">= {r.MIN_WEAKEST}", lambda e: e.weakest, lambda e: e.weakest >= r.MIN_WEAKEST),
        ("moved", f"<= {r.MAX_MOVED}", lambda e: e.moved, lambda e: e.moved <= r.MAX_MOVED),
        ("extra", f"<= {r.MAX_EXTRA}", lambda e: e.extra, lambda e: e.extra <= r.MAX_EXTRA),
        ("crossed", f"<= {r.MAX_CROSSED}", lambda e: e.crossed, lambda e: e.crossed <= r.MAX_CROSSED),
        ("relit", f"<= {r.MAX_RELIT}", lambda e: e.relit, lambda e: e.relit <= r.MAX_RELIT),
        # dedup measures the re-take tests only on the pairs every other copy test passes; here on all
        ("shifted", f"<= {r.MAX_SHIFTED}", lambda e: e.shifted, lambda e: e.shifted <= r.MAX_SHIFTED),
    ]


def negatives(work: Path, sets: list[str]):
    from dedup_table import judged_copies

    from indexer import Index
    from indexer.dedup import find_duplicates
    from indexer.dedup.rule import scene

    copies, out = judged_copies(), []
    for name in sets:
        rec = Recorder()
        with Index.open(work / f"idx-{name}") as ix:
            find_duplicates(ix, verifier=rec)
        out += [
            (name, a, b, e)
            for (a, b), e in rec.pairs.items()
            if scene(e) and frozenset((Path(a).name, Path(b).name)) not in copies
        ]
    return out


def positives(work: Path):
    from near_duplicates import read_truth

    from indexer.dedup.rule import scene
    from indexer.dedup.verify import Verifier

    data = work / "set"
    truth = read_truth(data / "truth.tsv")
    pairs = [(str(data / o), str(data / c)) for o, c, _, _ in truth]
    found = Verifier().verify(pairs)
    return [(k, a, b, e) for (_, _, k, _), (a, b), e in zip(truth, pairs, found) if scene(e)], len(truth)


def with_retake(verifier, a: str, b: str, e):
    """``e`` with the re-take tests measured even where another copy test failed first (dedup
    measures them only for the pairs still a copy)."""
    from dataclasses import replace

    from indexer.dedup.retake import crossed, relit, shifted

    if e.frame or len(e.transform) != 9:
        return e
    fa, fb = verifier.features_of(a), verifier.features_of(b, e.mirrored)
    if fa is None or fb is None:
        return e
    t, cv2 = np.array(e.transform, np.float64).reshape(3, 3), verifier.cv2
    return replace(
        e,
        crossed=crossed(cv2, fa, fb, t),
        relit=relit(cv2, fa, fb, t),
        shifted=shifted(cv2, fa, fb, t, verifier._read_flipped(fa, fb)),
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/vgg-retrieval-dedup-eval"))
    ap.add_argument("--sets", default="paris5,holidays150,vacation,hymenoptera,tree,opencv")
    args = ap.parse_args()
    from indexer.dedup.rule import classify
    from indexer.dedup.verify import Verifier

    neg = negatives(args.work, [s for s in args.sets.split(",") if s])
    pos, n_copies = positives(args.work)
    v = Verifier()
    neg = [(s, a, b, with_retake(v, a, b, e)) for s, a, b, e in neg]
    pos = [(k, with_retake(v, a, b, e)) for k, a, b, e in pos]
    print(
        f"{len(neg)} real pairs pass the scene test ({args.sets}); {len(pos)} of {n_copies} generated copies do"
    )
    print(
        "\n| copy test | bound | copies q05 | q50 | q95 | real pairs q05 | q50 | q95 | real pairs it rejects | "
        "copies it rejects | copies max |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def q(x) -> str:
        return " | ".join(f"{v:.4f}" for v in np.quantile(x, [0.05, 0.5, 0.95])) if len(x) else "- | - | -"

    for name, bound, value, ok in tests():
        c = np.array([value(e) for _, e in pos])
        r = np.array([value(e) for *_, e in neg])
        print(
            f"| {name} | {bound} | {q(c)} | {q(r)} | {sum(not ok(e) for *_, e in neg)} of {len(neg)} | "
            f"{sum(not ok(e) for _, e in pos)} of {len(pos)} | {c.max() if len(c) else 0:.4f} |"
        )
    print("\nthe real pairs nearest each bound on its rejecting side (value, and the other tests they fail):")
    for name, _, value, ok in tests():
        near = sorted(
            ((value(e), s, a, b, e) for s, a, b, e in neg if not ok(e)),
            key=lambda r: abs(r[0] - np.median([value(e) for _, e in pos])) if pos else 0,
        )[:3]
        print(
            f"  {name}: "
            + "; ".join(
                f"{v:.4f} ({s}: {Path(a).name} ~ {Path(b).name}; also "
                f"{', '.join(n for n, _, _, k in tests() if n != name and not k(e)) or 'nothing'})"
                for v, s, a, b, e in near
            )
        )
    print("\nthe real pairs each rejected by one test only:")
    for s, a, b, e in neg:
        failed = [name for name, _, value, ok in tests() if not ok(e)]
        if len(failed) == 1:
            (value,) = [v for name, _, v, _ in tests() if name == failed[0]]
            print(f"  {s}: {Path(a).name} ~ {Path(b).name}: {failed[0]} {value(e):.4f}")
    dup = [(s, a, b) for s, a, b, e in neg if classify(e) == "duplicate"]
    print(f"\nreal pairs passing every test (false duplicates): {len(dup)}")
    for s, a, b in dup:
        print(f"  {s}: {Path(a).name} ~ {Path(b).name}")
    kinds = {}
    for k, e in pos:
        kinds.setdefault(k, []).append(classify(e) == "duplicate")
    print(
        "copies proven per edit kind (of those passing the scene test): "
        + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in kinds.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
