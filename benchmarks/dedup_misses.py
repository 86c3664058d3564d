"""Why a generated copy is missed: per edit kind, each copy that ``dedup`` does not put in its
original's duplicate group, classified as

* ``not candidate``: the candidate search (``candidates.near_pairs`` + ``rotated.rotated_pairs``)
  never proposed the (original, copy) pair - with its cosine and the original's rank among the
  copy's neighbours;
* ``rejected: <test>``: proposed, verified (during the run, or here when the grouping never asked)
  and not a duplicate - the first failing test (the scene test's parts, then the copy tests in
  ``rule.copy_proven``'s order) with its value;
* ``grouped elsewhere``: the pair itself is a duplicate, but the keeper-centred grouping put the
  copy or the original with another keeper (where each went is printed).

The generated set and its two family indexes are dedup_eval.py's (same --work, --originals...).
Run:  python benchmarks/dedup_misses.py --work DIR [--list]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def failing(ev, min_keypoints: int) -> list[str]:
    """The tests ``ev`` fails, in the rule's order, each with its value."""
    from indexer.dedup import rule as r

    out = []
    if ev.frame:
        if ev.pixel < r.FRAME_PIXEL:
            out.append(f"frame pixel {ev.pixel:.2f}")
        if ev.cells < r.FRAME_CELLS:
            out.append(f"frame cells {ev.cells:.2f}")
    else:
        if ev.inliers < min_keypoints:
            out.append(f"inliers {ev.inliers}")
        else:
            for name, v, bad in (
                ("pixel", ev.pixel, ev.pixel < r.MIN_PIXEL),
                ("cells", ev.cells, ev.cells < r.MIN_CELLS),
                ("outside", ev.outside, ev.outside > r.MAX_OUTSIDE),
            ):
                if bad:
                    out.append(f"{name} {v:.3f}")
    if out:
        return ["scene: " + s for s in out]
    return [f"{n} {getattr(ev, n):.4g}" for n in r.copy_failures(ev)]


class Recorder:
    """Settled's stand-in that records the candidate pairs and every pair's evidence."""

    last = None

    def __init__(self, verifier, paths, i, j, sc, **kw):
        from indexer.dedup.batch import Settled

        self.inner = Settled(verifier, paths, i, j, sc, **kw)
        self.paths, self.i, self.j, self.sc = paths, i, j, sc
        self.evidence: dict = {}
        self.verifier = verifier
        Recorder.last = self

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def verify(self, pairs, progress=None, mirror=None):
        found = self.inner.verify(pairs, progress=progress, mirror=mirror)
        self.evidence.update(zip(pairs, found))
        return found

    def check(self, check, rank, excluded=None):
        return self.inner.check(check, rank, excluded)


