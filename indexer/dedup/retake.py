"""Re-take tests: what two captures of one scene show and a copy cannot - for a pair the other copy
tests (``copytests``) could not tell from a copy (issue 24: a poster re-shot, a lava field under
moving clouds, optical-flow frames with toys moved by a few pixels).

* ``crossed``: each picture shows real picture (local contrast) beyond the other's footprint. A copy
  is a part of its source or contains it (a crop, a border, a canvas): one side shows nothing the
  other lacks but flat fill; a re-take framed a little differently shows a strip on each side.
* ``relit``: the light changed in places. After the best global tone curve from one picture to the
  other times a radial gain about the frame's centre (a colour or tone edit is one curve, a
  vignette a radial gain), the 90% quantile of the cells' remaining low-pass
  difference (cells where both pictures hold about as much detail: not a caption pasted on).
  A glare that moved, a cloud's shadow, a lamp: a copy cannot do that.
* ``shifted``: moving content. The pair aligned at the smaller picture's own resolution (at most
  ``SHIFT_SIDE``), each 32 px cell's residual shift by phase correlation, one homography through
  them taken out: the share of cells whose neighbourhood moved by more than ``SHIFT_PX`` px
  together. A copy's cells all sit within a fraction of a pixel; frames of a scene where something
  moved (toys, leaves, water, people) do not. Noise moves single cells at random, so a cell counts
  only by the median of its 3 x 3 neighbourhood.

More: docs/dedup.md (the rule since issue 24)."""

from __future__ import annotations

import numpy as np

from .align import cell_sums
from .copytests import GRID, _band, _local_scale, _to_mid, aligned, warp_onto

CROSS_MARGIN = 0.01  # of the side: past the other's footprint (resampling, JPEG ringing at its edge)
CROSS_STD = 1.0  # grey levels of 5 x 5 local contrast: picture, not flat fill
TONE_SIGMA = 3.0  # px at the compare resolution: the low-pass the light is compared on
TONE_BINS = 32
GAIN_ROUNDS = 2  # tone curve and radial gain fitted in turn
TONE_SAMPLES = 8000  # pixels they are fitted on
TONE_QUANTILE = 0.9
TONE_ENERGY = 2.0  # cells where one side holds this much more detail (a caption, a logo) are left out
SHIFT_SIDE = 1024  # px: the smaller picture is read at its own resolution, at most this
SHIFT_CELL = 32  # px
SHIFT_BAND = (0.7, 4.0)
SHIFT_RESPONSE = 0.2  # phase correlation peak below this: the cell says nothing
SHIFT_PX = 0.5  # a neighbourhood moved by more than this (px at the read resolution)


