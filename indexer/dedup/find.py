"""find_duplicates(index): exact copies by sha256, near duplicates by descriptor similarity and
pixel verification, and similar shots for review.

More: docs/design-notes.md (``indexer.dedup.find``)."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np

from indexer.storage.layout import FEATURE_CACHE
from indexer.storage.offline import in_any

from . import capture as capture_evidence
from .batch import Settled
from .candidates import merge_pairs, near_pairs
from .decide import DUPLICATE, MIRROR_COSINE, SIMILAR, PairJudge
from .decisions import drop_dismissed
from .factcache import FactCache
from .groups import group_pairs, keeper_rank
from .keeper import rekeep
from .options import DedupOptions, check_options
from .paircache import PairCache, version_of
from .quality import ALIKE, FileQuality, best_of, is_source, keeper_reason, read_qualities, refine_rank
from .report import DedupReport, Group, Member
from .report_text import DUPLICATES, EXACT_REASON, KEEPER_REASON, UNPROVEN_WHY, WHY, near_reason
from .rule import (
    MAX_OUTSIDE,
    MIN_CELLS,
    MIN_COVER,
    MIN_PIXEL,
    SIMILAR_KEYPOINTS,
    copy_rule,
    describe,
)
from .verify import Verifier

# Cosine similarity of GAP-pooled VGG16 conv5 descriptors (224 px) at or above which two images are
# called near duplicates without verification (--no-verify): the lowest threshold with precision
# >= 0.97 in benchmarks/dedup_eval.py (edited copies of real photos mixed with real distractors);
# see docs/dedup.md. DEFAULT_THRESHOLD is for models with border trimming (ModelSpec.trim_borders,
# every new index); indexes built before it keep UNTRIMMED_THRESHOLD.
DEFAULT_THRESHOLD = 0.81
UNTRIMMED_THRESHOLD = 0.90
# With verification (the default): candidates from VERIFY_FLOOR up are verified; a pair whose
# keypoints cannot say anything (too few) is a duplicate only at VERIFIED_THRESHOLD or above.
# Chosen with benchmarks/dedup_eval.py on real collections and generated copies; see docs/dedup.md.
VERIFIED_THRESHOLD = 0.97


def default_threshold(spec, verify: bool = True) -> float:
    """The measured default for an index's model (``spec``: its ModelSpec)."""
    if verify:
        return VERIFIED_THRESHOLD
    return DEFAULT_THRESHOLD if getattr(spec, "trim_borders", False) else UNTRIMMED_THRESHOLD


def find_duplicates(
    index, options: DedupOptions | None = None, *, verifier=None, progress=None, **choices
) -> DedupReport:
    """A DedupReport over every image of ``index`` (an ``indexer.Index``), found as ``options`` (a
    ``DedupOptions``; or its fields as keyword ``choices``) say:

    threshold: without verification, the cosine at or above which two images are near duplicates;
    with it, the cosine at or above which a pair whose keypoints say nothing is still a duplicate
    (default: ``default_threshold(index.spec, verify)``).
    verify: verify every candidate from ``verify_floor`` up (``verify.Verifier``; ``verifier``: one
    to use); ``min_keypoints``: agreeing matches a duplicate needs before its pixels are compared.
    similar: also report similar shots (groups of kind "similar"; needs verify).
    rotations: also look for copies turned by 90/180/270 degrees (needs verify; reads each file once).
    keeper: keeper policy, one of ``KEEPER_POLICIES``; prefer: folders whose files are kept first.
    include_dismissed: also report the pairs a person kept both of in review (``decisions``); by
    default they are left out (``stats["dismissed_left_out"]`` says how many files).
    near: False to report exact copies only.
    progress: ``progress(stage, done, total)``, stages "search", "layouts" (photos read for turned
    copies), "qualities" (photos read for the keeper order; both only those not kept from a run
    before), "features" (photos), "verify" and "similar" (the photos the two grouping passes have
    visited).
    """
    o = replace(options or DedupOptions(), **choices)
    keeper, prefer, near, verify, min_keypoints = o.keeper, o.prefer, o.near, o.verify, o.min_keypoints
    threshold = default_threshold(index.spec, verify) if o.threshold is None else float(o.threshold)
    verify_floor = o.verify_floor
    check_options(threshold, verify, verify_floor, min_keypoints, keeper)
    verify_floor = min(float(verify_floor), threshold)  # a threshold below the floor leaves nothing to verify
    t0 = time.perf_counter()
    # photos only: video frames (rows with a source) are not files to keep or move
    rows = index.store.photo_facts()  # (id, path, sha256, width, height, size, mtime_ns)
    offline = list(index.store.offline_folders())
    if offline:  # never propose moving a file through a folder that cannot be reached
        rows = [r for r in rows if in_any(r[1], offline) is None]
    errors = [{"path": e.path, "reason": e.reason} for e in index.store.errors()]
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    prefixes = [os.path.join(os.path.realpath(p), "") for p in prefer]
    preferred = np.array([r[1].startswith(tuple(prefixes)) for r in rows], dtype=bool) if prefixes else None
    meta = ([r[3] * r[4] for r in rows], [r[5] for r in rows], [r[6] for r in rows], ids)
    rank = keeper_rank(*meta, keeper, preferred)
    rep_of = _exact_representatives(rows, rank)
    reps = np.nonzero(rep_of == np.arange(len(rows)))[0]
    stats = {
        "images": len(rows),
        "unique_contents": int(len(reps)),
        "keeper_policy": keeper,
        "prefer": list(prefer),
        "model_id": index.spec.model_id,
        "model": index.spec.describe(),
    }
    rule = {"threshold": threshold}
    if verify and near:
        rule.update(
            verify_floor=float(verify_floor),
            min_keypoints=int(min_keypoints),
            pixel=MIN_PIXEL,
            cells=MIN_CELLS,
            outside=MAX_OUTSIDE,
            cover=MIN_COVER,
            similar_keypoints=SIMILAR_KEYPOINTS,
            copy=copy_rule(),
        )
    search = _NearSearch(rows, reps, rank, stats, progress)
    qualities: list[FileQuality | None] = [None] * len(rows)
    found = []
    if near and len(reps) > 1:
        o = replace(o, threshold=threshold, verify_floor=verify_floor)
        found = search.run_cached(index, o, verifier, meta, preferred, qualities)
    groups = _assemble(rows, rep_of, search, found, keeper, qualities)
    if not o.include_dismissed:
        groups, stats["dismissed_left_out"] = drop_dismissed(groups, index.store.dismissed_pairs())
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return DedupReport(
        threshold=threshold,
        created_at=time.time(),
        index_dir=str(os.path.abspath(index.directory)),
        groups=groups,
        errors=errors,
        roots=list(index.store.roots()),
        stats=stats,
        rule=rule,
    )


