"""What ``find_duplicates`` looks for: one object instead of a dozen parameters."""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.errors import UserError

from .candidates import DEFAULT_K, DEFAULT_NPROBE, EXACT_LIMIT
from .groups import KEEPER_POLICIES
from .rule import MIN_KEYPOINTS

VERIFY_FLOOR = 0.55  # candidates from this cosine up are verified (docs/dedup.md)


@dataclass(frozen=True)
class DedupOptions:
    """``threshold``: the cosine of a duplicate without verification, or of a pair whose keypoints say
    nothing with it (None: the model's default); ``verify_floor``: candidates from this cosine up are
    verified; ``keeper``/``prefer``: the keeper policy and folders kept first; ``near``: False for exact
    copies only; ``similar``, ``rotations``: similar shots, turned copies; ``include_dismissed``: also
    the pairs a person kept both of; ``k``, ``exact_limit``, ``nprobe``: the candidate search."""

    threshold: float | None = None
    keeper: str = "resolution"
    prefer: tuple = ()
    k: int = DEFAULT_K
    exact_limit: int = EXACT_LIMIT
    nprobe: int = DEFAULT_NPROBE
    near: bool = True
    verify: bool = True
    verify_floor: float = VERIFY_FLOOR
    min_keypoints: int = MIN_KEYPOINTS
    similar: bool = True
    rotations: bool = True
    include_dismissed: bool = False


def check_options(threshold, verify, verify_floor, min_keypoints, keeper):
    """A UserError naming the first option out of range."""
    if not -1.0 <= threshold <= 1.0:
        raise UserError(f"--threshold is a cosine similarity between -1 and 1 (got {threshold})")
    if verify and not -1.0 <= verify_floor <= 1.0:
        raise UserError(f"--verify-floor is a cosine similarity between -1 and 1 (got {verify_floor})")
    if verify and min_keypoints < 1:
        raise UserError(f"--min-keypoints must be at least 1 (got {min_keypoints})")
    if keeper not in KEEPER_POLICIES:
        raise UserError(f"unknown keeper policy {keeper!r}; choose one of {', '.join(KEEPER_POLICIES)}")
