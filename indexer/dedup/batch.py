"""The grouping passes' pairs verified a few nodes ahead, in batches that keep every core busy.

The passes (``groups.group_pairs`` with a ``decide.PairJudge`` check) ask about one photo's free
neighbours at a time - a few pairs, too few for the verifier's threads, and each batch waits for
its slowest pair. ``Settled.check`` wraps a pass's check: it follows the pass's own state (which
photos are taken, in the pass's order), and verifies the pairs asked about together with those of
the next photos still free (at most ``AHEAD`` pairs), leaving out any photo that the current
verdicts could take. The pass then reads the evidence it asks for: the same evidence, so the same
groups; a pair verified ahead that the pass never asks about (a later group took its photo) is
the only cost (``unused``). Verifying every candidate pair up front would not do: in a
collection of copies the keeper takes its copies and most pairs among them are never asked
(benchmarks/dedup_eval.py's generated set: 935 of 3,631)."""

from __future__ import annotations

import numpy as np

from .decide import MIRROR_COSINE

AHEAD = 16  # pairs verified ahead of the pass, at most, with each batch it asks for


class Settled:
    """The verifier, with pairs verified ahead of the grouping passes (see the module doc)."""

    def __init__(self, verifier, paths: list[str], i, j, sc, ahead: int = AHEAD, cache=None):
        """``cache``: a ``paircache.PairCache`` (pairs verified by an earlier run are taken from it,
        the others stored in it)."""
        self.inner, self.paths, self.ahead, self.cache = verifier, paths, ahead, cache
        self.ready: dict = {}  # evidence verified ahead, not asked for yet
        self.asked: set = set()  # pairs the passes have had
        self.taken: set = set()  # pairs taken from ``cache`` (asked for, or verified ahead)
        keys = [self.key(u, v, s) for u, v, s in zip(i.tolist(), j.tolist(), sc.tolist())]
        # the candidate pairs an earlier run verified (their files' features need not be read); every
        # file stamped now, before this run reads it
        if cache is not None:
            for a, b, _ in keys:
                cache.stamp(a), cache.stamp(b)
        self.stored = cache.load(keys) if cache is not None else set()
        self.uncached = np.array([k not in self.stored for k in keys], dtype=bool)
        self.open = np.zeros(len(paths), dtype=bool)  # photos with a pair still to verify
        self.open[i[self.uncached]] = self.open[j[self.uncached]] = True
        a = np.concatenate([i, j]).astype(np.int64)  # the adjacency as group_pairs builds it
        b = np.concatenate([j, i]).astype(np.int64)
        w = np.concatenate([sc, sc]).astype(np.float32)
        order = np.argsort(a, kind="stable")
        self.nb, self.w = b[order], w[order]
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(a, minlength=len(paths)))])

    def __getattr__(self, name):  # features_of, cv2, unreadable...: the verifier's own
        return getattr(self.inner, name)

    def key(self, u: int, v: int, score: float) -> tuple:
        """The verify call's key of pair (u, v) as ``PairJudge`` asks for it."""
        return self.paths[min(u, v)], self.paths[max(u, v)], float(score) >= MIRROR_COSINE

    def verify(self, pairs, progress=None, mirror=None):
        mirror = [True] * len(pairs) if mirror is None else mirror
        keys = [(a, b, bool(m)) for (a, b), m in zip(pairs, mirror)]
        self._run([k for k in keys if k not in self.ready])
        self.asked.update(keys)
        return [self.ready.pop(k) if k in self.ready else self._run([k])[k] for k in keys]

    def _run(self, keys: list) -> dict:
        keys = list(dict.fromkeys(keys))
        if self.cache is not None:
            for k in keys:
                ev = self.cache.take(k)
                if ev is not None:
                    self.ready[k] = ev
                    self.taken.add(k)
            keys = [k for k in keys if k not in self.ready]
        if keys:
            # stamped before the files are read: a file changed meanwhile is verified again next run
            stamps = (
                [(self.cache.stamp(a), self.cache.stamp(b)) for a, b, _ in keys]
                if self.cache is not None
                else []
            )
            found = self.inner.verify([k[:2] for k in keys], mirror=[k[2] for k in keys])
            self.ready.update(zip(keys, found))
            if self.cache is not None:
                self.cache.put(zip(keys, stamps, found))
        return self.ready

    @property
    def cached(self) -> int:
        """Pairs the passes asked about whose evidence came from ``cache``."""
        return len(self.taken & self.asked)

    def remembered(self, a: str, b: str, ev, compute) -> bool:
        """``compute()`` (``keeper.made_from(a, b, ev)``: a fact of the two files and their
        evidence, like the evidence itself), kept in ``cache`` when there is one."""
        if self.cache is None:
            return bool(compute())
        found = self.cache.fact((a, b), ev)
        if found is None:
            stamps = (self.cache.stamp(a), self.cache.stamp(b))  # before ``compute`` reads the files
            found = bool(compute())
            self.cache.put_fact((a, b), stamps, ev, found)
        return found

    def check(self, check, rank: np.ndarray, excluded=None):
        """``check`` (a ``PairJudge.check`` for ``group_pairs`` with ``rank``; ``excluded``: the
        same as the judge's) with the next free photos' pairs verified in the same batch."""
        n = len(self.paths)
        nodes = np.nonzero(np.diff(self.indptr))[0]
        nodes = nodes[np.argsort(rank[nodes], kind="stable")].tolist()
        where = {node: k for k, node in enumerate(nodes)}
        assigned = np.zeros(n, dtype=bool) if excluded is None else np.asarray(excluded, dtype=bool).copy()

        def ask(node, nb, sc):
            nb, sc = np.asarray(nb), np.asarray(sc)
            keys = []
            if not assigned[node]:
                keys = [self.key(node, o, s) for o, s in zip(nb.tolist(), sc.tolist()) if not assigned[o]]
            keys += self._next(nodes, where[node] + 1, assigned, nb, node)
            self._run([k for k in keys if k not in self.ready and k not in self.asked])
            ok = np.asarray(check(node, nb, sc), dtype=bool)
            if ok.any():  # as group_pairs: the node and its accepted neighbours are taken
                assigned[node] = True
                assigned[nb[ok]] = True
            return ok

        return ask

    def _next(self, nodes: list, start: int, assigned: np.ndarray, nb, node) -> list:
        """Keys of the free pairs of the photos after ``start`` in the pass's order (``AHEAD`` at
        most), leaving out ``node`` and ``nb``, which the current verdicts may take."""
        busy = set(nb.tolist()) | {node}
        out: list = []
        for u in nodes[start : start + 4 * self.ahead]:
            if len(out) >= self.ahead:
                break
            if assigned[u] or u in busy or not self.open[u]:  # (all its pairs stored: nothing to batch)
                continue
            lo, hi = self.indptr[u], self.indptr[u + 1]
            for v, s in zip(self.nb[lo:hi].tolist(), self.w[lo:hi].tolist()):
                k = self.key(u, v, s)
                if not assigned[v] and v not in busy and k not in self.asked:
                    out.append(k)
        return out
