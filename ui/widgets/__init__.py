"""Streamlit building blocks shared by the pages: upload, crop and thumbnail widgets (``components``,
used as ``C``), the lightbox (``lightbox``) and the session's state (``state``: settings, the cached
service, background indexing, and ``guard`` that turns an error into a one-line message)."""

from . import components
from .lightbox import OPEN, lightbox
from .state import finish_indexing, forget_service, guard, indexing_job, service, settings, start_indexing

__all__ = [
    "components",
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
