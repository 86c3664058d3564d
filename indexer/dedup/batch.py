"""The grouping passes' pairs verified a few nodes ahead, so that every core stays busy.

The passes (``groups.group_pairs`` with a ``decide.PairJudge`` check) ask about one photo's free
neighbours at a time - a few pairs, too few for the verifier's threads, and each batch waits for
its slowest pair. ``Settled.check`` wraps a pass's check: it follows the pass's own state (which
photos are taken, in the pass's order), and verifies the pairs asked about together with those of
the next photos still free (at most ``AHEAD`` pairs), leaving out any photo that the current
verdicts could take. The pass then reads the evidence it asks for: the same evidence, so the same
groups; a pair verified ahead that the pass never asks about (a later group took its photo) is
the only cost (``unused``). Verifying every candidate pair up front would not do: in a
collection of copies the keeper takes its copies and most pairs among them are never asked
(benchmarks/dedup_eval.py's generated set: 935 of 3,631). The pairs run on threads of ``Settled``'s
own, one pair a task: an ask waits only for its own pairs while the threads go on with those ahead."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
        self.running: dict = {}  # key -> (Future, stamps): on the worker threads, not collected yet
        # a verifier that compares one pair at a time runs the pairs on threads of its own here, so
        # that the workers go on with the pairs ahead while the pass judges the ones it asked for
        # (a batch per ask left a core idle while each batch's slowest pair ran: 1.5 of 2 cores)
        workers = int(getattr(verifier, "workers", 0) or 0)
        self._pool = ThreadPoolExecutor(workers) if workers and hasattr(verifier, "compare") else None
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
        self._start(keys)
        self._collect(keys)
        self.asked.update(keys)
        out = []
        for k in keys:
            if k not in self.ready:  # the same pair twice in one call: verified twice, as asked
                self._start([k])
                self._collect([k])
            out.append(self.ready.pop(k))
        return out

    def _start(self, keys: list) -> None:
        """Evidence for ``keys``: taken from the cache, or verified - on the threads (collected by
        ``_collect``), or here when the verifier has no ``compare``."""
        keys = [k for k in dict.fromkeys(keys) if k not in self.ready and k not in self.running]
        if self.cache is not None:
            for k in keys:
                ev = self.cache.take(k)
                if ev is not None:
                    self.ready[k] = ev
                    self.taken.add(k)
            keys = [k for k in keys if k not in self.ready]
        if not keys:
            return
        # stamped before the files are read: a file changed meanwhile is verified again next run
        stamps = (
            [(self.cache.stamp(a), self.cache.stamp(b)) for a, b, _ in keys]
            if self.cache is not None
            else [None] * len(keys)
        )
        if self._pool is None:
            found = self.inner.verify([k[:2] for k in keys], mirror=[k[2] for k in keys])
            self._store(list(zip(keys, stamps, found)))
            return
        for k, st in zip(keys, stamps):
            self.running[k] = (self._pool.submit(self.inner.compare, k[0], k[1], mirror=k[2]), st)

    def _collect(self, keys) -> None:
        """Wait for those of ``keys`` still on the threads."""
        done = []
        for k in keys:
            if k in self.running:
                future, st = self.running.pop(k)
                done.append((k, st, future.result()))
        self._store(done)

    def _store(self, found: list) -> None:
        self.ready.update((k, ev) for k, _, ev in found)
        if self.cache is not None and found:
            self.cache.put(found)

    def close(self) -> None:
        """Stop the threads: pairs verified ahead are kept in the cache like the rest, those not
        started yet are dropped (never asked for: the passes had ended, or were stopped)."""
        if self._pool is None:
            return
        for future, _ in self.running.values():
            future.cancel()
        self._pool.shutdown(wait=True)
        done = [
            (k, st, f) for k, (f, st) in self.running.items() if not f.cancelled() and f.exception() is None
        ]
        self.running.clear()
        self._store([(k, st, f.result()) for k, st, f in done])

    @property
    def cached(self) -> int:
        """Pairs the passes asked about whose evidence came from ``cache``."""
        return len(self.taken & self.asked)

    def remembered(self, a: str, b: str, ev, compute) -> str:
        """``compute()`` (``keeper.made_from(a, b, ev)``: a fact of the two files and their
        evidence, like the evidence itself: how a is made from b, "" when it is not), kept in
        ``cache`` when there is one."""
        if self.cache is None:
            return str(compute())
        found = self.cache.fact((a, b), ev)
        if found is None:
            stamps = (self.cache.stamp(a), self.cache.stamp(b))  # before ``compute`` reads the files
            found = str(compute())
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
            self._start([k for k in keys if k not in self.asked])  # the pass waits only for its own
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
