"""Searching an index by image: embedding queries and the k-NN search (``vector_search``), query
expansion (``query_expansion``), neighbour re-ranking (``neighbour_rerank``), and the rotated views of
a query (``rotation``); ``SearchOptions`` carries how a query is searched (``options``)."""

from .neighbour_rerank import DEFAULT_RERANK, check_depth
from .options import SearchOptions
from .query_expansion import DEFAULT_ALPHA, DEFAULT_QE, check_options
from .rotation import DEFAULT_ROTATIONS, TURN_MARGIN, merge_by_max, turned_copies
from .vector_search import embed_and_search, embed_queries, search_ids, search_vectors, search_views

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_QE",
    "DEFAULT_RERANK",
    "DEFAULT_ROTATIONS",
    "SearchOptions",
    "TURN_MARGIN",
    "check_depth",
    "check_options",
    "merge_by_max",
    "turned_copies",
    "embed_and_search",
    "embed_queries",
    "search_ids",
    "search_vectors",
    "search_views",
]
