"""The duplicate rule: a pair's Evidence (``verify``) -> "duplicate", "similar" or None.

More: docs/design-notes.md (``indexer.dedup.rule``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from . import capture as capture_evidence
from .copytests import COMPARE_SIDE, MAX_EXTRA

# the rule (chosen in benchmarks/dedup_eval.py; docs/dedup.md)
MIN_KEYPOINTS = 12  # agreeing matches needed before the pixels are compared at all
MIN_PIXEL = 0.50  # band-pass correlation of the aligned images: the same scene
MIN_CELLS = 0.50  # ... and this share of textured cells agreeing on their own
MIN_COVER = 0.10  # a similar shot's agreeing keypoints span at least this share of each image
MAX_OUTSIDE = 0.10  # one of the two shows (almost) nothing the other lacks: a copy is a part
# of its original or contains it; two shots of a scene each show more
SIMILAR_KEYPOINTS = 20  # a pair that fails the pixel test but has this many agreeing matches: same scene
# pictures with too little texture for keypoints (foliage, sand, sky, a sunset): compared frame to
# frame (same aspect, or turned by 90/180/270) when the keypoints cannot align them; a higher bar
FRAME_PIXEL = 0.80
FRAME_CELLS = 0.60
FRAME_ASPECT = 0.03  # aspect ratios (after the turn) equal within this share
# the copy tests (copytests; measured with benchmarks/dedup_margins.py, margins in docs/dedup.md): a
# pair that passes the scene test above is a copy only when it passes all of them (and MAX_EXTRA)
MAX_RESIDUAL = 0.004  # median keypoint error under one homography, share of the long side,
MAX_RESIDUAL_PX = 0.6  # or in pixels of the smaller file
MIN_LOCAL = 0.80  # share of textured cells agreeing at the compare resolution (0.85 before the re-take
# tests: +10 of 720 generated copies proven, no real pair newly relying on one test but 128600/128601, moved 2x its bound)
MIN_WEAKEST = 0.5  # the 20% quantile of the cells' correlations
MAX_MOVED = 0.05  # share of cells that disagree with as much detail on both sides (motion, parallax)
COPY_OUTSIDE = 0.009  # copytests.spill: one picture shows nothing the other lacks (a re-take framed a
# little differently shows a strip on both sides). 0.015 before its margin became a radius (a turned
# copy's filled corners leaked past a half-width margin: up to 0.021); copies now <= 0.0049, the
# nearest real pair 0.0092 (paris5; it fails 6 other tests), 97 of 263 real pairs rejected (95 before)
# the re-take tests (retake.py; benchmarks/dedup_margins.py, margins in docs/dedup.md)
# (benchmarks/dedup_margins.py: the largest value on 704 generated copies, and the re-take it catches)
MAX_CROSSED = (
    0.014  # picture each side shows beyond the other, share of the frame (copies <= 0.0102; lava 0.022)
)
MAX_RELIT = (
    0.22  # light changed in places after one tone curve and a radial gain (copies <= 0.173; poster 0.346)
)
# a re-save (resave.py): one file a JPEG at least resave.GAP quality levels below the other
LOW_QUALITY = 50  # at or below it the copy tests are no proof: real re-takes with one side re-saved
# at 5-50 passed them (12 of 1,544 re-saved pairs of paris5, holidays150, tree.avi; docs/dedup.md)
MAX_RESAVE_CHANGED = 0.05  # resave.changed: no more of the picture may differ than MAX_MOVED lets move
# (re-saved copies 0.000-0.032 but one at 0.069; re-takes re-saved >= 0.205; docs/dedup.md "Re-saves")
MAX_SHIFTED = 0.3  # share of cells moved together by > 0.5 px (copies <= 0.56 under heavy noise or JPEG,
# every other kind <= 0.06; optical-flow frames 0.62)


@dataclass(frozen=True)
class Evidence:
    """What the verification of one pair found (all zero when a file was unreadable)."""

    inliers: int = 0  # keypoint matches one similarity transform explains
    matches: int = 0  # matches passing the ratio test
    cover: float = 0.0  # the smaller of the two images' shares spanned by the inliers
    pixel: float = 0.0  # band-pass normalised correlation of the aligned images (-1..1)
    cells: float = 0.0  # share of textured overlap cells that agree on their own
    overlap: float = 0.0  # share of the first image the aligned second one covers
    rotation: float = 0.0  # degrees, of the transform found (similarity, or affine for a squashed copy)
    scale: float = 1.0  # its area scale (square root of the determinant)
    mirrored: bool = False
    frame: bool = False  # aligned frame to frame (too few keypoints), not by keypoints
    outside: float = 1.0  # the smaller of the two images' shares of detail lying outside the other
    residual: float = 1.0  # copytests.residual: median keypoint error of one homography, share of the side
    residual_px: float = (
        9.0  # the same in pixels of the smaller file (a thumbnail's keypoints sit less exactly)
    )
    local: float = 0.0  # copytests: share of textured cells agreeing at the compare resolution
    weakest: float = 0.0  # copytests: the low quantile of those cells' correlations
    moved: float = 1.0  # copytests: share of cells that disagree though both hold as much detail (motion)
    capture: str | None = None  # capture.compare of the two files' EXIF: "same", "differs" or None
    spill: float = 1.0  # copytests.spill: outside at the compare resolution, narrow margin
    transform: tuple = ()  # the 3x3 map (row-major) from the first file's keypoint image to the second's
    extra: float = 0.0  # copytests.extra_detail: share of the narrower picture's detail the wider cannot hold
    crossed: float = 0.0  # retake.crossed: share of picture each shows beyond the other (the smaller)
    relit: float = 0.0  # retake.relit: the light changed in places, after one global tone curve
    shifted: float = 0.0  # retake.shifted: share of cells moved together after one homography
    resaved: int = 0  # resave: the JPEG quality of a file >= resave.GAP below the other (0: none is)
    resave_changed: float = 1.0  # resave.changed against the other re-saved alike (1.0: not measured)
    backwards: bool = False  # measured from the second file to the first (turned_round: see there)

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in (
            "cover",
            "pixel",
            "cells",
            "overlap",
            "rotation",
            "scale",
            "outside",
            "local",
            "weakest",
            "extra",
            "spill",
            "moved",
            "crossed",
            "relit",
            "shifted",
        ):
            d[k] = round(float(d[k]), 3)
        d["residual"] = round(float(d["residual"]), 5)
        d["residual_px"] = round(float(d["residual_px"]), 3)
        d["transform"] = [round(float(v), 6) for v in d["transform"]]
        return d


def turned_round(ev: Evidence) -> Evidence:
    """Evidence measured from the second file to the first, told from the first to the second: its
    transform inverted (none when mirrored: that maps onto the first file's mirror image), its
    scale turned round, and its rotation (a mirrored pair's stays: mirroring both sides of a turn
    by t gives a turn by -t, so b -> mirror(a) turns as a -> mirror(b)); ``overlap`` stays the
    second file's share."""
    return replace(
        ev,
        transform=() if ev.mirrored else inverse_map(ev.transform),
        scale=1.0 / ev.scale if ev.scale else ev.scale,
        rotation=ev.rotation if ev.mirrored else (-ev.rotation) % 360,
        backwards=True,
    )


def inverse_map(transform: tuple) -> tuple:
    """A pair's ``Evidence.transform`` (3x3, row-major) from the second file to the first,
    normalised; () when there is none or it cannot be inverted."""
    if len(transform) != 9:
        return ()
    t = np.array(transform, np.float64).reshape(3, 3)
    if abs(np.linalg.det(t)) <= 1e-12:
        return ()
    inv = np.linalg.inv(t)
    return tuple(float(v) for v in (inv / inv[2, 2]).ravel())


def scene(ev: Evidence, min_keypoints: int = MIN_KEYPOINTS) -> bool:
    """The scene test: the two pictures align and agree at PIXEL_SIDE px (a copy, or another shot
    of one scene - bursts, re-takes and distant or flat scenes pass it too)."""
    if ev.frame:
        return ev.pixel >= FRAME_PIXEL and ev.cells >= FRAME_CELLS
    return (
        ev.inliers >= min_keypoints
        and ev.pixel >= MIN_PIXEL
        and ev.cells >= MIN_CELLS
        and ev.outside <= MAX_OUTSIDE
    )


def copy_proven(ev: Evidence) -> bool:
    """The copy tests (``copytests``): one homography fits the keypoints to a fraction of a pixel
    (not checked frame to frame) and the aligned pictures agree everywhere at the finer scale."""
    return not copy_failures(ev)


def copy_failures(ev: Evidence) -> list[str]:
    """The copy tests ``ev`` fails, by name (the re-take tests only count where they were measured:
    ``verify`` runs them for the pairs that pass the rest)."""
    return [
        name
        for name, failed in (
            ("residual", not (ev.frame or ev.residual <= MAX_RESIDUAL or ev.residual_px <= MAX_RESIDUAL_PX)),
            ("spill", ev.spill > COPY_OUTSIDE),
            ("local", ev.local < MIN_LOCAL),
            ("weakest", ev.weakest < MIN_WEAKEST),
            ("moved", ev.moved > MAX_MOVED),
            ("extra", ev.extra > MAX_EXTRA),
            ("crossed", ev.crossed > MAX_CROSSED),
            ("relit", ev.relit > MAX_RELIT),
            ("shifted", ev.shifted > MAX_SHIFTED),
        )
        if failed
    ]


def resave_proven(ev: Evidence) -> bool:
    """One file is a re-save of the other at a lower JPEG quality (``resave``): the other's size or
    smaller with its aspect, and the other re-saved alike reproduces it in (almost) every block."""
    return ev.resaved > 0 and ev.resave_changed <= MAX_RESAVE_CHANGED


def degraded(ev: Evidence) -> bool:
    """One file is a JPEG at LOW_QUALITY or below, well below the other: the copy tests' fine detail
    is lost on that side, so they prove nothing (the re-save test still can)."""
    return 0 < ev.resaved <= LOW_QUALITY


def copy_rule() -> dict:
    """The copy tests' thresholds, for the report's rule."""
    return {
        "max_residual": MAX_RESIDUAL,
        "max_residual_px": MAX_RESIDUAL_PX,
        "max_spill": COPY_OUTSIDE,
        "min_local": MIN_LOCAL,
        "min_weakest": MIN_WEAKEST,
        "max_moved": MAX_MOVED,
        "max_extra": MAX_EXTRA,
        "max_crossed": MAX_CROSSED,
        "max_relit": MAX_RELIT,
        "max_shifted": MAX_SHIFTED,
        "low_quality": LOW_QUALITY,
        "max_resave_changed": MAX_RESAVE_CHANGED,
        "compare_side": COMPARE_SIDE,
    }


def classify(ev: Evidence | None, min_keypoints: int = MIN_KEYPOINTS) -> str | None:
    """ "duplicate", "similar" or None for a pair's evidence (see the module doc): a duplicate
    passes the scene test and is proven a copy, by its EXIF (same capture) or by the copy tests,
    and its EXIF does not say it is another capture; the rest of the scene's pairs are similar."""
    if ev is None:
        return None
    same_scene = scene(ev, min_keypoints)
    if ev.capture != capture_evidence.DIFFERS and (
        resave_proven(ev)
        or (same_scene and (ev.capture == capture_evidence.SAME or (copy_proven(ev) and not degraded(ev))))
    ):
        return "duplicate"
    if same_scene or (not ev.frame and ev.inliers >= SIMILAR_KEYPOINTS and ev.cover >= MIN_COVER):
        return "similar"
    return None


def describe(ev: Evidence) -> str:
    """The evidence in words, for the reports."""
    turn = ""
    if ev.inliers or ev.frame:
        r = ev.rotation % 360
        nearest = min((0, 90, 180, 270, 360), key=lambda a: abs(r - a))
        if abs(r - nearest) <= 3 and nearest % 360:
            turn = f", turned {nearest}"
        elif abs(r - nearest) > 3:
            turn = f", turned {r:.0f} deg"
    if ev.frame:
        return (
            f"too few keypoints ({ev.inliers}); frame to frame{' (mirrored)' if ev.mirrored else ''}{turn}, "
            f"pixels agree {ev.pixel:.2f} ({ev.cells:.0%} of detail cells){_copy_words(ev)}"
        )
    return (
        f"{ev.inliers} keypoint matches agree{' (mirrored)' if ev.mirrored else ''}{turn}, "
        f"pixels agree {ev.pixel:.2f} ({ev.cells:.0%} of detail cells), keypoints span {ev.cover:.0%}"
        f"{_copy_words(ev)}"
    )


def _copy_words(ev: Evidence) -> str:
    """What the copy tests and the EXIF said, for a pair that passed the scene test."""
    if ev.capture == capture_evidence.DIFFERS:
        return "; EXIF: another capture"
    if ev.capture == capture_evidence.SAME:
        return "; EXIF: the same capture"
    if resave_proven(ev):
        return (
            f"; a re-save at JPEG quality ~{ev.resaved}: the other re-saved alike reproduces it "
            f"({ev.resave_changed:.0%} of blocks changed)"
        )
    if ev.local == 0.0 and ev.spill == 1.0:
        return ""  # not tested (the scene test failed)
    failed = [
        name
        for name, bad in (
            (
                "keypoints fit no single homography (parallax)",
                not ev.frame and ev.residual > MAX_RESIDUAL and ev.residual_px > MAX_RESIDUAL_PX,
            ),
            ("each shows a strip the other lacks", ev.spill > COPY_OUTSIDE),
            (
                f"{1 - ev.local:.0%} of detail cells disagree",
                ev.local < MIN_LOCAL or ev.weakest < MIN_WEAKEST,
            ),
            (f"{ev.moved:.0%} of cells changed (motion)", ev.moved > MAX_MOVED),
            ("the narrower holds detail the wider lacks (a zoom)", ev.extra > MAX_EXTRA),
            ("each shows picture beyond the other (another framing)", ev.crossed > MAX_CROSSED),
            ("the light changed in places (another moment)", ev.relit > MAX_RELIT),
            (f"{ev.shifted:.0%} of cells moved by a pixel or more (motion)", ev.shifted > MAX_SHIFTED),
        )
        if bad
    ]
    if failed:
        return "; not a copy: " + ", ".join(failed)
    if degraded(ev):
        return f"; one side is a JPEG at quality ~{ev.resaved}: too little detail left to prove a copy"
    return "; copy proven at 384 px"
