"""The FAISS side of an index: vectors keyed by the metadata rows' ids, saved crash-safely.

Each save writes a new generation file (``vectors-<n>.faiss``: written to a temporary name, fsynced,
renamed, directory fsynced). The metadata transaction that commits the rows names that file and its
sha256, so the database always points at a complete file that matches it; a crash before the commit
leaves an orphan file that the next writer removes.

Index types (``--index-type``, stored in the ``vectors_index`` meta; see docs/index-types.md):

    flat    IndexIDMap2(IndexFlatIP): exact; what every index was before index types existed
    hnsw    IndexIDMap2(IndexHNSWFlat): graph search; FAISS cannot delete from it, so a commit that
            removes or replaces vectors rebuilds the graph from the stored (exact) vectors
    ivf     IVF<nlist>,SQ8: inverted lists, exact (flat) coarse quantizer, 8-bit scalar codes
    ivfpq   OPQ64,IVF<nlist>[_HNSW32],PQ64: 64 bytes per vector, for collections beyond RAM for SQ8
    auto    flat below ``flat_limit`` vectors, ivf below ``pq_limit``, ivfpq beyond (the default)
    other   a raw FAISS index_factory string (experts), e.g. ``IVF4096_HNSW32,Flat``

The coarse quantizer is exact (flat) up to ``FLAT_QUANTIZER_MAX`` lists: measured at 1M vectors, an
HNSW32 quantizer over inner products put 6% of the vectors into one list (its greedy search stops
early on near-equal centroids), so searches were 5x slower at lower recall. Beyond that, an HNSW
quantizer with a wide search (``QUANTIZER_EF``) replaces the nlist x d scan.

IVF types are not wrapped in an IDMap: they take our ids natively (``add_with_ids``, ``remove_ids``)
and keep a hashtable direct map so vectors can be reconstructed by id. Types that need training stay
flat until there are enough vectors to train them, then a commit converts; ``auto`` also converts
again when the collection outgrows its type (4x more vectors than it was trained for).

The parts (every name is also here, ``from indexer import vectors; vectors.X``): ``files`` (generation
files: save, load, sha256, stale files), ``stored`` (what an index holds: ids, vectors, removing),
``index_types`` (config, target structure, build/train/adapt), ``searching`` (search parameters, GPU
copy), ``shards`` (merging IVF shards of a sharded build).
"""
from __future__ import annotations

import faiss  # ``vectors.faiss``: the FAISS module the index uses

from .files import file_sha256, load, remove_stale_files, save
from .index_types import (DEFAULT_EF_SEARCH, DEFAULT_NPROBE, FLAT_LIMIT, FLAT_QUANTIZER_MAX, GROW, HNSW_M, KINDS,
                          PQ_LIMIT, QUANTIZER_EF, TRAIN_MIN, IndexConfig, _family, _needs_training, _pq_m,
                          _train_needed, adapt, build, empty_index, make_config, nlist_for, parse_type,
                          target_factory, train)
from .knn import gpu_copy, search, search_params
from .shards import merge_ivf_shards
from .whitening import MIN_VECTORS as MIN_WHITENING_VECTORS
from .stored import _add, _is_hnsw, _ivf, all_vectors, ids_of, is_exact, new_index, remove, without

__all__ = ["faiss", "file_sha256", "load", "remove_stale_files", "save", "DEFAULT_EF_SEARCH", "DEFAULT_NPROBE",
           "FLAT_LIMIT", "FLAT_QUANTIZER_MAX", "GROW", "HNSW_M", "KINDS", "PQ_LIMIT", "QUANTIZER_EF", "TRAIN_MIN",
           "IndexConfig", "_family", "_needs_training", "_pq_m", "_train_needed", "adapt", "build", "empty_index",
           "make_config", "nlist_for", "parse_type", "target_factory", "train", "gpu_copy", "search", "search_params",
           "merge_ivf_shards", "_add", "_is_hnsw", "_ivf", "all_vectors", "ids_of", "is_exact", "new_index", "remove",
           "without", "MIN_WHITENING_VECTORS"]