def _exact_representatives(rows, rank) -> np.ndarray:
    """rep_of[n]: the row standing for row n's sha256 (the best ranked of its copies)."""
    rep_of = np.arange(len(rows))
    best: dict[str, int] = {}
    for n in np.argsort(rank, kind="stable").tolist():
        sha = rows[n][2]
        if sha in best:
            rep_of[n] = best[sha]
        else:
            best[sha] = n
    return rep_of


class _NearSearch:
    """Candidates, file qualities for the keeper order, and the two grouping passes."""

    def __init__(self, rows, reps, rank, stats, progress):
        self.rows, self.reps, self.rank, self.stats, self.progress = rows, reps, rank, stats, progress
        self.judge: PairJudge | None = None
        self.reps_v = reps
        self.rekept: set[int] = set()  # keepers chosen over a member made from them (keeper.rekeep)
        self.facts: FactCache | None = None  # the files' qualities and layouts kept with the index

    def _progress(self, stage):
        return (lambda d, t: self.progress(stage, d, t)) if self.progress else None

    def run_cached(self, index, *args):
        """``run`` with the files' facts (qualities, layouts) kept with the index (``factcache``);
        the facts of photos gone from the index are forgotten after."""
        keep = lambda: (r[1] for r in index.store.photo_facts())  # noqa: E731
        with FactCache(os.path.join(str(index.directory), FEATURE_CACHE), keep) as self.facts:
            return self.run(index, *args)

    def run(self, index, o: DedupOptions, verifier, meta, preferred, qualities):
        """The near groups of ``o`` (its threshold and floor resolved), candidates first."""
        threshold, verify, floor, min_keypoints = o.threshold, o.verify, o.verify_floor, o.min_keypoints
        rotations, keeper = o.rotations, o.keeper
        rows, reps, ids = self.rows, self.reps, meta[3]
        vid, xb = index.all_vectors()
        pos = {int(v): p for p, v in enumerate(vid.tolist())}
        self.reps_v = reps_v = reps[np.array([int(ids[r]) in pos for r in reps], dtype=bool)]
        x = xb[[pos[int(ids[r])] for r in reps_v]] if len(reps_v) else np.zeros((0, xb.shape[1]), np.float32)
        del xb
        if len(reps_v) < 2:
            return []
        i, j, sc, info = near_pairs(
            x,
            threshold,
            k=o.k,
            exact_limit=o.exact_limit,
            nprobe=o.nprobe,
            floor=floor if verify else None,
            progress=self._progress("search"),
        )
        self.stats.update(info)
        if verify and rotations:
            from .rotated import rotated_pairs  # lazy: keeps the command line's start light

            ri, rj, _, rinfo = rotated_pairs(
                [rows[r][1] for r in reps_v], cache=self.facts, progress=self._progress("layouts")
            )
            self.stats.update(rinfo)
            i, j, sc = merge_pairs(
                i, j, sc, ri, rj, np.einsum("nd,nd->n", x[ri], x[rj]) if len(ri) else np.zeros(0)
            )
        # the keeper order with what the files say about themselves (only files with a candidate)
        nodes = np.unique(np.concatenate([i, j])) if len(i) else np.zeros(0, np.int64)
        found_q, qstats = read_qualities(
            [rows[reps_v[n]][1] for n in nodes.tolist()],
            cache=self.facts,
            progress=self._progress("qualities"),
        )
        for n, q in zip(nodes.tolist(), found_q):
            qualities[int(reps_v[n])] = q
        self.stats.update(qstats)
        self.rank = refine_rank(self.rank, rows, qualities, keeper, preferred)
        self.keeper_order = (qualities, keeper, preferred)  # for the keeper picks of _judged
        rank_v = self.rank[reps_v]
        if not verify:
            return [(DUPLICATES, g) for g in group_pairs(len(reps_v), i, j, sc, rank_v)]
        own, cache = verifier is None, None
        if own:  # features and verified pairs kept with the index; capture evidence as it stored it
            verifier = _index_verifier(index, [rows[r] for r in reps_v[nodes]], min_keypoints)
            cache = PairCache(verifier.store.disk, version_of(verifier))
        # pairs verified a few photos ahead of the passes; those of an earlier run kept with the index
        settled = Settled(verifier, [rows[r][1] for r in reps_v], i, j, sc, cache=cache)
        try:
            return self._judged(o, verifier, settled, i, j, sc, x, rank_v)
        finally:
            settled.close()  # its threads end (after a cancel: the pairs not started are dropped)
            if own:  # the caches keep the photos the index has
                indexed = [r[1] for r in index.store.photo_facts()]
                verifier.store.disk.prune(indexed)
                cache.prune(indexed)
                verifier.close()

    def _judged(self, o, verifier, settled, i, j, sc, x, rank_v):
        """The verified passes: duplicates, then similar shots (``o.similar``) over the files left."""
        rows, reps_v, min_keypoints, threshold = self.rows, self.reps_v, o.min_keypoints, o.threshold
        if hasattr(verifier, "prefetch"):  # each photo's features once, on every worker, before the
            todo = settled.uncached  # pairs not verified before, and the mirror images they compare
            verifier.prefetch(
                [settled.paths[n] for n in np.unique(np.concatenate([i[todo], j[todo]])).tolist()],
                progress=self._progress("features"),
                mirrored={settled.paths[b] for b in j[todo & (sc >= MIRROR_COSINE)].tolist()},
            )
        self.judge = judge = PairJudge(settled.paths, threshold, settled, min_keypoints)
        check = settled.check(judge.check((DUPLICATE,)), rank_v)

        def pick(ms: list) -> int:  # the best keeper of ``ms`` (positions into reps_v)
            best = best_of([int(reps_v[m]) for m in ms], self.rank, rows, *self.keeper_order)
            return ms[[int(reps_v[m]) for m in ms].index(best)]

        def source(a: int, b: int) -> bool:  # a's file facts say it came before b (quality.is_source)
            return is_source(rows, self.keeper_order[0], int(reps_v[a]), int(reps_v[b]))

        def refine(keep, members, scores):  # never a copy kept over the member it was made from
            # and every group gives way to its best file by the keeper comparison (rekept=True): the
            # sorted order is not transitive (its tolerances) and can start a group at a copy
            kept = rekeep(judge, [(keep, members, scores)], x, rank_v, pick, True, source)[0]
            if kept[3] == "made" or (kept[0] != keep and keep in self.rekept):
                self.rekept.add(kept[0])  # its reason: made from (keeper_reason's words otherwise)
            return kept[:3]

        groups = group_pairs(
            len(reps_v), i, j, sc, rank_v, check=check, progress=self._progress("verify"), refine=refine
        )
        self.rekept &= {g[0] for g in groups}
        found = [(DUPLICATES, g) for g in groups]
        if o.similar:  # over the files left; a duplicate group's keeper stands for it and stays a keeper
            members = np.zeros(len(reps_v), dtype=bool)
            keepers = rank_v.copy()
            for _, (k, m, _) in found:
                members[m] = True
                keepers[k] -= len(rank_v) + 1
            found += [
                ("similar", g)
                for g in group_pairs(
                    len(reps_v),
                    i,
                    j,
                    sc,
                    keepers,
                    check=settled.check(judge.check((SIMILAR, DUPLICATE), members), keepers, members),
                    progress=self._progress("similar"),
                )
            ]
        self.stats.update(judge.stats())
        self.stats["verified_ahead_unused"] = len(settled.ready) + len(settled.running)  # never asked
        self.stats["pairs_cached"] = settled.cached  # evidence kept from an earlier run
        store = getattr(verifier, "store", None)
        if store is not None:  # features made this run (the others came from the index's cache)
            self.stats["features_computed"] = store.computed
        return found


