"""Copy tests: two pictures that show one scene (``align``: keypoints agree on one transform and the
pixels agree at ``verify.PIXEL_SIDE``) - are they one capture (a copy) or two (similar shots)?

More: docs/design-notes.md (``indexer.dedup.copytests``)."""

from __future__ import annotations

import numpy as np

from .align import cell_sums, clipped, memoised

COMPARE_SIDE = 384  # px: the resolution the copy tests compare at (at most)
GRID = 12  # cells per side
CELL_AGREE = 0.6  # a cell agrees at this band-pass correlation
WEAK_QUANTILE = 0.2
MOVE_DROP = 0.2  # a cell this far below the pair's median correlation ...
MOVE_ENERGY = 2.0  # ... with about as much detail on both sides (not a caption or logo added) moved
BAND = (1.0, 3.0)  # difference-of-Gaussians sigmas (px at the compare resolution)
SPILL_MARGIN = 0.015  # of the side: the footprint margin of ``spill``
# the detail test (``extra_detail``)
NARROW_OUTSIDE = 0.10  # the narrower picture shows (almost) nothing the wider lacks
WIDER_OUTSIDE = 0.02  # ... and the wider one shows some (a resized copy shows the same: not tested)
WIDER_SCENE = 0.45  # ... and its picture goes on around the narrower (``scene_around``)
AROUND_MARGIN = 0.03
AROUND_STD = 1.0
DENSER = 0.95  # the wider file has fewer than this many pixels per pixel of the narrower there
DETAIL_SIDE = 1024  # px: the files are read at most this big for it
MAX_EXTRA = 0.065  # a copy loses at most this share of its detail at its source's resolution


def mid_image(cv2, grey: np.ndarray, native: tuple[int, int]) -> np.ndarray:
    """``grey`` (the keypoint image) as float32 at most COMPARE_SIDE px and never above the file's own
    resolution (``native``: its (width, height)): an enlarged thumbnail is compared as it is."""
    h, w = grey.shape
    side = min(COMPARE_SIDE, max(native), max(h, w))
    s = side / max(h, w)
    if abs(s - 1) < 1e-3:
        return grey.astype(np.float32)
    return cv2.resize(
        grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    ).astype(np.float32)


def residual(cv2, src: np.ndarray, dst: np.ndarray, side: float) -> float:
    """Median reprojection error of ``src`` -> ``dst`` (the agreeing keypoints) under the
    least-squares homography through them, as a share of ``side``."""
    if len(src) < 8:
        return 1.0
    hom, _ = cv2.findHomography(src, dst, 0)
    if hom is None or abs(hom[2, 2]) < 1e-12:
        return 1.0
    proj = cv2.perspectiveTransform(src.reshape(-1, 1, 2).astype(np.float64), hom).reshape(-1, 2)
    return float(np.median(np.linalg.norm(proj - dst, axis=1))) / float(side)


def _to_mid(size: tuple[int, int], mid: np.ndarray) -> np.ndarray:
    h, w = mid.shape
    return np.diag([w / size[0], h / size[1], 1.0])


def _local_scale(m: np.ndarray, w: int, h: int) -> float:
    """Linear scale of the map ``m`` at the centre of a ``w`` x ``h`` frame (pixels of the target per pixel)."""
    c = np.array([w / 2, h / 2, 1.0])
    pts = np.array([c, c + [1, 0, 0], c + [0, 1, 0]]) @ m.T
    pts = pts[:, :2] / pts[:, 2:3]
    jac = np.stack([pts[1] - pts[0], pts[2] - pts[0]], axis=1)
    return float(np.sqrt(abs(np.linalg.det(jac))))


def aligned(cv2, a, b, t: np.ndarray):
    """(reference image, the other warped onto it, valid mask): ``a`` and ``b`` (verify.Features)
    at their compare resolution, in the frame of the one with fewer pixels for the scene; ``t``
    maps a's keypoint-image coordinates to b's."""
    return _aligned(cv2, a, b, t)[1:]


