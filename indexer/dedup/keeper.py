"""The keeper of a duplicate group is the original or its best copy - never a copy enlarged from
another member.

More: docs/design-notes.md (``indexer.dedup.keeper``)."""

from __future__ import annotations

import numpy as np

from .copytests import DETAIL_SIDE, MAX_EXTRA, detail_lost
from .verify import read_grey

SAME_COVER = 0.9
DENSER = 0.8


def _cover(t: np.ndarray, size_a, size_b) -> float:
    """Share of b's frame covered by a's frame mapped through ``t`` (a -> b)."""
    import cv2

    (wa, ha), (wb, hb) = size_a, size_b
    corners = np.float32([[0, 0], [wa, 0], [wa, ha], [0, ha]]).reshape(-1, 1, 2)
    poly = cv2.perspectiveTransform(corners, t).reshape(-1, 2).astype(np.float32)
    rect = np.float32([[0, 0], [wb, 0], [wb, hb], [0, hb]])
    if cv2.contourArea(poly, oriented=True) < 0:
        poly = poly[::-1].copy()
    area, _ = cv2.intersectConvexConvex(poly, rect)
    return float(area) / float(wb * hb)


def enlarged_from(verifier, keeper: str, member: str, ev) -> bool:
    """Is ``keeper`` an enlargement of ``member`` (see the module doc)? ``ev``: the verified pair,
    ``keeper`` first."""

    if len(ev.transform) != 9 or ev.mirrored:
        return False
    k, m = verifier.features_of(keeper), verifier.features_of(member)
    if k is None or m is None or not k.native or not m.native:
        return False
    t = np.array(ev.transform, np.float64).reshape(3, 3)
    try:
        inv = np.linalg.inv(t)
    except np.linalg.LinAlgError:
        return False
    if min(_cover(t, k.size, m.size), _cover(inv, m.size, k.size)) < SAME_COVER:
        return False
    scale = float(np.sqrt(abs(np.linalg.det(t[:2, :2]))))  # m's keypoint px per k's
    ratio = scale * (max(m.native) / max(m.size)) / (max(k.native) / max(k.size))  # m's own px per k's
    if ratio >= DENSER:
        return False
    try:
        grey, native = read_grey(keeper, min(max(k.native), DETAIL_SIDE))
    except Exception:  # noqa: BLE001 - gone since: keep the order as it is
        return False
    ratio *= max(grey.shape) / max(native)
    return ratio < DENSER and detail_lost(verifier.cv2, grey.astype(np.float32), ratio) <= MAX_EXTRA


def rekeep(judge, groups: list, vectors: np.ndarray) -> list:
    """``groups`` ((keeper, members, scores) of the duplicate pass) with each enlarged keeper
    replaced by the member it was enlarged from; ``vectors``: the descriptors (cosines)."""
    out = []
    for keep, members, scores in groups:
        new = next(
            (
                m
                for m in members
                if enlarged_from(judge.verifier, judge.paths[keep], judge.paths[m], _oriented(judge, keep, m))
            ),
            None,
        )
        if new is None:
            out.append((keep, members, scores))
            continue
        others = np.array([keep] + [m for m in members if m != new], dtype=np.int64)
        cos = vectors[others] @ vectors[new]
        ok = np.asarray(judge.check(("duplicate",))(new, others, cos), dtype=bool)
        order = np.argsort(-cos[ok], kind="stable")
        out.append((new, others[ok][order].tolist(), cos[ok][order].tolist()))
    return out


def _oriented(judge, a: int, b: int):
    """The pair's evidence with ``a`` as the first file (the transform inverted if needed)."""
    from dataclasses import replace

    ev = judge.evidence.get((min(a, b), max(a, b)))
    if ev is None or a < b or len(ev.transform) != 9:
        return ev
    t = np.array(ev.transform, np.float64).reshape(3, 3)
    try:
        inv = np.linalg.inv(t)
    except np.linalg.LinAlgError:
        return replace(ev, transform=())
    return replace(ev, transform=tuple((inv / inv[2, 2]).ravel()))
