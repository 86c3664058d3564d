"""The words of a dedup report: why each kind of group is one, and the rule as a sentence."""

from __future__ import annotations

DUPLICATES = "duplicates"
SIMILAR = "similar"

EXACT_REASON = "exact copy (same sha256)"

KEEPER_REASON = "keeper"

WHY = {
    DUPLICATES: "copies of one capture, each proven against the keeper itself: byte-identical, the same "
    "EXIF capture, or aligned pixels that agree everywhere at the finer scale with nothing a copy "
    "could not have (no parallax, no local motion, no extra detail); safe to quarantine",
    SIMILAR: "similar shots, not copies (none proven the same capture): the same scene (keypoints agree on "
    "one transform) but not "
    "the same capture (a burst, a re-take, a zoom, another angle or moment, or another EXIF capture "
    "time), or the pixels cannot tell; for review, never applied by default",
}

UNPROVEN_WHY = (
    "near duplicates by descriptor similarity only (--no-verify): not proven copies; review before quarantine"
)


def near_reason(
    score: float, keypoints: int | None = None, evidence: str | None = None, kind: str = DUPLICATES
) -> str:
    what = "similar shot" if kind == SIMILAR else "near duplicate"
    if evidence:
        return f"{what} (cosine {score:.3f}; {evidence})"
    if keypoints is not None:
        return f"{what} (cosine {score:.3f}, {keypoints} keypoint matches agree)"
    return f"{what} (cosine {score:.3f})"


def rule_text(threshold: float, rule: dict | None) -> str:
    """How pairs were called duplicates, e.g. 'cosine >= 0.900, or >= 0.550 with >= 20 agreeing
    keypoint matches' (version 1) or the pixel rule (version 2, ``rule["pixel"]``)."""
    if rule and rule.get("pixel") is not None:
        return (
            f"candidates at cosine >= {rule['verify_floor']:.2f} (and turned copies); a duplicate when >= "
            f"{rule['min_keypoints']} keypoint matches agree on one transform and the aligned pixels agree "
            f"(correlation >= {rule['pixel']:.2f}, >= {rule['cells']:.0%} of detail cells) with one picture "
            f"showing nothing the other lacks (<= {rule.get('outside', 0.1):.0%} of its detail outside), or - "
            f"too little texture for keypoints - frame to frame, or without keypoints at cosine >= "
            f"{threshold:.3f}{' (since issue 24: a similar shot, unproven)' if rule.get('copy') else ''}; "
            f"a similar shot when >= {rule['similar_keypoints']} matches agree over >= "
            f"{rule['cover']:.0%} of both pictures but the pixels do not" + _copy_text(rule.get("copy"))
        )
    text = f"cosine >= {threshold:.3f}"
    if rule and rule.get("verify_floor") is not None and rule["verify_floor"] < threshold:
        text += (
            f", or >= {rule['verify_floor']:.3f} with >= {rule['min_keypoints']} agreeing keypoint matches"
        )
    return text


def _copy_text(copy: dict | None) -> str:
    """The copy tests of the rule (reports since issue 24), in words."""
    if not copy:
        return ""
    return (
        f"; a pair passing that scene test is a duplicate only when proven one capture: the same EXIF capture, "
        f"or one homography fits its keypoints (median error <= {copy['max_residual']:.1%} of the side or "
        f"<= {copy['max_residual_px']} px), at {copy['compare_side']} px >= {copy['min_local']:.0%} of detail "
        f"cells agree (20% quantile >= {copy['min_weakest']}) and <= {copy.get('max_moved', 0.05):.0%} changed "
        f"with as much detail on both sides (motion), one picture shows <= {copy['max_spill']:.1%} "
        f"of its detail outside the other, and a narrower picture holds no detail beyond the wider one's "
        f"resolution (<= {copy['max_extra']:.1%})"
        + (
            f", the two do not each show picture beyond the other (<= {copy['max_crossed']:.1%} of the "
            f"frame), one tone curve explains the light (90% of cells within {copy['max_relit']} of its spread) "
            f"and at the file's own resolution <= {copy['max_shifted']:.0%} of cells moved by > 0.5 px"
            if "max_shifted" in copy
            else ""
        )
        + "; EXIF capture times or cameras that differ are never "
        "duplicates; the rest of the scene's pairs are similar shots"
    )
