"""What ``find_duplicates`` looks for: one object instead of a dozen parameters."""

from __future__ import annotations

from dataclasses import dataclass

from .candidates import DEFAULT_K, DEFAULT_NPROBE, EXACT_LIMIT
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
