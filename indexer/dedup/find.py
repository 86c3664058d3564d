"""find_duplicates(index): exact copies by sha256, near duplicates by descriptor similarity.

1. Rows with the same sha256 are exact copies; each set is represented by its best file (keeper
   policy), and only representatives take part in the similarity search.
2. Near-duplicate pairs among representatives: FAISS k-NN (see ``search``), cosine >= threshold;
   with keypoint verification (the default), also the neighbours with ``verify_floor`` <= cosine <
   threshold whose keypoints agree on one geometric transform (see ``verify``).
3. Keeper-centred groups (see ``groups``); exact copies follow their representative.
"""
from __future__ import annotations

import os
import time

import numpy as np

from retrieval.errors import UserError

from .groups import KEEPER_POLICIES, group_pairs, keeper_rank
from .report import EXACT_REASON, KEEPER_REASON, DedupReport, Group, Member, near_reason
from .search import DEFAULT_K, DEFAULT_NPROBE, EXACT_LIMIT, near_pairs
from .verify import MIN_KEYPOINTS

# Cosine similarity of GAP-pooled VGG16 conv5 descriptors (224 px) at or above which two images are
# called near duplicates: the lowest threshold with precision >= 0.97 in benchmarks/dedup_eval.py
# (edited copies of real photos mixed with real distractors); see docs/dedup.md. DEFAULT_THRESHOLD
# is for models with border trimming (ModelSpec.trim_borders, every new index); indexes built before
# it (no trimming: bordered copies and screenshots crowd together) keep UNTRIMMED_THRESHOLD.
# Other models (other weights, pooling, sizes) may need another value: pass --threshold.
DEFAULT_THRESHOLD = 0.81
UNTRIMMED_THRESHOLD = 0.90
# With keypoint verification (the default): pairs at or above VERIFIED_THRESHOLD need nothing more
# (precision 1.00 on the evaluation set); pairs from VERIFY_FLOOR up to it are near duplicates when
# at least MIN_KEYPOINTS keypoint matches agree on one transform. Chosen with
# benchmarks/dedup_eval.py (F1 0.97 against 0.88 for cosine alone); see docs/dedup.md.
VERIFIED_THRESHOLD = 0.90
VERIFY_FLOOR = 0.55


def default_threshold(spec, verify: bool = True) -> float:
    """The measured default for an index's model (``spec``: its ModelSpec)."""
    if verify:
        return VERIFIED_THRESHOLD
    return DEFAULT_THRESHOLD if getattr(spec, "trim_borders", False) else UNTRIMMED_THRESHOLD

