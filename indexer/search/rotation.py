"""Rotation search, on by default: a query is also searched turned by 90 and 270 degrees, and each
indexed image keeps its best score over the three views, a turned view's score counting
``TURN_MARGIN`` less (for photos whose files lack the EXIF orientation that would have turned them
upright). The query is decoded once (``upright_view``: a JPEG at the reduced scale the model's input
needs, as an indexed photo is), with its own EXIF orientation applied; the turned copies are PIL
transposes of that, and all three views go to the model together.

Why this rule (``benchmarks/rotation_search.py``, re-ranked as by default): a sideways photo of the
same scene scores far higher turned than upright, while every other image gains a little from a free
pick of three views. The margin keeps the first and stops the second reordering the list. On
holidays150 the plain maximum over 90/180/270 gained 0.018 mAP (the default INT8 model) but lost on
paris5 and, in 5% of random halves of holidays150, 0.012 or more; with the margin, 90 and 270 gain
0.023-0.027 on holidays150 for three descriptors and 0.002-0.003 on paris5, and the 5th percentile
of random halves gains too.
The 180-degree view added nothing beyond one query and costs another model run, so it is left out.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from retrieval.errors import UserError
from retrieval.preprocess import ImageError, open_image

TURNS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)
VIEWS = 1 + len(TURNS)  # the query as given, then its turns
TURN_MARGIN = 0.06  # a turned view's score counts this much less (0.04-0.08 measured alike)
DEFAULT_ROTATIONS = True


def upright_view(query, name: str = "query image", draft_size: int | None = None) -> Image.Image:
    """The query image (a path, bytes or a PIL image) decoded once, RGB, its EXIF orientation
    applied; ``draft_size``: JPEGs decoded at a reduced scale that stays at least that big, as the
    model's own input path does (``retrieval.preprocess.load_and_prepare``). UserError when it
    cannot be read."""
    try:
        if isinstance(query, Image.Image):
            upright = ImageOps.exif_transpose(query) or query
        else:
            source = os.fspath(query) if isinstance(query, os.PathLike) else query
            upright = open_image(source, draft_size=draft_size)
    except ImageError as e:
        raise UserError(f"cannot use {name}: {e}") from None
    return upright if upright.mode == "RGB" else upright.convert("RGB")


def turns(upright: Image.Image) -> list[Image.Image]:
    """``upright`` (an ``upright_view``) turned by each of ``TURNS`` (90 and 270 degrees anticlockwise)."""
    return [upright.transpose(turn) for turn in TURNS]


def turned_copies(query, name: str = "query image", draft_size: int | None = None) -> list[Image.Image]:
    """The query image (see ``upright_view``) turned by each of ``TURNS`` (90 and 270 degrees
    anticlockwise, after its EXIF orientation)."""
    return turns(upright_view(query, name, draft_size))


def merge_by_max(
    scores: np.ndarray, ids: np.ndarray, views: int, k: int, margin: float = TURN_MARGIN
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS results of ``views`` consecutive rows per query ([Q * views, n]: the upright view, then
    the turned ones) -> the ``k`` best images per query ([Q, k]), each scored by its best view, a
    turned view's scores less ``margin``; missing places are id -1, score -inf.
    Exact: an image in the merged top k is in its best view's own top k."""
    n_queries = len(ids) // views
    out_scores = np.full((n_queries, k), -np.inf, np.float32)
    out_ids = np.full((n_queries, k), -1, np.int64)
    for q in range(n_queries):
        best: dict[int, float] = {}
        rows = slice(q * views, (q + 1) * views)
        penalised = scores[rows] - np.where(np.arange(views) > 0, np.float32(margin), np.float32(0))[:, None]
        for score, i in zip(penalised.ravel(), ids[rows].ravel()):
            if i >= 0 and score > best.get(int(i), -np.inf):
                best[int(i)] = float(score)
        ranked = sorted(best.items(), key=lambda item: -item[1])[:k]
        for place, (i, score) in enumerate(ranked):
            out_ids[q, place], out_scores[q, place] = i, score
    return out_scores, out_ids
