"""Duplicate finding over an index: exact copies (sha256) and near duplicates (FAISS k-NN over the
descriptors, never an N x N matrix), keeper-centred groups, reports (JSON/CSV/HTML) and safe
quarantine moves with an undo log. See docs/dedup.md."""

from .apply import apply_report, read_log
from .decisions import kept_pairs
from .find import (
    DEFAULT_THRESHOLD,
    UNTRIMMED_THRESHOLD,
    VERIFIED_THRESHOLD,
    default_threshold,
    find_duplicates,
)
from .groups import KEEPER_POLICIES
from .options import VERIFY_FLOOR, DedupOptions
from .report import REPORT_FORMAT, DedupReport, Group, Member
from .rule import MIN_KEYPOINTS
from .run import dedup_index
from .undo import undo

__all__ = [
    "DedupOptions",
    "find_duplicates",
    "dedup_index",
    "DedupReport",
    "Group",
    "Member",
    "REPORT_FORMAT",
    "apply_report",
    "read_log",
    "undo",
    "kept_pairs",
    "DEFAULT_THRESHOLD",
    "UNTRIMMED_THRESHOLD",
    "VERIFIED_THRESHOLD",
    "VERIFY_FLOOR",
    "default_threshold",
    "KEEPER_POLICIES",
    "MIN_KEYPOINTS",
]
