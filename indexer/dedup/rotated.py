"""Candidate pairs for copies turned by 90, 180 or 270 degrees without an EXIF orientation.

More: docs/design-notes.md (``indexer.dedup.rotated``)."""

from __future__ import annotations

import time

import numpy as np

from retrieval.preprocess import open_image

from .candidates import build_search_index

SIDE = 32
LOW = 8
FLOOR = 0.90  # descriptor correlation of a turned copy to its original (measured: docs/dedup.md)
K = 3


def layout_descriptors(grey32: np.ndarray) -> np.ndarray:
    """[4, LOW*LOW-1] descriptors of a 32 x 32 grey image turned by 0, 90, 180 and 270 degrees."""
    import cv2

    out = np.zeros((4, LOW * LOW - 1), np.float32)
    for turn in range(4):
        d = cv2.dct(np.ascontiguousarray(np.rot90(grey32, turn), dtype=np.float32))[:LOW, :LOW].ravel()[1:]
        n = float(np.linalg.norm(d))
        out[turn] = d / n if n > 0 else d
    return out


def _read(path: str) -> np.ndarray | None:
    from PIL import Image

    try:
        im = open_image(path, draft_size=SIDE * 2).convert("L").resize((SIDE, SIDE), Image.BILINEAR)
    except Exception:  # noqa: BLE001 - unreadable now: no rotated candidates for it
        return None
    return layout_descriptors(np.asarray(im, dtype=np.float32))


def _version() -> str:
    """The code a stored layout was made by: this module, the decoding it uses and Pillow's version."""
    import PIL

    import retrieval.preprocess as preprocess

    from .factcache import code_version

    return code_version(__file__, preprocess.__file__) + "-" + PIL.__version__


def _encode(desc) -> bytes | None:
    return None if desc is None else np.ascontiguousarray(desc, np.float32).tobytes()


def _decode(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.float32).reshape(4, LOW * LOW - 1).copy()


def rotated_pairs(
    paths: list[str], floor: float = FLOOR, k: int = K, workers: int = 4, cache=None, progress=None
):
    """(i, j, score) arrays: ``paths[i]`` turned resembles ``paths[j]`` upright (i != j), and stats;
    ``cache``: a ``factcache.FactCache`` holding the layouts of files unchanged since a run before;
    ``progress(done, total)`` over the files read."""
    from .factcache import cached_map

    t0 = time.perf_counter()
    descs, read_stats = cached_map(
        _read, paths, cache, "layout", (_version, _encode, _decode), workers, progress
    )
    ok = np.array([d is not None for d in descs], dtype=bool)
    n = len(paths)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if ok.sum() < 2:
        return (*empty, {"rotated_seconds": round(time.perf_counter() - t0, 3), "rotated_candidates": 0})
    rows = np.nonzero(ok)[0]
    upright = np.stack([descs[r][0] for r in rows])
    turned = np.concatenate([descs[r][1:] for r in rows])  # 3 per row: 90, 180, 270
    owner = np.repeat(rows, 3)
    index, info = build_search_index(upright)
    kk = min(k + 1, len(rows))
    _, ids = index.search(turned, kk)
    ids = np.where(ids >= 0, ids, 0)
    scores = np.einsum("qd,qkd->qk", turned, upright[ids])  # exact, whatever the search structure
    hit = (scores >= floor) & (rows[ids] != owner[:, None])
    qi, col = np.nonzero(hit)
    i, j, s = owner[qi], rows[ids[qi, col]], scores[qi, col].astype(np.float32)
    a, b = np.minimum(i, j), np.maximum(i, j)
    key = a * n + b
    _, first = np.unique(key, return_index=True)
    stats = {
        "rotated_seconds": round(time.perf_counter() - t0, 3),
        "rotated_candidates": int(len(first)),
        "rotated_unreadable": int((~ok).sum()),
        "rotated_cached": read_stats["layout_cached"],
    }
    return a[first], b[first], s[first], stats
