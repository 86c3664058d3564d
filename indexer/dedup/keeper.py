"""The keeper of a duplicate group is the original or its best copy - never a copy made from
another member: an enlargement of it (more pixels, no more detail), the member with a canvas,
frame, banner or fill added around it, the member turned with its corners filled, or a crop of it
(the uncropped picture is the original).
The keeper order (``quality``) ranks files by what each says about itself; this checks the
verified pairs of a group for what one file says about another.

More: docs/design-notes.md (``indexer.dedup.keeper``)."""

from __future__ import annotations

import numpy as np

from .copytests import AROUND_MARGIN, DETAIL_SIDE, MAX_EXTRA, detail_lost
from .rule import inverse_map

SAME_COVER = 0.8  # each frame covers this share of the other (a turned copy loses its corners)
DENSER = 0.92  # the keeper has at least 1/DENSER of the member's own pixels per scene pixel
MILD = 0.8  # from this ratio up (an enlargement by 1.09-1.25x) ...
RELATIVE = 0.75  # ... the keeper also loses less than this share of what the member loses
MILD_EXTRA = 0.12  # ... and at most this much (genuine pictures: relative >= 0.79, whatever they lose)
FAR_RELATIVE = 0.5  # below MILD, a keeper losing more than MAX_EXTRA (<= MILD_EXTRA): at most this share
INSIDE = 0.97  # the member's frame lies (almost) wholly inside the keeper's
ADDED = 0.97  # ... and covers less than this share of it: the keeper adds something around it
CROPPED = 0.9  # cropped_from: the keeper covers less than this share of the member's frame
FLAT = 0.8  # canvas_around: this share of what lies beyond the member is one flat colour
FLAT_LEVELS = 6  # grey levels (0-255) from the median
TURNED = 1.0  # degrees from a right angle: turned_from
TURN_MARGIN = 0.01  # of the side, past the member's footprint (resampling at its edge)
TURN_LEAST = 0.005  # share of the frame beyond it, at least
MADE_KINDS = ("", "canvas", "turned", "cropped", "enlarged")  # made_from's answers ("": not made)
ROUNDS = 3  # a new keeper is checked again (an enlarged framed copy of an enlarged copy...)


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


