"""Optimizing an index's model: prune it and distil it on the index's own photos, with the
descriptors the index already stores as the teacher's outputs for their plain views (the model-side
work is ``retrieval.compress.optimize`` / ``retrieval.compress.distill``; this is what ``vgg-retrieval optimize`` calls)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from retrieval.compress.defaults import ROUND_TO
from retrieval.errors import UserError

from .index import Index


def index_targets(index_dir, limit: int | None = None, seed: int = 0):
    """(photo paths, their stored descriptors [N, D] float32, the index's ModelSpec) of an existing
    index: the teacher's outputs for plain views. Video frames and files gone from disk are left out."""
    with Index.open(index_dir) as index:
        ids, vectors = index.all_vectors()
        rows = index.store.rows_by_id(ids)
        spec = index.spec
    keep = [
        (rows[i].path, n)
        for n, i in enumerate(ids.tolist())
        if i in rows and rows[i].source is None and Path(rows[i].path).is_file()
    ]
    if not keep:
        raise UserError(f"{index_dir}: no indexed photo is on disk to distil from")
    if limit and len(keep) > limit:
        keep = sorted(random.Random(seed).sample(keep, limit))
    return [p for p, _ in keep], np.ascontiguousarray(vectors[[n for _, n in keep]], dtype=np.float32), spec


def optimize_index(
    index_dir,
    out,
    flops: float = 0.5,
    keep_last: bool = True,
    cfg=None,
    teacher=None,
    limit: int | None = None,
    progress=None,
    round_to: int = ROUND_TO,
) -> dict:
    """``optimize_model`` for the model of the index at ``index_dir``, distilled on its photos with
    its stored descriptors as the plain-view targets (the teacher, loaded from the index's spec
    unless given, runs on augmented views and the layer refit only)."""
    from retrieval.compress.distill import DistillConfig  # lazy: keeps the command line's start light
    from retrieval.compress.optimize import optimize_model  # lazy: loads torch only when used
    from retrieval.nets.builder import load_net  # lazy: keeps the command line's start light

    cfg = cfg or DistillConfig()
    paths, vectors, spec = index_targets(index_dir, limit=limit or cfg.limit, seed=cfg.seed)
    if teacher is None:
        teacher = load_net(spec)
    return optimize_model(
        teacher,
        spec,
        paths,
        out,
        flops,
        keep_last,
        cfg,
        teacher_vectors=vectors,
        progress=progress,
        round_to=round_to,
    )
