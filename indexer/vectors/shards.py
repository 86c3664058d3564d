"""A sharded build: IVF shards filled by separate workers merged into one index."""

from __future__ import annotations

import faiss
import numpy as np

from retrieval.errors import UserError

from .stored import ids_of, ivf_of


def merge_ivf_shards(shards: list[faiss.Index]) -> faiss.Index:
    """One IVF index from shards built by separate workers, each a clone of the same trained empty
    index (``train``) filled with ``add_with_ids``: the inverted lists are concatenated
    (``IndexIVF.merge_from``), so the result searches exactly like one index built in one process.
    The shards are emptied; ids must be distinct across shards."""
    if not shards:
        raise UserError("no shards to merge")
    ivfs = [ivf_of(s) for s in shards]
    if any(v is None for v in ivfs):
        raise UserError("only IVF shards can be merged")
    centroids = ivfs[0].quantizer.reconstruct_n(0, ivfs[0].nlist)
    for i, v in enumerate(ivfs[1:], 1):
        if (
            v.nlist != ivfs[0].nlist
            or v.code_size != ivfs[0].code_size
            or not np.array_equal(v.quantizer.reconstruct_n(0, v.nlist), centroids)
        ):
            raise UserError(f"shard {i} was not trained with the same quantizer as shard 0")
    all_ids = np.concatenate([ids_of(s) for s in shards])
    if len(np.unique(all_ids)) != len(all_ids):
        raise UserError("shards share ids: each vector id must be in exactly one shard")
    merged = faiss.clone_index(shards[0])
    ivf_of(merged).set_direct_map_type(faiss.DirectMap.NoMap)  # merge_from needs no direct map
    for s, v in zip(shards[1:], ivfs[1:]):
        v.set_direct_map_type(faiss.DirectMap.NoMap)
        ivf_of(merged).merge_from(v, 0)
        s.ntotal = v.ntotal
    merged.ntotal = ivf_of(merged).ntotal
    ivf_of(merged).set_direct_map_type(faiss.DirectMap.Hashtable)
    return merged
