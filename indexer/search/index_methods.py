"""The search methods of ``Index`` (``Index.search``, ``search_and_classify``, ``search_vectors``...):
queries embedded with the index's model, searched with its vectors (``vector_search``)."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from indexer.reports import SearchHit
from retrieval.classes import top_classes

from . import vector_search as searching
from .options import SearchOptions
from .query_expansion import DEFAULT_ALPHA


class IndexSearch:
    """Mixed into ``indexer.Index``: it provides ``embedder``, ``store``, ``spec`` and the vectors."""

    def embed_queries(self, queries: Iterable, with_logits: bool = False):
        """Descriptors of query images (paths, bytes or PIL images); with ``with_logits``, also the
        class scores from the same forward pass (None when the model has no classifier)."""
        return searching.embed_queries(self, queries, with_logits)

    def search(
        self,
        query,
        k: int = 10,
        *,
        qe: int | None = None,
        qe_alpha: float = DEFAULT_ALPHA,
        rotations: bool | None = None,
        rerank: int | None = None,
    ) -> list[SearchHit]:
        """The ``k`` indexed images most similar to ``query`` (a path, bytes or a PIL image).
        ``qe``: alpha-QE over the top ``qe`` hits, weights score ** ``qe_alpha`` (0: off; None:
        ``indexer.search.query_expansion.DEFAULT_QE``); ``rotations``: also search the query turned by
        90 and 270 degrees, each image scored by its best view, a turned one's less a margin (None:
        ``indexer.search.rotation.DEFAULT_ROTATIONS``, on);
        ``rerank``: the top ``rerank`` hits scored again with each one's nearest indexed neighbour (None:
        ``indexer.search.neighbour_rerank.DEFAULT_RERANK``; 0: off)."""
        return self.search_many([query], k, qe=qe, qe_alpha=qe_alpha, rotations=rotations, rerank=rerank)[0]

    def search_many(
        self,
        queries: Iterable,
        k: int = 10,
        *,
        qe: int | None = None,
        qe_alpha: float = DEFAULT_ALPHA,
        rotations: bool | None = None,
        rerank: int | None = None,
    ) -> list[list[SearchHit]]:
        return self.embed_and_search(
            queries, k, qe=qe, qe_alpha=qe_alpha, rotations=rotations, rerank=rerank
        )[0]

    def search_and_classify(
        self,
        queries: Iterable,
        k: int = 10,
        top: int = 5,
        nprobe: int | None = None,
        ef_search: int | None = None,
        *,
        qe: int | None = None,
        qe_alpha: float = DEFAULT_ALPHA,
        rotations: bool | None = None,
        rerank: int | None = None,
    ):
        """(hits per query, top classes per query or None): one forward pass gives both; the
        classes are those of the upright query (also with ``rotations``)."""
        found, _, logits = self.embed_and_search(
            queries,
            k,
            with_logits=True,
            nprobe=nprobe,
            ef_search=ef_search,
            qe=qe,
            qe_alpha=qe_alpha,
            rotations=rotations,
            rerank=rerank,
        )
        classes = None
        if logits is not None and self.spec.class_names:
            classes = top_classes(logits, self.spec.class_names, top)
        return found, classes

    def embed_and_search(
        self,
        queries: Iterable,
        k: int = 10,
        *,
        with_logits: bool = False,
        nprobe: int | None = None,
        ef_search: int | None = None,
        qe: int | None = None,
        qe_alpha: float = DEFAULT_ALPHA,
        rotations: bool | None = None,
        rerank: int | None = None,
    ):
        """(hits per query, the queries' upright descriptors [Q, dim], their class scores or None
        without ``with_logits`` or a classifier): the search options of ``search`` and
        ``search_vectors`` together, for callers that also need the descriptors."""
        options = SearchOptions(
            qe=qe, qe_alpha=qe_alpha, rerank=rerank, rotations=rotations, nprobe=nprobe, ef_search=ef_search
        )
        return searching.embed_and_search(self, queries, k, with_logits, options)

    def search_vectors(
        self,
        queries: np.ndarray,
        k: int = 10,
        nprobe: int | None = None,
        ef_search: int | None = None,
        qe: int | None = None,
        qe_alpha: float = DEFAULT_ALPHA,
        rerank: int | None = None,
    ) -> list[list[SearchHit]]:
        """Hits for descriptor rows; ``nprobe`` (IVF lists visited) and ``ef_search`` (HNSW breadth)
        override the index's stored defaults for this call: higher = better recall, slower.
        ``qe``/``qe_alpha``: query expansion as in ``search`` (stored vectors of lossy SQ/PQ
        indexes are decoded approximately for it)."""
        options = SearchOptions(qe=qe, qe_alpha=qe_alpha, rerank=rerank, nprobe=nprobe, ef_search=ef_search)
        return searching.search_vectors(self, queries, k, options)

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[list[SearchHit]]:
        """FAISS results ([Q, k] scores and image ids) as SearchHits, one database read for all."""
        return searching.hits(self.store, scores, ids)
