"""Streamlit building blocks shared by the pages: upload, crop and thumbnail widgets (``components``,
used as ``C``), the lightbox (``lightbox``), the Duplicates page's groups (``dedup_groups``) and compare
view (``compare``), and the session's state (``state``: settings, the cached service, background
indexing, and ``guard`` that turns an error into a one-line message)."""

from . import components, dedup_groups
from .compare import COMPARE, compare_dialog
from .lightbox import OPEN, lightbox
from .state import finish_indexing, forget_service, guard, indexing_job, service, settings, start_indexing

__all__ = [
    "components",
    "dedup_groups",
    "COMPARE",
    "compare_dialog",
    "OPEN",
    "lightbox",
    "finish_indexing",
    "forget_service",
    "guard",
    "indexing_job",
    "service",
    "settings",
    "start_indexing",
]
