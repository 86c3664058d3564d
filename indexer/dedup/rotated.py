"""Candidate pairs from each file's layout (its 32 px grey picture's lowest frequencies): copies
turned by 90, 180 or 270 degrees without an EXIF orientation, and heavy re-encodes whose
descriptors broke (``upright``).

More: docs/design-notes.md (``indexer.dedup.rotated``)."""

from __future__ import annotations

import time

import numpy as np

from retrieval.preprocess import open_image

from .candidates import build_search_index
from .resave import only_resave

SIDE = 32
LOW = 8
FLOOR = 0.90  # descriptor correlation of a turned copy to its original (measured: docs/dedup.md)
K = 3
# a heavy JPEG re-encode keeps its layout (quality 5: correlation >= 0.978 to its source on the
# generated set) where its descriptor can fall to cosine 0.29; such pairs are offered only when
# ``upright``'s test says the re-save test could prove them (docs/dedup.md)
UPRIGHT_FLOOR = 0.95
UPRIGHT_K = 8  # neighbours asked upright: a family's other copies share the layout too


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
    paths: list[str],
    floor: float = FLOOR,
    k: int = K,
    workers: int = 4,
    cache=None,
    progress=None,
    upright=only_resave,
):
    """(i, j, score) arrays: ``paths[i]`` turned resembles ``paths[j]`` upright (i != j), and stats;
    ``cache``: a ``factcache.FactCache`` holding the layouts of files unchanged since a run before;
    ``progress(done, total)`` over the files read; ``upright(path_i, path_j) -> bool``: also the
    pairs alike upright (at least ``UPRIGHT_FLOOR``) that it accepts (None: none)."""
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
    views = 4 if upright is not None else 3  # 3 per row: 90, 180, 270 (and upright: 0)
    turned = np.concatenate([descs[r][4 - views :] for r in rows])
    owner = np.repeat(rows, views)
    turn = np.tile(np.arange(4 - views, 4), len(rows))
    upright_of = np.stack([descs[r][0] for r in rows])
    index, info = build_search_index(upright_of)
    kk = min(max(k, UPRIGHT_K if upright is not None else 0) + 1, len(rows))
    _, ids = index.search(turned, kk)
    ids = np.where(ids >= 0, ids, 0)
    scores = np.einsum("qd,qkd->qk", turned, upright_of[ids])  # exact, whatever the search structure
    bound = np.where(turn == 0, UPRIGHT_FLOOR, floor)[:, None]
    near = np.arange(kk)[None, :] < np.where(turn == 0, UPRIGHT_K, k)[:, None] + 1
    hit = (scores >= bound) & (rows[ids] != owner[:, None]) & near
    qi, col = np.nonzero(hit)
    i, j, s, t = owner[qi], rows[ids[qi, col]], scores[qi, col].astype(np.float32), turn[qi]
    if upright is not None:  # the upright pairs only where the caller's test accepts them
        keep = np.array(
            [u != 0 or upright(paths[x], paths[y]) for u, x, y in zip(t.tolist(), i.tolist(), j.tolist())],
            dtype=bool,
        )
        i, j, s, t = i[keep], j[keep], s[keep], t[keep]
    a, b = np.minimum(i, j), np.maximum(i, j)
    key = a * n + b
    _, first = np.unique(key, return_index=True)
    stats = {
        "rotated_seconds": round(time.perf_counter() - t0, 3),
        "rotated_candidates": int((t[first] != 0).sum()),
        "rotated_unreadable": int((~ok).sum()),
        "rotated_cached": read_stats["layout_cached"],
    }
    if upright is not None:
        stats["upright_candidates"] = int((t[first] == 0).sum())
    return a[first], b[first], s[first], stats
