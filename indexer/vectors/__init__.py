"""The FAISS side of an index: vectors keyed by the metadata rows' ids, saved crash-safely.

More: docs/design-notes.md (``indexer.vectors``)."""

from __future__ import annotations

import faiss  # ``vectors.faiss``: the FAISS module the index uses

from .files import file_sha256, load, remove_stale_files, save
from .index_types import (
    DEFAULT_EF_SEARCH,
    DEFAULT_NPROBE,
    FLAT_LIMIT,
    FLAT_QUANTIZER_MAX,
    GROW,
    HNSW_M,
    KINDS,
    PQ_LIMIT,
    QUANTIZER_EF,
    TRAIN_MIN,
    IndexConfig,
    adapt,
    build,
    empty_index,
    make_config,
    nlist_for,
    parse_type,
    target_factory,
    train,
)
from .knn import gpu_copy, search, search_params
from .shards import merge_ivf_shards
from .stored import all_vectors, ids_of, is_exact, is_hnsw, ivf_of, new_index, remove, without
from .whitening import MIN_VECTORS as MIN_WHITENING_VECTORS

__all__ = [
    "faiss",
    "file_sha256",
    "load",
    "remove_stale_files",
    "save",
    "DEFAULT_EF_SEARCH",
    "DEFAULT_NPROBE",
    "FLAT_LIMIT",
    "FLAT_QUANTIZER_MAX",
    "GROW",
    "HNSW_M",
    "KINDS",
    "PQ_LIMIT",
    "QUANTIZER_EF",
    "TRAIN_MIN",
    "IndexConfig",
    "adapt",
    "build",
    "empty_index",
    "make_config",
    "nlist_for",
    "parse_type",
    "target_factory",
    "train",
    "gpu_copy",
    "search",
    "search_params",
    "merge_ivf_shards",
    "is_hnsw",
    "ivf_of",
    "all_vectors",
    "ids_of",
    "is_exact",
    "new_index",
    "remove",
    "without",
    "MIN_WHITENING_VECTORS",
]
