"""Dedup's per-photo memos (issue 24, speed): what a pair test derives from one photo alone is made
once per photo, and the answer is the one computed pair by pair, to the last bit.

* ``align.median``: ``np.median``'s value with one partition.
* ``align.pixel_agreement`` frame to frame (upright, turned by 90, 180 and 270 degrees): the warp of
  the other picture, the valid mask and each side's clipped band are made once per photo and map.
* ``copytests.mid_band``: the band-pass of a photo's compare image, made once for every pair and
  transform that aligns onto it (``local_agreement``, ``spill``).
* ``align.HOMOGRAPHY_ITERS``: findHomography's RANSAC stops at 500 iterations (OpenCV: 2000); a
  copy's fit converges long before (the same fit), a repetitive pattern's costs a quarter.

Real photos (the samples' pixabay pictures), cut to one aspect, some turned to portrait."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES, keystoned
from PIL import Image

from indexer.dedup import align, copytests
from indexer.dedup.rule import Evidence
from indexer.dedup.verify import RATIO, Verifier

PIX = SAMPLES / "pixabay"


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 4096, 4097, 12288])
def test_median_is_numpys_to_the_bit(n):
    rng = np.random.default_rng(n)
    for v in (
        rng.normal(size=n).astype(np.float32),
        np.abs(rng.normal(size=n)).astype(np.float32),
        rng.integers(0, 4, n).astype(np.float32),  # ties around the middle
        rng.normal(size=n),  # float64
    ):
        got, want = align.median(v), np.median(v)
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Landscape 4:3 photos, and portrait ones (turned by 90: the swapped aspect)."""
    out = tmp_path_factory.mktemp("memo")
    paths = []
    for n, name in enumerate(("dog01", "cat01", "bird01", "airplane01", "car01", "flower01")):
        im = Image.open(PIX / f"{name}.jpg").convert("RGB")
        w, h = im.size
        side = min(w // 4, h // 3)
        im = im.crop((0, 0, 4 * side, 3 * side))
        if n % 3 == 2:
            im = im.transpose(Image.Transpose.ROTATE_90)
        im.save(out / f"{name}.jpg", quality=90)
        paths.append(str(out / f"{name}.jpg"))
    return paths


def _fresh(paths):
    v = Verifier(cache_size=64)
    return v, [v.features_of(p) for p in paths]


def test_frame_to_frame_made_once_per_photo_is_the_pair_by_pair_answer(photos, monkeypatch):
    v, feats = _fresh(photos)
    pairs = [(a, b) for a in range(len(feats)) for b in range(len(feats)) if a != b]
    memo = [v._frame_to_frame(feats[a], feats[b], Evidence()) for a, b in pairs]
    again = [v._frame_to_frame(feats[a], feats[b], Evidence()) for a, b in pairs]
    keys = [k for f in feats for k in f.memo if isinstance(k, tuple)]
    turns = {(m[0], m[1], m[3], m[4]) for m in (k[1][0] for k in keys)}  # the linear parts
    assert len(turns) == 4  # upright, 90, 180 and 270: every frame map took the per-photo path
    assert all(ev.frame for ev in memo)  # every pair had one aspect or the swapped one
    monkeypatch.setattr(align, "_whole_pixels", lambda *a: None)
    v2, feats2 = _fresh(photos)
    plain = [v2._frame_to_frame(feats2[a], feats2[b], Evidence()) for a, b in pairs]
    assert not any(isinstance(k, tuple) for f in feats2 for k in f.memo)
    assert memo == plain == again
    assert len({ev.pixel for ev in plain}) > len(pairs) // 2  # real, differing measurements


def test_an_aligned_pair_off_whole_pixels_takes_the_warp(photos):
    _, (a, b, *_) = _fresh(photos[:2])
    t = np.array([[1.01, 0.02, 3.3], [-0.01, 0.99, 1.7], [0.0, 0.0, 1.0]])
    assert align._whole_pixels(align._small_map(a, b, t), a.small.shape, b.small.shape) is None
    first = align.pixel_agreement(v_cv2(), a, b, t)
    assert first == align.pixel_agreement(v_cv2(), a, b, t)
    assert not any(isinstance(k, tuple) for k in a.memo)


def v_cv2():
    import cv2

    return cv2


def test_local_agreement_and_spill_with_the_band_made_once_are_the_same(photos):
    cv2 = v_cv2()
    _, feats = _fresh(photos[:2])
    a, b = feats
    ts = [
        np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]]),
        np.array([[0.8, 0.05, 10.0], [-0.05, 0.8, 4.0], [1e-5, 0.0, 1.0]]),
        np.array([[1.25, 0.0, -20.0], [0.0, 1.25, -8.0], [0.0, 0.0, 1.0]]),
    ]
    for t in ts:
        ref, warped, valid = copytests.aligned(cv2, a, b, t)
        cells = copytests.cell_correlations(cv2, ref, warped, valid)  # the band made here
        corr, ratio = cells[:, 0], cells[:, 1]
        if len(cells) >= 4:
            moved = (corr < np.median(corr) - copytests.MOVE_DROP) & (ratio < copytests.MOVE_ENERGY)
            want = (
                float((corr >= copytests.CELL_AGREE).mean()),
                float(np.quantile(corr, copytests.WEAK_QUANTILE)),
                float(moved.mean()),
            )
        else:
            want = (0.0, 0.0, 1.0)
        assert copytests.local_agreement(cv2, a, b, t) == want
    assert "mid_band" in a.memo or "mid_band" in b.memo
    band = copytests.mid_band(cv2, a)
    assert not band.flags.writeable
    assert np.array_equal(band, copytests._band(cv2, a.mid))


def test_a_copys_homography_converges_before_the_iteration_cap(tmp_path, monkeypatch):
    cv2 = v_cv2()
    assert align.HOMOGRAPHY_ITERS == 500
    found = {}
    for name in ("dog01", "bird01", "car01"):
        im = Image.open(PIX / f"{name}.jpg").convert("RGB")
        im.save(tmp_path / "a.jpg", quality=92)
        keystoned(im).save(tmp_path / "b.jpg", quality=85)
        _, (a, b) = _fresh([str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")])
        qi, ti = align.ratio_matches(a.descriptors, b.descriptors, RATIO)
        src, dst = a.points[qi], b.points[ti]
        for iters in (500, 2000):
            monkeypatch.setattr(align, "HOMOGRAPHY_ITERS", iters)
            found[name, iters] = align.fits(cv2, src, dst)
        capped, full = found[name, 500], found[name, 2000]
        assert [f[2] for f in capped] == [f[2] for f in full] and capped[-1][2]  # a homography found
        hom_capped, hom_full = capped[-1], full[-1]
        assert np.array_equal(hom_capped[1], hom_full[1]) and hom_capped[1].sum() >= 50
        assert np.allclose(hom_capped[0], hom_full[0])


def test_a_repetitive_pattern_stops_at_the_cap(monkeypatch):
    """A chessboard's matches are mostly wrong and its samples often collinear: RANSAC runs to its
    cap. The capped fit costs well under the uncapped one."""
    import time

    cv2 = v_cv2()
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 500, (400, 2)).astype(np.float32)
    dst = rng.uniform(0, 500, (400, 2)).astype(np.float32)  # no transform: every fit is chance
    spent = {}
    for iters in (500, 2000):
        monkeypatch.setattr(align, "HOMOGRAPHY_ITERS", iters)
        t0 = time.process_time()
        for _ in range(3):
            align.fits(cv2, src, dst)
        spent[iters] = time.process_time() - t0
    assert spent[500] < 0.7 * spent[2000]