def _beyond(cv2, a, b, t: np.ndarray) -> float:
    """Share of a's compare image that lies beyond b's footprint (widened by CROSS_MARGIN) and holds
    picture (local contrast above CROSS_STD)."""
    m = _to_mid(b.size, b.mid) @ t @ np.linalg.inv(_to_mid(a.size, a.mid))  # a-mid -> b-mid
    h, w = a.mid.shape
    inside = cv2.warpPerspective(
        np.ones_like(b.mid), m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    r = max(3, round(CROSS_MARGIN * max(h, w)))
    kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    beyond = ~(cv2.dilate((inside > 0.5).astype(np.uint8), kernel) > 0)
    beyond[:3, :] = beyond[-3:, :] = False
    beyond[:, :3] = beyond[:, -3:] = False
    if not beyond.any():
        return 0.0
    mean = cv2.blur(a.mid, (5, 5))
    std = np.sqrt(np.maximum(cv2.blur(a.mid * a.mid, (5, 5)) - mean * mean, 0))
    return float((beyond & (std > CROSS_STD)).mean())


def crossed(cv2, a, b, t: np.ndarray) -> float:
    """The smaller of the two pictures' shares of picture beyond the other (``_beyond``); ``t``
    maps a's keypoint image to b's."""
    return min(_beyond(cv2, a, b, t), _beyond(cv2, b, a, np.linalg.inv(t)))


def _tone_curve(x: np.ndarray, y: np.ndarray, order: np.ndarray | None = None):
    """The global tone curve from ``x`` to ``y`` (1-D samples): (x's and y's medians in each of
    TONE_BINS quantile bins of x), for ``np.interp``; ``order``: ``np.argsort(x, kind="stable")``
    when the caller has it (the same x for every round of ``_lit``)."""
    order = np.argsort(x, kind="stable") if order is None else order
    xs, ys = x[order], y[order]
    # np.array_split's bins: the first n % TONE_BINS hold one more; each bin's median at once
    n = len(xs)
    q, r = divmod(n, TONE_BINS)
    cx, cy = [], []
    for start, count, size in ((0, r, q + 1), (r * (q + 1), TONE_BINS - r, q)):
        if count and size:
            block = slice(start, start + count * size)
            cx.append(xs[block].reshape(count, size)[:, size // 2].astype(np.float64))
            cy.append(np.median(ys[block].reshape(count, size), axis=1).astype(np.float64))
    cx, first = np.unique(np.concatenate(cx), return_index=True)
    return cx, np.concatenate(cy)[first]


def _lit(x: np.ndarray, y: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``y`` at the valid pixels as a global tone curve of ``x`` times a radial gain about the
    frame's centre (1, r^2, r^4: a vignette is an edit of the whole picture; a glare, a shadow or
    a cloud that moved is not). A linear gain (a graduated filter) is left out: it explained most
    of the poster re-shot's change of light too (relit 0.33 -> 0.17), so such an edit is a
    similar shot. Fitted on at most TONE_SAMPLES pixels."""
    h, w = x.shape
    rows, cols = np.nonzero(valid)
    u, v = cols / max(1, w - 1) - 0.5, rows / max(1, h - 1) - 0.5
    r2 = u * u + v * v
    basis = np.stack([np.ones_like(u), r2, r2 * r2], axis=1)
    xs, ys = x[valid], y[valid]
    fit = slice(None, None, max(1, len(xs) // TONE_SAMPLES))
    order = np.argsort(xs[fit], kind="stable")
    gain = np.ones_like(ys)
    for _ in range(GAIN_ROUNDS):
        curve = np.interp(xs[fit], *_tone_curve(xs[fit], ys[fit] / gain[fit], order))
        coef, *_ = np.linalg.lstsq(basis[fit] * curve[:, None], ys[fit], rcond=None)
        gain = np.clip(basis @ coef, 0.2, 5.0)
    return np.interp(xs, *_tone_curve(xs[fit], ys[fit] / gain[fit], order)) * gain


def relit(cv2, a, b, t: np.ndarray) -> float:
    """``relit`` of ``a`` and ``b`` aligned by ``t`` (see the module doc): the better of the two
    directions (a tone edit that clipped is a curve one way only), in units of the target's spread."""
    ref, warped, valid = aligned(cv2, a, b, t)
    if valid.sum() < 256:
        return 0.0
    # the low-pass images hold nothing a grid of every other pixel misses
    half = (slice(None, None, 2), slice(None, None, 2))
    low = [cv2.GaussianBlur(x, (0, 0), TONE_SIGMA)[half] for x in (ref, warped)]
    bx, by = _band(cv2, ref)[half], _band(cv2, warped)[half]
    valid = valid[half]
    size, nvalid, ex, ey = cell_sums(GRID, valid, bx * bx * valid, by * by * valid)
    ratio = np.maximum(ex, ey) / np.maximum(np.minimum(ex, ey), 1e-9)
    ok = (nvalid / size >= 0.5) & (ratio < TONE_ENERGY)
    if ok.sum() < 4:
        return 0.0
    best = None
    for x, y in ((low[0], low[1]), (low[1], low[0])):
        pred = np.zeros_like(y)
        pred[valid] = _lit(x, y, valid)
        spread = float(np.std(y[valid])) or 1.0
        diff = np.where(valid, np.abs(y - pred) / spread, 0.0)
        dsum = cell_sums(GRID, valid, diff)[2]
        q = float(np.quantile(dsum[ok] / nvalid[ok], TONE_QUANTILE))
        best = q if best is None else min(best, q)
    return 0.0 if best is None else best


def _scale_to_native(f) -> np.ndarray:
    """Native pixels -> f's keypoint image."""
    return np.diag([f.size[0] / f.native[0], f.size[1] / f.native[1], 1.0])


def _pair_at_native(cv2, a, b, t: np.ndarray, read):
    """(reference, the other warped onto it, valid mask): the picture with fewer pixels for the
    scene read at its own resolution (at most SHIFT_SIDE), the other at 1.5 of its pixels per pixel."""
    m = np.linalg.inv(_scale_to_native(b)) @ t @ _scale_to_native(a)  # a-native -> b-native
    if _local_scale(m / m[2, 2], *a.native) < 1.0:
        a, b, m = b, a, np.linalg.inv(m)
    m = m / m[2, 2]
    ref = read(a.path, min(max(a.native), SHIFT_SIDE))[0].astype(np.float32)
    sr = max(ref.shape) / max(a.native)
    scale = _local_scale(m, *a.native)  # b-native px per a-native px (>= 1)
    side = round(max(b.native) * min(1.0, 1.5 * sr / scale))  # 1.5 px of the other per ref px
    other = read(b.path, max(64, min(side, 2 * SHIFT_SIDE)))[0]
    other = other.astype(np.float32)
    so = max(other.shape) / max(b.native)
    mm = np.diag([so, so, 1.0]) @ m @ np.diag([1 / sr, 1 / sr, 1.0])  # ref px -> other px
    return (ref, *warp_onto(cv2, ref.shape, other, mm))


def _cell_shifts(cv2, ref, warped, valid):
    """(cell grid positions [n, 2] as (column, row), cell centres [n, 2], shifts [n, 2]) of the
    textured, confident cells."""
    c = SHIFT_CELL
    x, y = _band(cv2, ref, SHIFT_BAND), _band(cv2, warped, SHIFT_BAND)
    floor_x, floor_y = 0.05 * float((x[valid] ** 2).mean()), 0.05 * float((y[valid] ** 2).mean())
    win = cv2.createHanningWindow((c, c), cv2.CV_32F)
    grid, centres, shifts = [], [], []
    h, w = ref.shape
    nr, nc = h // c, w // c
    # which cells can count, in blocks: whole inside the overlap, and (in float64, with a margin far
    # above float32's rounding) textured on both sides; only cells near a floor are measured as
    # before, one by one, so the cells kept are exactly those the per-cell test keeps
    blocks = (slice(0, nr * c), slice(0, nc * c))
    inside = valid[blocks].reshape(nr, c, nc, c).all(axis=(1, 3))
    energy = [(v[blocks].astype(np.float64) ** 2).reshape(nr, c, nc, c).mean(axis=(1, 3)) for v in (x, y)]
    low = [e < f * (1 - 1e-4) for e, f in zip(energy, (floor_x, floor_y))]
    near = [np.abs(e - f) <= f * 1e-4 for e, f in zip(energy, (floor_x, floor_y))]
    for i, j in zip(*np.nonzero(inside & ~low[0] & ~low[1])):
        r0, c0 = int(i) * c, int(j) * c
        cx, cy = x[r0 : r0 + c, c0 : c0 + c], y[r0 : r0 + c, c0 : c0 + c]
        if (near[0][i, j] and float((cx * cx).mean()) < floor_x) or (
            near[1][i, j] and float((cy * cy).mean()) < floor_y
        ):
            continue
        (dx, dy), response = cv2.phaseCorrelate(np.ascontiguousarray(cx), np.ascontiguousarray(cy), win)
        if response >= SHIFT_RESPONSE:
            grid.append((c0 // c, r0 // c))
            centres.append((c0 + c / 2, r0 + c / 2))
            shifts.append((dx, dy))
    return (
        np.array(grid).reshape(-1, 2),
        np.float64(centres).reshape(-1, 2),
        np.float64(shifts).reshape(-1, 2),
    )


def shifted(cv2, a, b, t: np.ndarray, read) -> float:
    """``shifted`` of ``a`` and ``b`` aligned by ``t`` (see the module doc); ``read(path, side)``:
    (grey, native) of a file as the pair sees it (mirrored where it is)."""
    if a.path is None or b.path is None or not a.native or not b.native:
        return 0.0
    try:
        grid, pts, shift = _cell_shifts(cv2, *_pair_at_native(cv2, a, b, t, read))
    except Exception:  # noqa: BLE001 - a file gone since: no evidence of a copy either
        return 1.0
    if len(pts) < 8:
        return 0.0  # too little texture to tell
    keep = np.ones(len(pts), bool)
    for _ in range(3):  # one homography through the cells' shifts, outliers left out
        hom, _ = cv2.findHomography(pts[keep], (pts + shift)[keep], 0)
        if hom is None:
            return 0.0
        resid = pts + shift - cv2.perspectiveTransform(pts.reshape(-1, 1, 2), hom).reshape(-1, 2)
        norm = np.linalg.norm(resid, axis=1)
        keep = norm <= max(0.3, 2.5 * float(np.median(norm)))
        if keep.sum() < 8:
            return 0.0
    count, median = _neighbourhood_medians(grid, resid)
    moved = sum(1 for k, m in zip(count, median) if k >= 4 and np.linalg.norm(m) > SHIFT_PX)
    return moved / len(grid)


def _neighbourhood_medians(grid: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each cell of ``grid`` ((column, row) per row of ``values`` [n, 2]): how many of its 3 x 3
    neighbourhood's cells have a value, and their median (np.median's: the middle one, or the mean
    of the two middle ones), per component."""
    cols, rows = grid[:, 0].astype(np.int64), grid[:, 1].astype(np.int64)
    padded = np.full((rows.max() + 3, cols.max() + 3, 2), np.nan)
    padded[rows + 1, cols + 1] = values
    present = np.zeros(padded.shape[:2], bool)
    present[rows + 1, cols + 1] = True
    where = [(rows + 1 + j, cols + 1 + i) for i in (-1, 0, 1) for j in (-1, 0, 1)]
    near = np.stack([padded[w] for w in where], axis=1)  # [n, 9, 2], NaN where no cell
    count = np.stack([present[w] for w in where], axis=1).sum(axis=1)
    ordered = np.sort(near, axis=1)  # absent (NaN) last
    n = np.arange(len(grid))
    low, high = ordered[n, np.maximum(count - 1, 0) // 2], ordered[n, count // 2]
    median = np.where((count % 2 == 1)[:, None], high, (low + high) / 2)
    # a NaN among the values present makes np.median's answer NaN; here it would sort with the absent
    median[np.isnan(near).sum(axis=1) > 9 - count[:, None]] = np.nan
    return count, median
