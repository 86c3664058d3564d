"""The search page's query options, as ``vgg-retrieval search --qe K --rotations`` has them (no
Streamlit here): alpha query expansion over the top K hits (``indexer.search.query_expansion``; 0 = off) and
rotation search (``indexer.search.rotation``, on by default: the query also turned by 90 and 270 degrees,
each image scored by its best view, a turned view's less a margin). ``Service.search`` asks ``nearest`` for its neighbours.

The turned copies are embedded once per query and kept on it (``Query.turned``); an indexed image
used as the query is read from its file for them, a JPEG at the reduced scale the model's input
needs, as the command line's search reads it (its upright descriptor stays the stored one).
Searches by words have neither option: they search another space (``Query.searcher``)."""

from __future__ import annotations

import time

import numpy as np

from indexer.search import DEFAULT_ROTATIONS, SearchOptions, search_views, turned_copies
from retrieval import draft_side


def turned_vectors(svc, query) -> np.ndarray:
    """Descriptors [2, d] of ``query``'s image turned by 90 and 270 degrees (embedded on first use;
    the time it took joins the query's timings as "rotations")."""
    if query.turned is None:
        t0 = time.perf_counter()
        draft = draft_side(svc.index.spec.input_geometry)
        im = (
            query.image
            if query.image is not None
            else svc.open_row(svc.row(query.image_id), draft_size=draft)
        )
        with svc.lock:
            query.turned = np.asarray(svc.index.embed_queries(turned_copies(im, query.title)), np.float32)
        query.timings["rotations"] = time.perf_counter() - t0
    return query.turned


def nearest(svc, query, k: int, qe: int | None = None, rotations: bool = DEFAULT_ROTATIONS) -> list:
    """The ``k`` nearest indexed images (SearchHits, best first) of ``query`` with alpha-QE over its top
    ``qe`` hits (None: the index's default, ``indexer.search.query_expansion.DEFAULT_QE``) and, with
    ``rotations``, the best score over the upright query and its turns (``search_views``)."""
    if query.searcher is not None:  # words: their own space, no expansion or turns
        return query.searcher(query.vector[None, :], k)[0]
    if not rotations:
        return svc.index.search_vectors(query.vector[None, :], k, qe=qe)[0]
    views = np.concatenate([query.vector[None, :].astype(np.float32), turned_vectors(svc, query)])
    return search_views(svc.index, views, k, SearchOptions(qe=qe))[0]