def diagnose(ix, fam: dict, edit: dict, half: set) -> list[dict]:
    """One row per missed copy of the pass ``ix`` (the edit kinds ``half``)."""
    import indexer.dedup.find as find
    from indexer.dedup.decide import MIRROR_COSINE
    from indexer.dedup.rule import MIN_KEYPOINTS, classify

    real_settled = find.Settled
    find.Settled = Recorder
    try:
        rep = find.find_duplicates(ix)
    finally:
        find.Settled = real_settled
    rec = Recorder.last
    e = {c: k for c, k in edit.items() if k in half}
    f = {p: o for p, o in fam.items() if p not in edit or p in e}
    dup_of = {m.path: g for g in rep.duplicate_groups for m in g.files}
    sim_of = {m.path: g for g in rep.similar_groups for m in g.files}
    pos = {p: n for n, p in enumerate(rec.paths)}
    cand = {(int(a), int(b)): float(s) for a, b, s in zip(rec.i.tolist(), rec.j.tolist(), rec.sc.tolist())}
    vid, xb = ix.all_vectors()
    vec = _vectors_by_path(ix, vid, xb)
    verifier = rec.verifier
    rows = []
    for g in rep.duplicate_groups:  # keeper wrong: a group holding an original kept by another file
        origs = [m.path for m in g.files if m.path in f and m.path not in e and "/originals/" in m.path]
        if origs and g.keeper.path not in origs:
            print(
                f"keeper wrong: {Path(g.keeper.path).name} kept over {', '.join(Path(o).name for o in origs)} "
                f"({g.keeper_reason})"
            )
    for c, kind in sorted(e.items()):
        o = str(Path(c).parents[1] / f[c])
        if c in dup_of and dup_of[c] is dup_of.get(o):
            continue
        a, b = pos.get(o), pos.get(c)
        row = {"copy": c, "kind": kind, "original": o}
        cos = float(vec[o] @ vec[c]) if o in vec and c in vec else float("nan")
        row["cosine"] = cos
        key = (min(a, b), max(a, b)) if a is not None and b is not None else None
        if key is None or key not in cand:
            sims = np.array([vec[c] @ v for p, v in vec.items() if p != c])
            row["why"] = "not candidate"
            row["detail"] = (
                f"cos {cos:.3f}, original's rank among the copy's neighbours {int((sims > cos).sum()) + 1}"
            )
        else:
            pa, pb = rec.paths[key[0]], rec.paths[key[1]]
            ev = rec.evidence.get((pa, pb))
            asked = ev is not None
            if ev is None:
                ev = verifier.compare(pa, pb, mirror=cand[key] >= MIRROR_COSINE)
            v = classify(ev, MIN_KEYPOINTS)
            if v == "duplicate":
                row["why"] = "grouped elsewhere"
                gc, go = dup_of.get(c), dup_of.get(o)
                row["detail"] = (
                    f"copy in {'dup group of ' + Path(gc.keeper.path).name if gc else 'no dup group'}; "
                    f"original in {'dup group of ' + Path(go.keeper.path).name if go else 'no dup group'}"
                    f"{'' if asked else ' (pair never asked)'}"
                )
            else:
                fails = failing(ev, MIN_KEYPOINTS)
                row["why"] = "rejected: " + (fails[0].split(" ")[0] if fails else "?")
                if fails and fails[0].startswith("scene"):
                    row["why"] = "rejected: " + " ".join(fails[0].split(" ")[:2])
                row["detail"] = (
                    f"cos {cand[key]:.3f}; {', '.join(fails)}; inliers {ev.inliers}, pixel {ev.pixel:.2f}, "
                    f"mirrored {ev.mirrored}, frame {ev.frame}, verdict {v}"
                    f"{'' if asked else ' (verified here: the grouping never asked)'}"
                    f"; copy {'in similar group' if c in sim_of else 'alone'}"
                )
        rows.append(row)
    return rows


def _vectors_by_path(ix, vid, xb) -> dict:
    from sqlalchemy import select

    from indexer.storage.tables import ImageRow

    with ix.store.session() as s:
        id_path = dict(s.execute(select(ImageRow.id, ImageRow.path)).all())
    return {id_path[int(v)]: xb[n] for n, v in enumerate(vid.tolist()) if int(v) in id_path}


def main() -> int:
    from dedup_eval import generated_set

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/vgg-retrieval-dedup-eval"))
    ap.add_argument("--originals", type=int, default=50)
    ap.add_argument("--distractors", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list", action="store_true", help="one line per missed copy")
    args = ap.parse_args()
    args.quick, args.pooling = False, None
    passes, fam, edit, kinds = generated_set(args)
    rows = []
    for ix, half in passes:
        rows += diagnose(ix, fam, edit, half)
    total = Counter(edit.values())
    by_kind: dict = defaultdict(Counter)
    for r in rows:
        by_kind[r["kind"]][r["why"]] += 1
    whys = sorted({r["why"] for r in rows}, key=lambda w: -sum(1 for r in rows if r["why"] == w))
    print(f"\n{len(rows)} of {sum(total.values())} copies missed\n")
    print("| edit | copies | missed | " + " | ".join(whys) + " |")
    print("|---|---|---|" + "---|" * len(whys))
    for k in kinds:
        print(
            f"| {k} | {total[k]} | {sum(by_kind[k].values())} | "
            + " | ".join(str(by_kind[k][w] or "") for w in whys)
            + " |"
        )
    print(
        "| all | "
        + f"{sum(total.values())} | {len(rows)} | "
        + " | ".join(str(sum(by_kind[k][w] for k in kinds)) for w in whys)
        + " |"
    )
    if args.list:
        print()
        for r in sorted(rows, key=lambda r: (r["kind"], r["why"])):
            print(f"{r['kind']:>28} {Path(r['copy']).name:>50}: {r['why']}: {r['detail']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
