"""Geometry and pixel helpers of the verification (``verify``): the transforms a copy could have
(RANSAC similarity, affine, homography), the convex-hull cover of the agreeing keypoints, and the
aligned band-pass comparison at ``verify.PIXEL_SIDE`` (the scene test: a copy and a similar shot
both pass it; ``copytests`` tells them apart)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np


@dataclass
class Features:
    """One photo's verification features, computed once per file per run (``verify.Verifier``)."""

    points: np.ndarray  # [n, 2] float32 pixel positions (in the ORB image)
    descriptors: np.ndarray  # [n, 32] uint8 ORB descriptors
    size: tuple[int, int]  # (width, height) of the ORB image
    small: np.ndarray  # grey float32 image at most PIXEL_SIDE px a side (same orientation)
    mid: np.ndarray = None  # grey float32 image at the copy tests' resolution (copytests.mid_image)
    capture: object = None  # capture.Capture of the file's EXIF, or None
    native: tuple = None  # the file's own (width, height)
    path: str = None
    mirrored: bool = False
    # what the pair tests derive from this photo alone, made once per photo (``small_band``...)
    memo: dict = field(default_factory=dict, repr=False, compare=False)


REPROJ_PX = 8.0
# findHomography's RANSAC iterations at most (OpenCV's default 2000; see docs/dedup.md)
HOMOGRAPHY_ITERS = 500


def ratio_matches(query: np.ndarray, train: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, train rows) of the binary descriptors' matches passing Lowe's ratio test: the
    nearest train descriptor (Hamming) closer than ``ratio`` times the second nearest, in query
    order. The same matches as OpenCV's ``BFMatcher(NORM_HAMMING).knnMatch(query, train, k=2)``
    (a match passing the test is a strict nearest neighbour, so ties cannot change it), about 5x
    faster (FAISS's 256-bit popcount kernels); one OpenMP thread: the callers run in parallel."""
    import faiss

    if len(query) == 0 or len(train) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = faiss.IndexBinaryFlat(train.shape[1] * 8)
    index.add(np.ascontiguousarray(train, dtype=np.uint8))
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # this thread only (an OpenMP setting is per thread)
    try:
        dist, ids = index.search(np.ascontiguousarray(query, dtype=np.uint8), 2)
    finally:
        faiss.omp_set_num_threads(threads)
    good = dist[:, 0] < ratio * dist[:, 1]
    return np.nonzero(good)[0].astype(np.int64), ids[good, 0].astype(np.int64)


def hull_share(points: np.ndarray, size: tuple[int, int]) -> float:
    """Area of the convex hull of ``points`` as a share of a ``size`` image."""
    if len(points) < 3:
        return 0.0
    import cv2

    hull = cv2.convexHull(points.astype(np.float32))
    return float(cv2.contourArea(hull)) / float(size[0] * size[1])


def fits(cv2, src: np.ndarray, dst: np.ndarray, needed: int = 0) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """(3x3 transform, inlier mask, is a homography) of the transforms a copy could have that RANSAC finds between the
    matched points: similarity, affine (bounded aspect change), homography (bounded perspective). The
    homography (the slowest fit) is left out when the similarity or affine found fewer than ``needed``
    inliers: the pair is judged by its similarity/affine count, too low to align by whatever it finds."""
    out = []
    sim, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=REPROJ_PX)
    if sim is not None and mask is not None and abs(np.linalg.det(sim[:, :2])) > 1e-3:
        out.append((np.vstack([sim, [0, 0, 1]]), mask.ravel().astype(bool), False))
    aff, mask = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=REPROJ_PX)
    if aff is not None and mask is not None and moderate(aff):
        out.append((np.vstack([aff, [0, 0, 1]]), mask.ravel().astype(bool), False))
    if len(src) >= 8 and (not out or max(int(f[1].sum()) for f in out) >= needed):
        hom, mask = cv2.findHomography(src, dst, cv2.RANSAC, REPROJ_PX, maxIters=HOMOGRAPHY_ITERS)
        if hom is not None and mask is not None and plausible(hom):
            out.append((hom / hom[2, 2], mask.ravel().astype(bool), True))
    return out


def moderate(aff: np.ndarray) -> bool:
    """An affine map a copy could have: orientation kept, aspect changed by at most 2x."""
    sv = np.linalg.svd(aff[:, :2], compute_uv=False)
    return bool(np.linalg.det(aff[:, :2]) > 1e-3 and sv[1] > 0 and sv[0] / sv[1] <= 2.0)


def plausible(hom: np.ndarray) -> bool:
    """A homography a copy could have: orientation kept, no extreme perspective."""
    if abs(hom[2, 2]) < 1e-9:
        return False
    h = hom / hom[2, 2]
    det = np.linalg.det(h[:2, :2])
    return bool(det > 1e-4 and abs(h[2, 0]) < 2e-3 and abs(h[2, 1]) < 2e-3)


