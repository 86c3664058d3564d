"""Duplicate finding over an index: exact copies (sha256) and near duplicates (FAISS k-NN over the
descriptors, never an N x N matrix), keeper-centred groups, reports (JSON/CSV/HTML) and safe
quarantine moves with an undo log. See docs/dedup.md."""
from .find import DEFAULT_THRESHOLD, default_threshold, find_duplicates
from .groups import KEEPER_POLICIES
from .report import DedupReport, Group, Member

__all__ = ["find_duplicates", "DedupReport", "Group", "Member", "DEFAULT_THRESHOLD", "default_threshold", "KEEPER_POLICIES"]