def native_tile(path: str, side: int = DETAIL_SIDE) -> np.ndarray:
    """The file's grey pixels at its own resolution: the whole picture, or its central
    ``side`` x ``side`` tile when it is larger (a resolution test must see the file's own pixels,
    not a downscaled copy of them)."""
    from retrieval.preprocess import open_image

    im = open_image(path)
    w, h = im.size
    if max(w, h) > side:
        x0, y0 = max(0, (w - side) // 2), max(0, (h - side) // 2)
        im = im.crop((x0, y0, x0 + min(w, side), y0 + min(h, side)))
    return np.asarray(im.convert("L"), dtype=np.float32)


def _pair(verifier, keeper: str, member: str, ev):
    """(keeper Features, member Features, keeper -> member map) or None."""
    if ev is None or len(ev.transform) != 9 or ev.mirrored:
        return None
    k, m = verifier.features_of(keeper), verifier.features_of(member)
    if k is None or m is None or not k.native or not m.native:
        return None
    t = np.array(ev.transform, np.float64).reshape(3, 3)
    try:
        np.linalg.inv(t)
    except np.linalg.LinAlgError:
        return None
    return k, m, t


def _density(k, m, t) -> float:
    """The member's own pixels per pixel of the keeper's own (over the scene they share)."""
    scale = float(np.sqrt(abs(np.linalg.det(t[:2, :2]) / abs(t[2, 2]) ** 2)))  # m's keypoint px per k's
    return scale * _native_per_keypoint(k, m)


def _densest_axis(k, m, t) -> float:
    """``_density`` along the direction where the member has the most of its own pixels per the
    keeper's (the larger singular value of the map): 1 for a copy squashed across one axis only."""
    sv = np.linalg.svd(t[:2, :2] / abs(t[2, 2]), compute_uv=False)
    return float(sv[0]) * _native_per_keypoint(k, m)


def _native_per_keypoint(k, m) -> float:
    """The member's own pixels per keypoint-image pixel over the keeper's (the two files' scales)."""
    return (max(m.native) / max(m.size)) / (max(k.native) / max(k.size))


def enlarged_from(verifier, keeper: str, member: str, ev) -> bool:
    """Is ``keeper`` an enlargement of ``member`` (more pixels over the same picture, and its own
    pixels hold no detail the member's resolution could not)? ``ev``: the pair, ``keeper`` first."""
    found = _pair(verifier, keeper, member, ev)
    if found is None:
        return False
    k, m, t = found
    if min(_cover(t, k.size, m.size), _cover(np.linalg.inv(t), m.size, k.size)) < SAME_COVER:
        return False
    ratio = _density(k, m, t)
    if ratio >= DENSER or _densest_axis(k, m, t) >= DENSER:
        return False  # not fewer pixels every way: a copy squashed across one axis is not enlarged from
    try:
        tile = getattr(verifier, "native_tile", native_tile)  # the verifier's keeps the latest few
        lost = detail_lost(verifier.cv2, tile(keeper), ratio)
        if ratio < MILD and lost <= MAX_EXTRA:
            return True
        if lost > MILD_EXTRA:
            return False
        # a mild enlargement (1.1-1.25x): a genuine picture loses little at that ratio too, so the
        # keeper must also lose clearly less than the member itself does there; a larger one that
        # the round trip itself costs a little more than MAX_EXTRA: at most half of it
        relative = RELATIVE if ratio >= MILD else FAR_RELATIVE
        return lost <= relative * detail_lost(verifier.cv2, tile(member), ratio)
    except Exception:  # noqa: BLE001 - gone since: keep the order as it is
        return False


def canvas_around(verifier, keeper: str, member: str, ev) -> bool:
    """Is ``keeper`` the member with something added around it - a canvas, frame, border, banner or
    fill (the member's frame lies inside the keeper's, covers less of it, and what lies beyond is
    one flat colour, not more of the scene: ``flat_around``) - at no more pixels per scene pixel?"""
    found = _pair(verifier, keeper, member, ev)
    if found is None:
        return False
    k, m, t = found
    inv = np.linalg.inv(t)
    if _cover(inv, m.size, k.size) >= ADDED or _cover(t, k.size, m.size) < INSIDE:
        return False
    if _density(k, m, t) < DENSER:
        return False  # the keeper holds the member's picture at a higher resolution
    return bool(flat_around(verifier.cv2, k, m, t) >= FLAT)  # NaN (nothing beyond): no


def _mid_map(f) -> np.ndarray:
    """From a Features' keypoint image to its compare image (``mid``)."""
    h, w = f.mid.shape
    return np.diag([w / f.size[0], h / f.size[1], 1.0])


def flat_around(cv2, a, b, t: np.ndarray, margin_share: float = AROUND_MARGIN, least: float = 0.02) -> float:
    """The share of a's picture beyond b's footprint (widened by ``AROUND_MARGIN`` of the side)
    within ``FLAT_LEVELS`` grey levels of its median: a canvas, frame, border or banner is one
    colour but for its text (0.85-0.97 on the generated banners and frames); the scene around a
    crop is not (0.04-0.66, sky and blurred backgrounds included). NaN when there is (almost)
    nothing beyond (neither flat nor scene: no test passes). ``a``, ``b``: verify.Features; ``t``
    maps a's keypoint image to b's."""
    return _flat_share(a, _beyond(cv2, a, b, t, margin_share)[1], least)


def _flat_share(a, beyond: np.ndarray, least: float) -> float:
    """``flat_around`` of the part ``beyond`` of a's compare image."""
    h, w = a.mid.shape
    if beyond.sum() < least * h * w:
        return float("nan")
    values = a.mid[beyond]
    return float((np.abs(values - np.median(values)) <= FLAT_LEVELS).mean())


def continued(cv2, a, inside: np.ndarray, beyond: np.ndarray, margin_share: float) -> float:
    """The share of a's picture along the inner edge of a footprint in it (``_beyond``'s masks:
    ``inside`` it, ``beyond`` it past the margin; the band as wide as the margin twice, a margin
    in) within ``FLAT_LEVELS`` of the median of what lies beyond: a flat background cut off by a
    turn continues the picture beside it (1.0 on the generated logo), the fill a turn leaves does
    not (0.0: black beside white)."""
    margin = _margin(a, margin_share)
    band = cv2.erode(inside, np.ones((margin, margin), np.uint8)) > 0
    band &= ~(cv2.erode(inside, np.ones((3 * margin, 3 * margin), np.uint8)) > 0)
    if not beyond.any() or not band.any():
        return float("nan")
    return float((np.abs(a.mid[band] - np.median(a.mid[beyond])) <= FLAT_LEVELS).mean())


def _margin(a, margin_share: float) -> int:
    return max(3, round(margin_share * max(a.mid.shape)))


def _beyond(cv2, a, b, t: np.ndarray, margin_share: float):
    """(b's footprint in a's compare image as uint8, what lies beyond it past the margin as bool)."""
    m = _mid_map(b) @ t @ np.linalg.inv(_mid_map(a))  # a-mid -> b-mid
    h, w = a.mid.shape
    inside = cv2.warpPerspective(
        np.ones_like(b.mid), m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    inside = (inside > 0.5).astype(np.uint8)
    margin = _margin(a, margin_share)
    return inside, ~(cv2.dilate(inside, np.ones((margin, margin), np.uint8)) > 0)


def cropped_from(verifier, keeper: str, member: str, ev) -> bool:
    """Is ``keeper`` a crop of ``member`` (the keeper's frame lies inside the member's, which shows
    more of the scene around it - not a canvas: ``flat_around`` - at no fewer pixels per scene
    pixel)? The uncropped picture is the original."""
    found = _pair(verifier, keeper, member, ev)
    if found is None:
        return False
    k, m, t = found
    inv = np.linalg.inv(t)
    if _cover(t, k.size, m.size) >= CROPPED or _cover(inv, m.size, k.size) < INSIDE:
        return False
    if _density(k, m, t) < DENSER:
        return False  # the crop holds the picture at a higher resolution
    return bool(flat_around(verifier.cv2, m, k, inv) < FLAT)  # NaN (nothing beyond): no


def turned_from(verifier, keeper: str, member: str, ev) -> bool:
    """Is ``keeper`` the member turned by an angle that is not a right angle, its corners filled
    (what lies beyond the member's footprint is one flat colour, ``flat_around``: the fill a turn
    leaves) while the member shows picture beyond the keeper's (the corners the turn cut off)?"""
    found = _pair(verifier, keeper, member, ev)
    if found is None:
        return False
    k, m, t = found
    turn = float(np.degrees(np.arctan2(t[1, 0], t[0, 0]))) % 90
    if min(turn, 90 - turn) < TURNED:
        return False
    # the fill is a thin sliver at each corner (a 4 degree turn: ~5% of the frame): a narrow margin
    cv2 = verifier.cv2
    fill_at = _beyond(cv2, k, m, t, TURN_MARGIN)  # each side's masks once, for both measures
    if not _flat_share(k, fill_at[1], TURN_LEAST) >= FLAT:
        return False
    cut_at = _beyond(cv2, m, k, np.linalg.inv(t), TURN_MARGIN)
    if not _flat_share(m, cut_at[1], TURN_LEAST) >= FLAT:
        return True
    # both flat: a picture on a flat background (a logo, a scan) lost flat corners to the turn;
    # they continue the picture beside them, while the fill differs from what it borders
    return bool(
        continued(cv2, m, *cut_at, TURN_MARGIN) >= FLAT
        and continued(cv2, k, *fill_at, TURN_MARGIN) <= 1 - FLAT
    )


def made_from(verifier, keeper: str, member: str, ev) -> str:
    """How ``keeper`` is made from ``member``, or "" when it is not: "canvas" (the member with a
    canvas, frame or banner added), "turned" (turned, its corners filled), "cropped" (a crop of it)
    or "enlarged" (enlarged from it). The three that show in the frames come first: an enlargement
    alone holds nothing the member lacks, and the file facts may still say which came first
    (``rekeep``'s ``source``)."""
    for kind, test in (
        ("canvas", canvas_around),
        ("turned", turned_from),
        ("cropped", cropped_from),
        ("enlarged", enlarged_from),
    ):
        if test(verifier, keeper, member, ev):
            return kind
    return ""


def rekeep(
    judge, groups: list, vectors: np.ndarray, rank=None, pick=None, rekept: bool = False, source=None
) -> list:
    """``groups`` ((keeper, members, scores) of the duplicate pass) with each keeper made from a
    member (``made_from``) replaced by the best such member (``rank``: the keeper order, positions
    of ``judge.paths``; default: the members' order; ``pick(positions)``: the best of them, when
    given); ``vectors``: the descriptors (cosines).
    A keeper chosen here (or before, ``rekept``: a group re-kept around one of its files and then
    offered that file's own neighbours, ``groups.group_pairs``'s ``refine``) gives way to the best
    of its group (``pick``, else ``rank``) when that one is not made from it: the grouping would
    have started there.
    ``source(a, b)``: do the two files' own facts say ``a`` is ``b``'s source (``quality.is_source``)?
    Then a keeper only "enlarged" from a member stays (the pixels cannot tell a soft original from
    an enlargement of its own downscale, and keeping the larger loses nothing of the smaller).
    The group is re-verified around the new keeper (keeper-centred, never through a chain).
    Each group comes back as (keeper, members, scores, how): ``how`` "made" when a keeper was
    found made from a member on the way, "order" when only the keeper order changed it, else ""."""
    out = []
    for keep, members, scores in groups:
        made = set()  # keepers found made from a member: never chosen again (but in a circle)
        changed, stop, how = rekept, False, ""
        group = {keep, *members}  # every file of the group in any round: each new keeper is offered all
        for _ in range(ROUNDS):
            found = [m for m in members if _made(judge, keep, m, source)]
            if found and made & set(found):
                # made from a file found made from another before: the claims go round in a circle
                # (the original taken for a crop's canvas, say), so one of them is wrong, and the
                # keeper order decides among the files of the circle; no further round
                free, stop = [_best(sorted(made | {keep}), rank, pick)], True
                if free == [keep]:
                    break
            elif found:
                # the keeper is not the original: the best member it was made from is (checked
                # again in the next round: it may be a crop or an enlargement of another member)
                made.add(keep)
                free = [m for m in found if m not in made]
            elif changed and (pick is not None or rank is not None):
                free = _better(judge, keep, [m for m in members if m not in made], rank, pick, source)
            else:
                free = []
            if not free:
                break
            how = "made" if found or how == "made" else "order"
            changed = True
            new = _best(free, rank, pick)
            others = np.array(sorted(group - {new}), dtype=np.int64)
            cos = vectors[others] @ vectors[new]
            ok = np.asarray(judge.check(("duplicate",))(new, others, cos), dtype=bool)
            order = np.argsort(-cos[ok], kind="stable")
            keep, members, scores = new, others[ok][order].tolist(), cos[ok][order].tolist()
            if stop:
                break
        out.append((keep, members, scores, how))
    return out


def _best(nodes: list, rank, pick) -> int:
    """The best keeper of ``nodes``: ``pick``'s, else the first in ``rank``, else the first."""
    if pick is not None:
        return pick(nodes)
    return min(nodes, key=lambda m: rank[m]) if rank is not None else nodes[0]


def _better(judge, keep: int, members: list, rank, pick, source=None) -> list:
    """[the best of ``keep`` and ``members`` when it is a member not made from ``keep``] or []; a
    best one made from it (an enlargement of the keeper...) is passed over, ``ROUNDS`` times at most."""
    for _ in range(ROUNDS):
        best = _best([keep] + members, rank, pick)
        if best == keep:
            return []
        if not _made(judge, best, keep, source):
            return [best]
        members = [m for m in members if m != best]
    return []


def _made(judge, a: int, b: int, source=None) -> bool:
    """``made_from`` of the files at positions ``a`` (keeper) and ``b`` of the judge, unless ``b``
    is found made from ``a`` as well (the two claims contradict each other: the keeper order
    decides between the two instead), or ``a`` is only "enlarged" from ``b`` and ``source(a, b)``
    says ``a`` came first (``rekeep``)."""
    kind = _made_one(judge, a, b)
    if not kind or _made_one(judge, b, a):
        return False
    return not (kind == "enlarged" and source is not None and source(a, b))


def _made_one(judge, a: int, b: int) -> str:
    """``made_from`` of the files at positions ``a`` (keeper) and ``b`` of the judge: kept with the
    index by a verifier that keeps verified pairs (``batch.Settled.remembered``), else computed."""
    keeper, member, ev = _names(judge, a, b)
    remembered = getattr(judge.verifier, "remembered", None)
    if remembered is None:
        return made_from(judge.verifier, keeper, member, ev)
    return remembered(keeper, member, ev, lambda: made_from(judge.verifier, keeper, member, ev))


def _names(judge, a: int, b: int) -> tuple:
    """(path of a, path of b, their evidence with a first): ``made_from``'s arguments."""
    return judge.paths[a], judge.paths[b], _oriented(judge, a, b)


def _oriented(judge, a: int, b: int):
    """The pair's evidence with ``a`` as the first file (the transform inverted if needed)."""
    from dataclasses import replace

    ev = judge.evidence.get((min(a, b), max(a, b)))
    if ev is None or a < b or len(ev.transform) != 9:
        return ev
    return replace(ev, transform=inverse_map(ev.transform))
