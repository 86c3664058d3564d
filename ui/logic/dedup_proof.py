"""What a dedup report proves about each group, in the Duplicates page's words, and the order the
page shows them in (no Streamlit here).

A group is *safe* - preselected for quarantine, labelled "safe to quarantine" - only when the report
marks it proven (``Group.is_proven``: the JSON's ``"proven"``; reports before that flag: byte copies
only) **and** every member carries its proof: a byte copy of the keeper (same sha256), or verification
evidence (``Member.evidence``) whose EXIF does not say "another capture". A report is data: a group
that claims ``"proven": true`` without the evidence is shown as not proven.

Order: byte copies, then copies proven by the same EXIF capture, then copies proven by the pixel
tests (each by its weakest member's similarity, highest first), then the groups that are not proven
(``--no-verify``); similar shots are a list of their own (``ordered(..., similar=True)``)."""

from __future__ import annotations

import os

BYTES, CAPTURE, PIXELS, UNPROVEN, SIMILAR = range(5)

LABEL = {
    BYTES: "Byte copies · safe to quarantine",
    CAPTURE: "The same capture (EXIF) · safe to quarantine",
    PIXELS: "Copies proven by the pixel tests · safe to quarantine",
    UNPROVEN: "Not proven copies · review before moving anything",
    SIMILAR: "Similar shots (other captures) · pick the one to keep",
}
EXPLAIN = {
    BYTES: "every other file is byte for byte the keeper (same sha256)",
    CAPTURE: "every other file has the keeper's EXIF capture (time to the sub-second or unique id)",
    PIXELS: "every other file passed the copy tests against the keeper: one homography fits, the aligned "
    "pixels agree at the finer scale, nothing moved, no extra detail",
    UNPROVEN: "the report does not prove these are copies (descriptors only, or no evidence for a member): "
    "nothing is preselected",
    SIMILAR: "other shots of one scene (bursts, re-takes, zooms): not copies; nothing is preselected",
}
COLOR = {BYTES: "green", CAPTURE: "green", PIXELS: "green", UNPROVEN: "orange", SIMILAR: "blue"}


def member_proof(group, member) -> int:
    """How ``member`` is proven a copy of the group's keeper (BYTES, CAPTURE, PIXELS or UNPROVEN)."""
    if member.sha256 == group.keeper.sha256:
        return BYTES
    ev = member.evidence
    if not isinstance(ev, dict) or ev.get("capture") == "differs":
        return UNPROVEN
    return CAPTURE if ev.get("capture") == "same" else PIXELS


def proof(group) -> int:
    """The group's proof: SIMILAR for similar shots, UNPROVEN unless the report marks it proven and
    every member carries its proof, else the weakest member's (BYTES < CAPTURE < PIXELS)."""
    if not group.is_duplicates:
        return SIMILAR
    if not group.is_proven or not group.members:
        return UNPROVEN
    return max(member_proof(group, m) for m in group.members)


def is_safe(group) -> bool:
    """Preselected for quarantine and labelled "safe to quarantine": a proven duplicate group."""
    return proof(group) in (BYTES, CAPTURE, PIXELS)


def _weakest_keypoints(group) -> int:
    return min((m.keypoints if m.keypoints is not None else 10**6 for m in group.members), default=0)


def strength(group) -> tuple:
    """Sort key: the strongest groups first (proof, then the weakest member's similarity)."""
    return (proof(group), -round(group.min_score, 6), -_weakest_keypoints(group), group.keeper.path)


def ordered(groups, similar: bool = False) -> list:
    """The duplicate groups (``similar``: the similar-shot groups) of ``groups``, strongest first."""
    return sorted((g for g in groups if g.is_duplicates != similar), key=strength)


def score_bounds(groups) -> tuple[float, float]:
    """(lowest, highest) similarity of any member of ``groups`` to its keeper; (1.0, 1.0) for none."""
    scores = [m.score for g in groups for m in g.members]
    return (min(scores), max(scores)) if scores else (1.0, 1.0)


def at_least(groups, floor: float) -> list:
    """The groups whose every member is at least ``floor`` similar to its keeper."""
    return [g for g in groups if g.min_score >= floor - 1e-9]


def plan_text(moves: list, quarantine, kept: list, limit: int = 6) -> str:
    """The confirmation's words: which files move where, and which stay."""
    names = [os.path.basename(m.path) for m in moves]
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    stay = ", ".join(os.path.basename(m.path) for m in kept[:limit])
    more = f" and {len(kept) - limit} more" if len(kept) > limit else ""
    return (
        f"Move {len(moves)} file{'s' if len(moves) != 1 else ''} ({shown}) to {quarantine}? "
        f"{stay}{more} stay{'s' if len(kept) == 1 else ''}. Nothing is deleted; Undo moves them back."
    )
