"""From similar pairs to groups, and which file of a group to keep.

More: docs/design-notes.md (``indexer.dedup.groups``)."""

from __future__ import annotations

import numpy as np

from .progress import ticker

KEEPER_POLICIES = ("resolution", "size", "oldest", "newest")


def keeper_rank(pixels, size, mtime_ns, ids, policy: str = "resolution", preferred=None) -> np.ndarray:
    """rank[i] = position of file i in the keeper order (0 = the file to keep first), from what the
    index knows; ``quality.refine_rank`` then orders the files with candidates by what they say
    about themselves."""
    pixels, size, mtime_ns, ids = (np.asarray(a, dtype=np.int64) for a in (pixels, size, mtime_ns, ids))
    if policy == "resolution":  # pixels, then the older file, then the larger (quality.ORDER)
        keys = (ids, -size, mtime_ns, -pixels)
    elif policy == "size":
        keys = (ids, mtime_ns, -pixels, -size)
    elif policy == "oldest":
        keys = (ids, -size, -pixels, mtime_ns)
    elif policy == "newest":
        keys = (ids, -size, -pixels, -mtime_ns)
    else:
        raise ValueError(f"unknown keeper policy {policy!r}; choose one of {', '.join(KEEPER_POLICIES)}")
    if preferred is not None:
        keys = keys + (
            ~np.asarray(preferred, dtype=bool),
        )  # preferred (False sorts first) is the primary key
    order = np.lexsort(keys)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank


def group_pairs(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    s: np.ndarray,
    rank: np.ndarray,
    check=None,
    progress=None,
    refine=None,
):
    """Keeper-centred groups from pairs (i, j, score) over n items.

    Returns a list of (keeper, members, scores): ``members`` the item numbers, ``scores`` their
    similarity to the keeper (descending). Groups come in keeper-rank order (of the item that
    started each group).
    check: ``check(keeper, candidates, scores) -> bool mask``, asked about a would-be keeper's
    unassigned neighbours before they join (pairs that fail are dropped), so only the pairs the
    grouping consults are checked; progress: ``progress(done, total)`` over the visited items.
    refine: ``refine(keeper, members, scores) -> (keeper, members, scores)``, asked about each new
    group at once (another keeper, and the members verified against it: ``keeper.rekeep``); under
    a new keeper, the items it drops are free again and its own free neighbours are offered to it
    (``check``), as if it had started the group - so a file that fails against the first keeper
    (a copy made from the original) but passes against the original still joins it."""
    if len(i) == 0:
        return []
    a = np.concatenate([i, j]).astype(np.int64)
    b = np.concatenate([j, i]).astype(np.int64)
    w = np.concatenate([s, s]).astype(np.float32)
    order = np.argsort(a, kind="stable")
    a, b, w = a[order], b[order], w[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(indptr, a + 1, 1)
    indptr = np.cumsum(indptr)
    nodes = np.unique(a)
    nodes = nodes[np.argsort(rank[nodes], kind="stable")]
    assigned = np.zeros(n, dtype=bool)
    groups = []
    tick = ticker(progress, len(nodes), 200)
    for done, node in enumerate(nodes.tolist(), 1):
        tick(done)
        if assigned[node]:
            continue
        lo, hi = indptr[node], indptr[node + 1]
        nb, sc = b[lo:hi], w[lo:hi]
        free = ~assigned[nb]
        nb, sc = nb[free], sc[free]
        if check is not None and len(nb):
            ok = np.asarray(check(node, nb, sc), dtype=bool)
            nb, sc = nb[ok], sc[ok]
        if len(nb) == 0:
            continue
        order = np.lexsort((rank[nb], -sc))
        nb, sc = nb[order], sc[order]
        assigned[node] = True
        assigned[nb] = True
        group = (node, nb.tolist(), sc.tolist())
        if refine is not None:
            group = _refined(group, refine, check, rank, assigned, (indptr, b, w))
        groups.append(group)
    return groups


REFINE_ROUNDS = 3  # a new keeper's neighbours may hold the original of it in turn


def _refined(group, refine, check, rank, assigned, adjacency):
    """``group`` after ``refine`` (see ``group_pairs``): ``assigned`` follows its members."""
    indptr, b, w = adjacency
    for _ in range(REFINE_ROUNDS):
        before = group
        keep, members, scores = refine(*group)
        if keep == before[0]:
            return keep, members, scores
        inside = {keep, *members}
        dropped = [m for m in [before[0], *before[1]] if m not in inside]
        assigned[dropped] = False
        lo, hi = indptr[keep], indptr[keep + 1]
        nb, sc = b[lo:hi], w[lo:hi]
        fresh = ~assigned[nb]  # those dropped too: they failed against another keeper than this
        nb, sc = nb[fresh], sc[fresh]
        if check is not None and len(nb):
            ok = np.asarray(check(keep, nb, sc), dtype=bool)
            nb, sc = nb[ok], sc[ok]
        assigned[[keep, *members]] = True
        assigned[nb] = True
        if len(nb) == 0:
            return keep, members, scores
        allm = np.array(members + nb.tolist(), dtype=np.int64)
        alls = np.array(scores + sc.tolist(), dtype=np.float32)
        order = np.lexsort((rank[allm], -alls))
        group = (keep, allm[order].tolist(), alls[order].tolist())
    return group
