"""find_duplicates(index): exact copies by sha256, near duplicates by descriptor similarity.

1. Rows with the same sha256 are exact copies; each set is represented by its best file (keeper
   policy), and only representatives take part in the similarity search.
2. Near-duplicate pairs among representatives: FAISS k-NN (see ``search``), cosine >= threshold.
3. Keeper-centred groups (see ``groups``); exact copies follow their representative.
"""
from __future__ import annotations

import os
import time

import numpy as np
from sqlalchemy import select

from indexer.store import ImageRow
from retrieval.errors import UserError

from .groups import KEEPER_POLICIES, group_pairs, keeper_rank
from .report import EXACT_REASON, KEEPER_REASON, DedupReport, Group, Member, near_reason
from .search import DEFAULT_K, DEFAULT_NPROBE, EXACT_LIMIT, near_pairs

# Cosine similarity of GAP-pooled VGG16 conv5 descriptors (224 px) at or above which two images are
# called near duplicates: the lowest threshold with precision >= 0.97 in benchmarks/dedup_eval.py
# (edited copies of real photos mixed with real distractors); see docs/dedup.md. DEFAULT_THRESHOLD
# is for models with border trimming (ModelSpec.trim_borders, every new index); indexes built before
# it (no trimming: bordered copies and screenshots crowd together) keep UNTRIMMED_THRESHOLD.
# Other models (other weights, pooling, sizes) may need another value: pass --threshold.
DEFAULT_THRESHOLD = 0.81
UNTRIMMED_THRESHOLD = 0.90


def default_threshold(spec) -> float:
    """The measured default for an index's model (``spec``: its ModelSpec)."""
    return DEFAULT_THRESHOLD if getattr(spec, "trim_borders", False) else UNTRIMMED_THRESHOLD

_COLUMNS = (ImageRow.id, ImageRow.path, ImageRow.sha256, ImageRow.width, ImageRow.height, ImageRow.size,
            ImageRow.mtime_ns)


def find_duplicates(index, threshold: float | None = None, keeper: str = "resolution", prefer=(),
                    k: int = DEFAULT_K, exact_limit: int = EXACT_LIMIT, nprobe: int = DEFAULT_NPROBE,
                    near: bool = True, progress=None) -> DedupReport:
    """A DedupReport over every image of ``index`` (an ``indexer.Index``).

    threshold: cosine similarity for near duplicates (default: ``default_threshold(index.spec)``).
    keeper: keeper policy, one of ``KEEPER_POLICIES``; prefer: folders whose files are kept first.
    near: False to report exact copies only.
    """
    threshold = default_threshold(index.spec) if threshold is None else float(threshold)
    if not -1.0 <= threshold <= 1.0:
        raise UserError(f"--threshold is a cosine similarity between -1 and 1 (got {threshold})")
    if keeper not in KEEPER_POLICIES:
        raise UserError(f"unknown keeper policy {keeper!r}; choose one of {', '.join(KEEPER_POLICIES)}")
    t0 = time.perf_counter()
    with index.store.session() as s:
        # photos only: video frames (rows with a source) are not files to keep or move
        rows = s.execute(select(*_COLUMNS).where(ImageRow.source.is_(None)).order_by(ImageRow.id)).all()
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
    pairs: list[tuple[int, list[int], list[float]]] = []
    if near and len(reps) > 1:
        vid, xb = index.all_vectors()
        pos = {int(v): p for p, v in enumerate(vid.tolist())}
        have = np.array([int(ids[r]) in pos for r in reps], dtype=bool)
        reps_v = reps[have]
        x = xb[[pos[int(ids[r])] for r in reps_v]] if len(reps_v) else np.zeros((0, xb.shape[1]), np.float32)
        del xb
        if len(reps_v) > 1:
            i, j, sc, info = near_pairs(x, threshold, k=k, exact_limit=exact_limit, nprobe=nprobe,
                                        progress=progress)
            stats.update(info)
            for keep, members, scores in group_pairs(len(reps_v), i, j, sc, rank[reps_v]):
                pairs.append((int(reps_v[keep]), [int(reps_v[m]) for m in members], scores))
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
            g.members.append(_member(rows[m], score, near_reason(score)))
            g.members += [_member(rows[c], score, near_reason(score)) for c in copies.get(m, [])]
        groups.append(g)
    for rep in sorted(copies, key=lambda n: rank[n]):
        if rep not in grouped:
            groups.append(Group(_member(rows[rep], 1.0, KEEPER_REASON),
                                [_member(rows[c], 1.0, EXACT_REASON) for c in copies[rep]]))
    groups.sort(key=lambda g: (g.min_score, g.keeper.path))
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return DedupReport(threshold=threshold, created_at=time.time(), index_dir=str(os.path.abspath(index.directory)),
                       groups=groups, errors=errors, roots=list(index.store.roots()), stats=stats)


def _member(row, score: float, reason: str) -> Member:
    return Member(int(row[0]), row[1], row[2], int(row[3]), int(row[4]), int(row[5]), int(row[6]),
                  round(float(score), 6), reason)
