"""Comparing a group's keeper with one of its files, for the Duplicates page's compare view (no
Streamlit here): the file is aligned to the keeper's frame (ORB keypoints and a RANSAC homography,
mirrored if that fits better; stretched to the keeper's frame when nothing aligns), and a difference
image shows where the two disagree after a per-picture brightness normalisation (a grey or toned
copy shows little; another shot of the scene shows its moved parts). The files are read only through
their index rows (``Service.open_row``)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from .uploads import jpeg_bytes

COMPARE_PX = 1024  # the long side the two pictures are compared and shown at
MIN_MATCHES = 12
DIFFER_Z = 1.0  # a pixel differs when the normalised greys differ by this many standard deviations


@dataclass
class Comparison:
    keeper: bytes  # JPEG of the keeper, at most COMPARE_PX
    member: bytes  # JPEG of the other file in the keeper's frame (same size)
    diff: bytes  # JPEG: the keeper in grey, red where the two differ, blue where the other has nothing
    size: tuple[int, int]  # (width, height) of the three
    aligned: str  # how the other file was aligned, in words
    differ: float  # share of the overlap that differs
    overlap: float  # share of the keeper the other file covers


def _rgb(im: Image.Image, side: int) -> np.ndarray:
    im = im.convert("RGB")
    im.thumbnail((side, side), Image.LANCZOS)
    return np.asarray(im)


def _homography(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray | None, int]:
    """The homography taking ``b``'s pixels to ``a``'s (greys), and its inlier count."""
    orb = cv2.ORB_create(nfeatures=3000)
    ka, da = orb.detectAndCompute(a, None)
    kb, db = orb.detectAndCompute(b, None)
    if da is None or db is None or len(ka) < MIN_MATCHES or len(kb) < MIN_MATCHES:
        return None, 0
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(db, da, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]
    if len(good) < MIN_MATCHES:
        return None, 0
    src = np.float32([kb[m.queryIdx].pt for m in good])
    dst = np.float32([ka[m.trainIdx].pt for m in good])
    h, mask = cv2.findHomography(src, dst, cv2.RANSAC, 4.0)
    if h is None or mask is None:
        return None, 0
    return h, int(mask.sum())


def align(a_rgb: np.ndarray, b_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """``b`` in ``a``'s frame, the mask of where it lands, and how it was aligned."""
    ha, wa = a_rgb.shape[:2]
    ga = cv2.cvtColor(a_rgb, cv2.COLOR_RGB2GRAY)
    best = (None, 0, False)
    for mirrored in (False, True):
        b = b_rgb[:, ::-1] if mirrored else b_rgb
        h, n = _homography(ga, cv2.cvtColor(np.ascontiguousarray(b), cv2.COLOR_RGB2GRAY))
        if h is not None and n > best[1]:
            best = (h, n, mirrored)
        if best[1] >= 60:
            break
    h, n, mirrored = best
    if h is not None and n >= MIN_MATCHES:
        b = np.ascontiguousarray(b_rgb[:, ::-1] if mirrored else b_rgb)
        warped = cv2.warpPerspective(b, h, (wa, ha), flags=cv2.INTER_AREA)
        ones = np.full(b.shape[:2], 255, np.uint8)
        mask = cv2.warpPerspective(ones, h, (wa, ha), flags=cv2.INTER_NEAREST) > 0
        if mask.mean() > 0.02:
            return warped, mask, f"aligned by {n} keypoint matches{' (mirrored)' if mirrored else ''}"
    stretched = cv2.resize(b_rgb, (wa, ha), interpolation=cv2.INTER_AREA)
    return (
        stretched,
        np.ones((ha, wa), bool),
        "not aligned (too few matching keypoints): stretched to the frame",
    )


def _normalised(grey: np.ndarray, mask: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.5)
    vals = g[mask]
    return (g - vals.mean()) / (vals.std() + 1e-3) if vals.size else g


def compare(keeper: Image.Image, other: Image.Image, side: int = COMPARE_PX) -> Comparison:
    """The keeper, the other file aligned to it, and where they differ."""
    a = _rgb(keeper, side)
    b = _rgb(other, side)
    warped, mask, how = align(a, b)
    ga = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    gb = cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY)
    d = np.abs(_normalised(ga, mask) - _normalised(gb, mask))
    d[~mask] = 0
    heat = np.clip(d / (2 * DIFFER_Z), 0, 1)
    base = (ga.astype(np.float32) * 0.55)[..., None].repeat(3, axis=2)
    out = base * (1 - heat[..., None]) + np.array([255, 40, 40], np.float32) * heat[..., None]
    out[~mask] = out[~mask] * 0.5 + np.array([40, 90, 200], np.float32) * 0.5
    differ = float((d[mask] > DIFFER_Z).mean()) if mask.any() else 1.0
    return Comparison(
        jpeg_bytes(Image.fromarray(a)),
        jpeg_bytes(Image.fromarray(warped)),
        jpeg_bytes(Image.fromarray(out.clip(0, 255).astype(np.uint8))),
        (a.shape[1], a.shape[0]),
        how,
        differ,
        float(mask.mean()),
    )