def _index_verifier(index, rows, min_keypoints: int) -> Verifier:
    """A Verifier whose features are cached in the index folder (``featurecache``) and whose capture
    evidence is what the index read when it indexed ``rows`` (photos it has none for are read)."""
    known = {}
    if rows:
        stored = index.store.captures([r[0] for r in rows], by="id")
        paths = {int(r[0]): r[1] for r in rows}
        known = {paths[k]: capture_evidence.from_stored(c) for k, c in stored.items() if c.evidence}
    return Verifier(
        min_keypoints=min_keypoints,
        cache_file=os.path.join(str(index.directory), FEATURE_CACHE),
        captures=known,
        settle_early=True,
    )


def _assemble(rows, rep_of, search, found, keeper, qualities) -> list[Group]:
    """Report groups from the passes' (kind, (keeper, members, scores)); exact copies join their
    representative's duplicate group (or make one of their own)."""
    rank, judge, reps_v = search.rank, search.judge, search.reps_v
    copies: dict[int, list[int]] = {}
    for n in np.nonzero(rep_of != np.arange(len(rows)))[0].tolist():
        copies.setdefault(int(rep_of[n]), []).append(n)
    for lst in copies.values():
        lst.sort(key=lambda n: rank[n])
    groups: list[Group] = []
    in_duplicates = set()
    for kind, (keep, members, scores) in found:
        dup = kind == DUPLICATES
        kr = int(reps_v[keep])
        verified = judge is not None
        g = Group(
            _member(rows[kr], 1.0, KEEPER_REASON),
            [],
            kind,
            WHY[kind] if verified or not dup else UNPROVEN_WHY,
            proven=dup and verified,
        )
        if dup:
            in_duplicates.add(kr)
            g.members += [_member(rows[c], 1.0, EXACT_REASON) for c in copies.get(kr, [])]
        for m, score in zip(members, scores):
            ev = judge.evidence.get((min(keep, m), max(keep, m))) if judge is not None else None
            mr = int(reps_v[m])
            reason = near_reason(score, None, describe(ev) if ev is not None else None, kind)
            member = _member(rows[mr], score, reason, ev.inliers if ev is not None else None, ev)
            g.members.append(member)
            if dup:
                in_duplicates.add(mr)
                g.members += [
                    _member(rows[c], score, reason, member.keypoints, ev) for c in copies.get(mr, [])
                ]
        groups.append(g)
    for rep in sorted(copies, key=lambda n: rank[n]):
        if rep not in in_duplicates:
            groups.append(
                Group(
                    _member(rows[rep], 1.0, KEEPER_REASON),
                    [_member(rows[c], 1.0, EXACT_REASON) for c in copies[rep]],
                    DUPLICATES,
                    "byte-identical copies (same sha256); safe to quarantine",
                    proven=True,
                )
            )
    row_of = {int(r[0]): n for n, r in enumerate(rows)}
    rekept = {int(reps_v[k]) for k in search.rekept}
    for g in groups:
        q = [qualities[row_of[m.id]] or FileQuality() for m in g.files]
        g.keeper_reason = keeper_reason(g.keeper, q[0], g.members, q[1:], keeper)
        if g.is_duplicates and row_of[g.keeper.id] in rekept:
            g.keeper_reason = (  # the keeper order's words only where it agrees: not "alike" as well
                "the original: a larger member is enlarged from it, or adds only a canvas, frame or banner "
                f"around it (no detail beyond this one's){'' if g.keeper_reason == ALIKE else '; ' + g.keeper_reason}"
            )
        g.keeper.reason = f"keeper: {g.keeper_reason}"
    groups.sort(key=lambda g: (not g.is_duplicates, g.min_score, g.keeper.path))
    return groups


def _member(row, score: float, reason: str, keypoints: int | None = None, evidence=None) -> Member:
    return Member(
        int(row[0]),
        row[1],
        row[2],
        int(row[3]),
        int(row[4]),
        int(row[5]),
        int(row[6]),
        round(float(score), 6),
        reason,
        keypoints,
        evidence.as_dict() if evidence is not None else None,
    )