def _footprint(cv2, a: Features, b: Features, t: np.ndarray) -> np.ndarray:
    """b's footprint in a's small frame (bool), widened by 4% of the side."""
    ah, aw = a.small.shape
    bh, bw = b.small.shape
    sa = np.diag([aw / a.size[0], ah / a.size[1], 1.0])
    sb = np.diag([bw / b.size[0], bh / b.size[1], 1.0])
    m = sb @ t @ np.linalg.inv(sa)
    inside = cv2.warpPerspective(
        np.ones_like(b.small), m, (aw, ah), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    margin = max(3, round(0.04 * max(ah, aw)))
    return cv2.dilate((inside > 0.5).astype(np.uint8), np.ones((margin, margin), np.uint8)) > 0


def memoised(f: Features, key, make):
    """``f.memo[key]``, made by ``make()`` on first use: what a photo's pair tests derive from it alone."""
    out = f.memo.get(key)
    if out is None:
        out = f.memo[key] = make()
    return out


def small_band(cv2, f: Features) -> np.ndarray:
    """``band`` of ``f.small``, made once per photo (every pair and transform reads the same)."""
    return memoised(f, "band", lambda: band(cv2, f.small))


def _detail(cv2, f: Features) -> tuple[np.ndarray, float]:
    """(|band| of ``f.small`` without its 2 px edge, its sum), made once per photo."""

    def make():
        energy = np.abs(small_band(cv2, f))
        energy[:2, :] = energy[-2:, :] = 0
        energy[:, :2] = energy[:, -2:] = 0
        return energy, float(energy.sum())

    return memoised(f, "detail", make)


def detail_outside(cv2, a: Features, b: Features, t: np.ndarray) -> float:
    """Share of a's detail (band-pass energy) lying clearly outside b's footprint in a's frame."""
    inside = _footprint(cv2, a, b, t)
    energy, total = _detail(cv2, a)
    return float(energy[~inside].sum()) / total if total > 0 else 0.0


def clipped(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``x`` inside ``valid`` (0 elsewhere), clipped at 3 robust standard deviations: the step at a
    border, frame or canvas edge must not outweigh the picture's own detail."""
    x = np.where(valid, x, 0.0)
    sigma = 1.4826 * float(median(np.abs(x[valid]))) if valid.any() else 0.0
    return np.clip(x, -3 * sigma, 3 * sigma) if sigma > 0 else x


def median(v: np.ndarray):
    """``np.median`` of a 1-D array without NaN, the same value (the mean of the two middle order
    statistics, in the array's dtype), about 3x faster: one partition, the lower middle its max."""
    n = v.size
    if n < 2:
        return np.median(v)
    k = n // 2
    part = np.partition(v, k)
    if n % 2:
        return np.mean(part[k : k + 1])
    return np.mean(np.array([part[:k].max(), part[k]], dtype=part.dtype))


def band(cv2, img: np.ndarray) -> np.ndarray:
    """Detail without layout: difference of Gaussians (sigma 0.7 and 2.5 px at PIXEL_SIDE)."""
    return cv2.GaussianBlur(img, (0, 0), 0.7) - cv2.GaussianBlur(img, (0, 0), 2.5)


def _small_map(a: Features, b: Features, t: np.ndarray) -> np.ndarray:
    """``t`` (a's ORB image -> b's) as the map of a's small image to b's."""
    ah, aw = a.small.shape
    bh, bw = b.small.shape
    sa = np.diag([aw / a.size[0], ah / a.size[1], 1.0])
    sb = np.diag([bw / b.size[0], bh / b.size[1], 1.0])
    return sb @ t @ np.linalg.inv(sa)


def _whole_pixels(m: np.ndarray, shape_a: tuple, shape_b: tuple):
    """A key of ``m`` where it maps pixels onto whole pixels (frame to frame: upright, or turned by
    90, 180 or 270 degrees; integer entries within 1e-9, no perspective); else None. The warp then
    only moves b's pixels - it depends on b alone - and the valid mask on the shapes alone."""
    r = np.round(m)
    if np.abs(m - r).max() > 1e-9 or r[2].tolist() != [0.0, 0.0, 1.0]:
        return None
    return tuple(int(v) for v in r.ravel()), tuple(shape_a), tuple(shape_b)


def _exact(key) -> np.ndarray:
    return np.array(key[0], np.float64).reshape(3, 3)


@lru_cache(maxsize=64)
def _frame_valid(key) -> np.ndarray:
    """The valid mask of a whole-pixel map (``_whole_pixels``' key): one per map and shapes, shared
    by every pair (read-only)."""
    import cv2

    valid = _warp_small(cv2, np.ones(key[2], np.float32), _exact(key), key[1])[1]
    valid.setflags(write=False)
    return valid


def _warp_small(cv2, img: np.ndarray, m: np.ndarray, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(``img`` warped by ``m`` onto a ``shape`` frame, the valid mask eroded by 2 px)."""
    h, w = shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(img, m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    valid = cv2.warpPerspective(np.ones_like(img), m, (w, h), flags=flags, borderValue=0)
    return warped, cv2.erode((valid > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def _side(x: np.ndarray, valid: np.ndarray, grid: int) -> tuple:
    """(x, its detail floor, ``cell_sums`` of x*x) of one side's clipped band."""
    xx = x * x
    return x, 0.05 * float(xx[valid].mean()), cell_sums(grid, valid, xx)


def pixel_agreement(
    cv2, a: Features, b: Features, t: np.ndarray, grid: int = 6
) -> tuple[float, float, float]:
    """(correlation, share of agreeing cells, overlap share) of ``a`` and ``b`` warped onto it.

    ``t`` maps a's ORB-image coordinates to b's; both small images are scaled copies of those.
    Frame to frame (``_whole_pixels``), each side's part is made once per photo and map (the same
    arrays, so the same result)."""
    m = _small_map(a, b, t)  # a-small -> b-small
    key = _whole_pixels(m, a.small.shape, b.small.shape)
    if key is None:
        warped, valid = _warp_small(cv2, b.small, m, a.small.shape)
    else:  # the exact integer map: the same warp (OpenCV samples whole pixels either way)
        valid = _frame_valid(key)
    overlap = float(valid.mean())
    if valid.sum() < 64:
        return 0.0, 0.0, overlap
    if key is None:
        sx = _side(clipped(small_band(cv2, a), valid), valid, grid)
        sy = _side(clipped(band(cv2, warped), valid), valid, grid)
    else:  # valid depends on the map and shapes alone: a's side is a's, b's side is b's

        def other():
            warped = _warp_small(cv2, b.small, _exact(key), a.small.shape)[0]
            return _side(clipped(band(cv2, warped), valid), valid, grid)

        sx = memoised(a, ("x", key), lambda: _side(clipped(small_band(cv2, a), valid), valid, grid))
        sy = memoised(b, ("y", key), other)
    (x, floor_x, sums_x), (y, floor_y, sums_y) = sx, sy
    # compared where both pictures have detail: a sky cell says nothing either way, and a cell
    # where only one has detail (the edge of a border or frame one copy added, a caption over the
    # other's sky) is not a disagreement about the picture
    if sums_x is None:
        return 0.0, 0.0, overlap
    size, nvalid, ex = sums_x
    ey, exy = sums_y[2], cell_total(grid, x * y)
    n = np.maximum(1, nvalid)
    ok = (nvalid / size >= 0.5) & (ex / n >= floor_x) & (ey / n >= floor_y) & (ex > 0) & (ey > 0)
    textured = int(ok.sum())
    agree = int((exy[ok] / np.sqrt(ex[ok] * ey[ok]) >= 0.5).sum()) if textured else 0
    sxy, sxx, syy = float(exy[ok].sum()), float(ex[ok].sum()), float(ey[ok].sum())
    pixel = sxy / np.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0
    return float(pixel), (agree / textured if textured else 0.0), overlap


def cell_sums(grid: int, valid: np.ndarray, *arrays):
    """(cell sizes, valid pixels per cell, each array's sum per cell) over a ``grid`` x ``grid``
    split of the frame (``np.array_split`` rows and columns; empty splits left out), row-major;
    None when the frame has no cell."""
    h, w = valid.shape
    rows, cols = _splits(h, grid), _splits(w, grid)
    if not rows or not cols:
        return None
    size = np.outer(np.diff(rows + [h]), np.diff(cols + [w])).ravel().astype(np.float64)
    return (size, *(_total(a, rows, cols) for a in (valid, *arrays)))


def cell_total(grid: int, a: np.ndarray) -> np.ndarray:
    """``a``'s sum per cell, as ``cell_sums`` gives it (a frame with cells)."""
    return _total(a, _splits(a.shape[0], grid), _splits(a.shape[1], grid))


def _total(a: np.ndarray, rows: list, cols: list) -> np.ndarray:
    return np.add.reduceat(np.add.reduceat(np.asarray(a, np.float64), rows, axis=0), cols, axis=1).ravel()


@lru_cache(maxsize=256)
def _splits(n: int, grid: int) -> list[int]:
    """The first index of each non-empty part of ``np.array_split(range(n), grid)``."""
    return sorted({int(r[0]) for r in np.array_split(np.arange(n), grid) if len(r)})