def find_duplicates(index, threshold: float | None = None, keeper: str = "resolution", prefer=(),
                    k: int = DEFAULT_K, exact_limit: int = EXACT_LIMIT, nprobe: int = DEFAULT_NPROBE,
                    near: bool = True, verify: bool = True, verify_floor: float = VERIFY_FLOOR,
                    min_keypoints: int = MIN_KEYPOINTS, verifier=None, progress=None) -> DedupReport:
    """A DedupReport over every image of ``index`` (an ``indexer.Index``).

    threshold: cosine similarity at or above which two images are near duplicates (default:
    ``default_threshold(index.spec, verify)``).
    verify: also accept pairs with ``verify_floor`` <= cosine < threshold when at least
    ``min_keypoints`` keypoint matches agree (``verify.Verifier``; ``verifier``: one to use).
    keeper: keeper policy, one of ``KEEPER_POLICIES``; prefer: folders whose files are kept first.
    near: False to report exact copies only.
    progress: ``progress(stage, done, total)`` with stage "search" then "verify".
    """
    threshold = default_threshold(index.spec, verify) if threshold is None else float(threshold)
    if not -1.0 <= threshold <= 1.0:
        raise UserError(f"--threshold is a cosine similarity between -1 and 1 (got {threshold})")
    if verify and not -1.0 <= verify_floor <= 1.0:
        raise UserError(f"--verify-floor is a cosine similarity between -1 and 1 (got {verify_floor})")
    verify_floor = min(float(verify_floor), threshold)  # a threshold below the floor leaves nothing to verify
    if verify and min_keypoints < 1:
        raise UserError(f"--min-keypoints must be at least 1 (got {min_keypoints})")
    if keeper not in KEEPER_POLICIES:
        raise UserError(f"unknown keeper policy {keeper!r}; choose one of {', '.join(KEEPER_POLICIES)}")
    t0 = time.perf_counter()
    # photos only: video frames (rows with a source) are not files to keep or move
    rows = index.store.photo_facts()  # (id, path, sha256, width, height, size, mtime_ns)
    errors = [{"path": e.path, "reason": e.reason} for e in index.store.errors()]
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    prefixes = [os.path.join(os.path.realpath(p), "") for p in prefer]
    preferred = np.array([r[1].startswith(tuple(prefixes)) for r in rows], dtype=bool) if prefixes else None
    rank = keeper_rank([r[3] * r[4] for r in rows], [r[5] for r in rows], [r[6] for r in rows], ids,
                       keeper, preferred)
    # exact copies: one representative (best rank) per sha256
    rep_of = np.arange(len(rows))
    best: dict[str, int] = {}
    for n in np.argsort(rank, kind="stable").tolist():
        sha = rows[n][2]
        if sha in best:
            rep_of[n] = best[sha]
        else:
            best[sha] = n
    reps = np.nonzero(rep_of == np.arange(len(rows)))[0]
    stats = {"images": len(rows), "unique_contents": int(len(reps)), "keeper_policy": keeper,
             "prefer": list(prefer), "model_id": index.spec.model_id, "model": index.spec.describe()}
    rule = {"threshold": threshold}
    if verify and near:
        rule.update(verify_floor=float(verify_floor), min_keypoints=int(min_keypoints))
    pairs: list[tuple[int, list[int], list[float]]] = []
    matches: dict[tuple[int, int], int] = {}  # (rep, rep) -> agreeing keypoints, for verified pairs
    if near and len(reps) > 1:
        vid, xb = index.all_vectors()
        pos = {int(v): p for p, v in enumerate(vid.tolist())}
        have = np.array([int(ids[r]) in pos for r in reps], dtype=bool)
        reps_v = reps[have]
        x = xb[[pos[int(ids[r])] for r in reps_v]] if len(reps_v) else np.zeros((0, xb.shape[1]), np.float32)
        del xb
        if len(reps_v) > 1:
            i, j, sc, info = near_pairs(x, threshold, k=k, exact_limit=exact_limit, nprobe=nprobe,
                                        floor=verify_floor if verify else None,
                                        progress=(lambda d, t: progress("search", d, t)) if progress else None)
            stats.update(info)
            check = _KeypointCheck(threshold, min_keypoints, reps_v, rows, verifier) if verify else None
            for keep, members, scores in group_pairs(
                    len(reps_v), i, j, sc, rank[reps_v], check=check,
                    progress=(lambda d, t: progress("verify", d, t)) if progress and check else None):
                pairs.append((int(reps_v[keep]), [int(reps_v[m]) for m in members], scores))
            if check is not None:
                matches = check.matches
                stats.update(check.stats())
    # attach exact copies; a representative without near duplicates still forms a group with its copies
    copies: dict[int, list[int]] = {}
    for n in np.nonzero(rep_of != np.arange(len(rows)))[0].tolist():
        copies.setdefault(int(rep_of[n]), []).append(n)
    for lst in copies.values():
        lst.sort(key=lambda n: rank[n])
    groups: list[Group] = []
    grouped = set()
    for keep, members, scores in pairs:
        grouped.add(keep)
        g = Group(_member(rows[keep], 1.0, KEEPER_REASON), [])
        g.members += [_member(rows[c], 1.0, EXACT_REASON) for c in copies.get(keep, [])]
        for m, score in zip(members, scores):
            grouped.add(m)
            kp = matches.get((min(keep, m), max(keep, m)))
            g.members.append(_member(rows[m], score, near_reason(score, kp), kp))
            g.members += [_member(rows[c], score, near_reason(score, kp), kp) for c in copies.get(m, [])]
        groups.append(g)
    for rep in sorted(copies, key=lambda n: rank[n]):
        if rep not in grouped:
            groups.append(Group(_member(rows[rep], 1.0, KEEPER_REASON),
                                [_member(rows[c], 1.0, EXACT_REASON) for c in copies[rep]]))
    groups.sort(key=lambda g: (g.min_score, g.keeper.path))
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return DedupReport(threshold=threshold, created_at=time.time(), index_dir=str(os.path.abspath(index.directory)),
                       groups=groups, errors=errors, roots=list(index.store.roots()), stats=stats, rule=rule)


class _KeypointCheck:
    """group_pairs' check: pairs at or above the threshold pass; those below pass when at least
    ``min_keypoints`` keypoint matches agree (verified when the grouping asks, in batches)."""

    def __init__(self, threshold, min_keypoints, reps_v, rows, verifier=None):
        from .verify import Verifier

        self.threshold, self.min_keypoints = threshold, min_keypoints
        self.reps_v, self.rows = reps_v, rows
        self.verifier = verifier or Verifier(min_keypoints=min_keypoints)
        self.matches: dict[tuple[int, int], int] = {}  # (row, row) -> agreeing keypoints, accepted pairs
        self.asked = self.seconds = 0.0

    def __call__(self, node, nb, sc):
        ok = sc >= self.threshold
        band = np.nonzero(~ok)[0]
        if len(band):
            t0 = time.perf_counter()
            me = int(self.reps_v[node])
            others = [int(self.reps_v[x]) for x in nb[band].tolist()]
            counts = self.verifier.verify([(self.rows[me][1], self.rows[o][1]) for o in others])
            for b, o, c in zip(band.tolist(), others, counts.tolist()):
                if c >= self.min_keypoints:
                    ok[b] = True
                    self.matches[(min(me, o), max(me, o))] = int(c)
            self.asked += len(band)
            self.seconds += time.perf_counter() - t0
        return ok

    def stats(self) -> dict:
        return {"verified_pairs": int(self.asked), "verified_accepted": len(self.matches),
                "verify_unreadable": sorted(self.verifier.unreadable)[:100],
                "verify_seconds": round(self.seconds, 3)}


def _member(row, score: float, reason: str, keypoints: int | None = None) -> Member:
    return Member(int(row[0]), row[1], row[2], int(row[3]), int(row[4]), int(row[5]), int(row[6]),
                  round(float(score), 6), reason, keypoints)
