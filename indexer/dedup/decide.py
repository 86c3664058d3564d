"""Deciding candidate pairs: duplicate (a copy of one picture), similar shot, or neither.

``PairJudge`` is the grouping's check (``groups.group_pairs``): it verifies the pairs the grouping
consults (``verify.Verifier``, in batches, each pair once) and remembers the evidence, so the
duplicate pass and the similar-shot pass share the work. A pair is a duplicate only when it is
proven one capture (``verify.classify``: the scene test, then EXIF or the copy tests); it is a
similar shot when it shows one scene but is not proven a copy - and, with no geometric evidence
either way, when its cosine is at least ``trust`` (descriptors that close may be a copy whose
keypoints did not survive, or a burst frame: the pixels cannot tell, so review only).
"""

from __future__ import annotations

import time

import numpy as np

from .rule import MIN_KEYPOINTS, Evidence, classify
from .verify import Verifier

DUPLICATE, SIMILAR = "duplicate", "similar"
# a mirrored copy keeps its descriptor (GAP-pooled conv features barely change under a mirror:
# cosine 0.94-0.99 measured for mirrored and mirrored + cropped copies); below this, the
# mirrored comparison - half the cost of verifying a pair - is not tried
MIRROR_COSINE = 0.80


class PairJudge:
    """Verdicts for pairs of representatives (positions into ``paths``), verified when first asked."""

    def __init__(
        self,
        paths: list[str],
        trust: float,
        verifier: Verifier | None = None,
        min_keypoints: int | None = None,
    ):
        self.paths, self.trust = paths, trust
        self.min_keypoints = MIN_KEYPOINTS if min_keypoints is None else int(min_keypoints)
        self.verifier = verifier or Verifier(min_keypoints=self.min_keypoints)
        self.evidence: dict[tuple[int, int], Evidence] = {}
        self.cosine: dict[tuple[int, int], float] = {}
        self.seconds = 0.0

    def verdict(self, a: int, b: int) -> str | None:
        key = (min(a, b), max(a, b))
        ev = self.evidence.get(key)
        v = classify(ev, self.min_keypoints)
        if (
            v is None
            and self.cosine.get(key, -1.0) >= self.trust
            and (ev is None or (ev.inliers < self.min_keypoints and not ev.frame))
        ):
            return SIMILAR  # no keypoints to judge by, and a descriptor this close: not proven either way
        return v

    def _ensure(self, node: int, others: list[int], scores) -> None:
        todo = []
        for o, s in zip(others, scores):
            key = (min(node, o), max(node, o))
            self.cosine[key] = float(s)
            if key not in self.evidence:
                todo.append(key)
        if todo:
            t0 = time.perf_counter()
            found = self.verifier.verify(
                [(self.paths[a], self.paths[b]) for a, b in todo],
                mirror=[self.cosine[k] >= MIRROR_COSINE for k in todo],
            )
            self.evidence.update(zip(todo, found))
            self.seconds += time.perf_counter() - t0

    def check(self, wanted: tuple[str, ...], excluded=None):
        """A ``group_pairs`` check accepting pairs whose verdict is in ``wanted`` (and no file of
        ``excluded``, a bool array, among the candidates)."""

        def ask(node, nb, sc):
            nb = np.asarray(nb)
            ok = np.ones(len(nb), dtype=bool) if excluded is None else ~excluded[nb]
            if excluded is not None and excluded[node]:
                ok[:] = False
            self._ensure(int(node), [int(x) for x in nb[ok]], np.asarray(sc)[ok])
            for n, o in enumerate(nb.tolist()):
                ok[n] = ok[n] and self.verdict(int(node), o) in wanted
            return ok

        return ask

    def stats(self) -> dict:
        verdicts = [self.verdict(a, b) for a, b in self.evidence]
        return {
            "verified_pairs": len(self.evidence),
            "verified_duplicates": verdicts.count(DUPLICATE),
            "verified_similar": verdicts.count(SIMILAR),
            "verify_unreadable": sorted(self.verifier.unreadable)[:100],
            "verify_seconds": round(self.seconds, 3),
        }