def _aligned(cv2, a, b, t: np.ndarray):
    """(the reference's Features, ``aligned``'s three)."""
    m = _to_mid(b.size, b.mid) @ t @ np.linalg.inv(_to_mid(a.size, a.mid))  # a-mid -> b-mid
    ref_f, other = a, b.mid
    if _local_scale(m, a.mid.shape[1], a.mid.shape[0]) < 1.0:  # b holds fewer pixels: its frame
        ref_f, other, m = b, a.mid, np.linalg.inv(m)
    warped, valid = warp_onto(cv2, ref_f.mid.shape, other, m)
    valid = cv2.erode(valid.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    return ref_f, ref_f.mid, warped, valid


def warp_onto(cv2, shape: tuple, other: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``other`` warped onto a picture of ``shape`` (h, w), its valid mask): ``m`` maps that
    picture's pixels to ``other``'s. A denser ``other`` is blurred to the picture's scale first."""
    h, w = shape
    scale = _local_scale(m / m[2, 2], w, h)
    if scale > 1.25:
        other = cv2.GaussianBlur(other, (0, 0), 0.5 * np.sqrt(scale * scale - 1))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(other, m, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    valid = cv2.warpPerspective(np.ones_like(other), m, (w, h), flags=flags, borderValue=0) > 0.99
    return warped, valid


def _band(cv2, img: np.ndarray, sigmas: tuple = BAND) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmas[0]) - cv2.GaussianBlur(img, (0, 0), sigmas[1])


def mid_band(cv2, f) -> np.ndarray:
    """``_band`` of ``f.mid`` (``f``: verify.Features), made once per photo: every pair and
    transform that aligns onto it reads the same (read-only)."""

    def make():
        out = _band(cv2, f.mid)
        out.setflags(write=False)
        return out

    return memoised(f, "mid_band", make)


def cell_correlations(
    cv2, ref: np.ndarray, warped: np.ndarray, valid: np.ndarray, ref_band: np.ndarray | None = None
) -> np.ndarray:
    """[cells, 2]: band-pass correlation and energy ratio (larger over smaller) of each textured cell
    (both pictures hold detail there) of the overlap; ``ref_band``: ``_band`` of ``ref`` if made."""

    if valid.sum() < 256:
        return np.zeros((0, 2))
    x = clipped(_band(cv2, ref) if ref_band is None else ref_band, valid)
    y = clipped(_band(cv2, warped), valid)
    xx, yy = x * x, y * y
    floor_x, floor_y = 0.05 * float(xx[valid].mean()), 0.05 * float(yy[valid].mean())
    sums = cell_sums(GRID, valid, xx, yy, x * y)
    if sums is None:
        return np.zeros((0, 2))
    size, nvalid, ex, ey, exy = sums
    n = np.maximum(1, nvalid)
    ok = (nvalid / size >= 0.5) & (ex / n >= floor_x) & (ey / n >= floor_y) & (ex > 0) & (ey > 0)
    ex, ey, exy = ex[ok], ey[ok], exy[ok]
    return np.stack([exy / np.sqrt(ex * ey), np.maximum(ex, ey) / np.minimum(ex, ey)], axis=1).reshape(-1, 2)


def local_agreement(cv2, a, b, t: np.ndarray) -> tuple[float, float, float]:
    """(``local``, ``weakest``, ``moved``) of ``a`` and ``b`` aligned by ``t`` (see the module doc)."""
    ref_f, ref, warped, valid = _aligned(cv2, a, b, t)
    cells = cell_correlations(cv2, ref, warped, valid, mid_band(cv2, ref_f))
    if len(cells) < 4:
        return 0.0, 0.0, 1.0
    corr, ratio = cells[:, 0], cells[:, 1]
    moved = (corr < np.median(corr) - MOVE_DROP) & (ratio < MOVE_ENERGY)
    return float((corr >= CELL_AGREE).mean()), float(np.quantile(corr, WEAK_QUANTILE)), float(moved.mean())


def _native_density(f) -> float:
    """The file's own pixels per pixel of its compare image (``f``: verify.Features)."""
    return max(f.native) / max(f.mid.shape) if f.native else 1.0


def extra_detail(cv2, a, b, t: np.ndarray, outside: tuple, read) -> float:
    """The share of the narrower picture's detail that the wider one's resolution cannot hold
    (lost on a trip down to it and back, at the narrower file's own resolution; 0.0: not tested).

    Tested only when one picture shows a part of the other (its own detail outside the other at
    most ``NARROW_OUTSIDE``, the other's at least ``WIDER_OUTSIDE`` - ``outside``: a's and b's
    shares, ``align.detail_outside`` - and the other's picture goes on around it: ``scene_around``
    at least ``WIDER_SCENE``) with more of the file's own
    pixels for that part (``DENSER``): a crop copy, even enlarged, holds no detail its source lacks;
    a zoomed re-take does. ``read(path, max_side)``: (grey, native) of a file."""
    if outside[0] <= NARROW_OUTSIDE and outside[1] >= WIDER_OUTSIDE:
        n, w, t_nw = a, b, t
    elif outside[1] <= NARROW_OUTSIDE and outside[0] >= WIDER_OUTSIDE:
        n, w, t_nw = b, a, np.linalg.inv(t)
    else:
        return 0.0
    if scene_around(cv2, w, n, np.linalg.inv(t_nw)) < WIDER_SCENE:
        return 0.0  # a canvas, fill or frame around the narrower: it is the source, not a crop
    m = _to_mid(w.size, w.mid) @ t_nw @ np.linalg.inv(_to_mid(n.size, n.mid))  # n-mid -> w-mid
    sigma = _local_scale(m / m[2, 2], n.mid.shape[1], n.mid.shape[0])  # w-mid px per n-mid px
    native_ratio = sigma * _native_density(w) / _native_density(n)  # w's file px per n's file px
    if native_ratio >= DENSER or n.path is None:
        return 0.0
    # the narrower file at its own resolution (at most DETAIL_SIDE): the share of its detail that
    # does not survive a trip down to the wider one's resolution and back
    try:
        narrow = read(n.path, min(max(n.native), DETAIL_SIDE))[0].astype(np.float32)
    except Exception:  # noqa: BLE001 - gone since: no evidence of a copy either
        return float("inf")
    native_ratio *= max(narrow.shape) / max(n.native)  # W's px per px of the image read
    if native_ratio >= DENSER:
        return 0.0
    return detail_lost(cv2, narrow, native_ratio)


def detail_lost(cv2, img: np.ndarray, ratio: float) -> float:
    """The share of ``img``'s detail lost on a trip down to ``ratio`` of its size and back (an
    enlarged picture loses almost none at the factor it was enlarged by)."""
    h, wd = img.shape
    down = cv2.resize(
        img, (max(1, round(wd * ratio)), max(1, round(h * ratio))), interpolation=cv2.INTER_AREA
    )
    back = cv2.resize(down, (wd, h), interpolation=cv2.INTER_CUBIC)
    detail = img - cv2.GaussianBlur(img, (0, 0), 4.0)
    core = (slice(4, -4), slice(4, -4))  # resampling edge effects
    total = float((detail[core] ** 2).mean())
    return float(((img - back)[core] ** 2).mean()) / total if total > 0 else 0.0


def _spill_one(cv2, a, b, t: np.ndarray) -> float:
    """Share of a's detail (band-pass energy at the compare resolution) outside b's footprint,
    widened by SPILL_MARGIN of the side (a radius: the band-pass response of a turned copy's
    filled corners reaches ~2 x BAND[1] px past their edge)."""
    m = _to_mid(b.size, b.mid) @ t @ np.linalg.inv(_to_mid(a.size, a.mid))  # a-mid -> b-mid
    h, w = a.mid.shape
    inside = cv2.warpPerspective(
        np.ones_like(b.mid), m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    margin = max(3, round(SPILL_MARGIN * max(h, w)))
    inside = (
        cv2.dilate((inside > 0.5).astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    )
    energy = np.abs(mid_band(cv2, a))
    edge = max(2, round(2 * BAND[1]))
    energy[:edge, :] = energy[-edge:, :] = 0
    energy[:, :edge] = energy[:, -edge:] = 0
    total = float(energy.sum())
    return float(energy[~inside].sum()) / total if total > 0 else 0.0


def spill(cv2, a, b, t: np.ndarray) -> float:
    """The smaller of the two pictures' shares of detail outside the other (``_spill_one``), at the
    compare resolution with a narrow margin: a copy is a part of its source or contains it, so one
    side is (almost) 0; a re-take framed a little differently shows a strip the other lacks on
    each side."""
    return min(_spill_one(cv2, a, b, t), _spill_one(cv2, b, a, np.linalg.inv(t)))


def scene_around(cv2, a, b, t: np.ndarray) -> float:
    """Does a's picture go on around b's footprint? The share of a's area beyond the footprint
    (widened by AROUND_MARGIN of the side, past the pasted edge) whose local contrast (5 x 5
    standard deviation at the compare resolution) is above ``AROUND_STD`` grey levels: a canvas,
    fill, border or frame around a copy is flat; the scene around a zoomed-in shot is not."""
    m = _to_mid(b.size, b.mid) @ t @ np.linalg.inv(_to_mid(a.size, a.mid))  # a-mid -> b-mid
    h, w = a.mid.shape
    inside = cv2.warpPerspective(
        np.ones_like(b.mid), m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    margin = max(3, round(AROUND_MARGIN * max(h, w)))
    beyond = ~(cv2.dilate((inside > 0.5).astype(np.uint8), np.ones((margin, margin), np.uint8)) > 0)
    beyond[:3, :] = beyond[-3:, :] = False
    beyond[:, :3] = beyond[:, -3:] = False
    if beyond.sum() < 0.02 * h * w:
        return 0.0
    mean = cv2.blur(a.mid, (5, 5))
    std = np.sqrt(np.maximum(cv2.blur(a.mid * a.mid, (5, 5)) - mean * mean, 0))
    return float((std[beyond] > AROUND_STD).mean())
