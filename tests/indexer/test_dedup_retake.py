"""Re-takes that pass every other copy test are still not duplicates (issue 24, ``retake.py``).

Three real pairs of captures that the pixels at 384 px could not tell from a copy: holidays150's
lava field shot again under other clouds, a poster re-shot from a step aside (a glare moved), and
Middlebury's optical-flow frames (opencv samples: a fixed camera, toys moved by a few pixels). Each
is a similar shot, caught by its own re-take test; the same photo's copies (re-encoded, toned,
cropped, vignetted) are still duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DATA, SAMPLES
from PIL import Image, ImageEnhance, ImageOps

from indexer.dedup.rule import MAX_CROSSED, MAX_RELIT, MAX_SHIFTED, classify
from indexer.dedup.verify import Verifier

HOLIDAYS = DATA / "retrieval" / "holidays150" / "images"
OPENCV = SAMPLES / "opencv"
RETAKES = {  # (first, second, the re-take test that tells them apart, its bound)
    "lava": (HOLIDAYS / "104801.jpg", HOLIDAYS / "104802.jpg", "crossed", MAX_CROSSED),
    "poster": (HOLIDAYS / "110600.jpg", HOLIDAYS / "110601.jpg", "relit", MAX_RELIT),
    "toys": (OPENCV / "rubberwhale1.png", OPENCV / "rubberwhale2.png", "shifted", MAX_SHIFTED),
}


def _pair(name: str) -> tuple[Path, Path, str, float]:
    first, second, test, bound = RETAKES[name]
    if not first.is_file() or not second.is_file():
        pytest.skip(f"{first.name} / {second.name} are not in {first.parent}")
    return first, second, test, bound


@pytest.fixture(scope="module")
def verifier():
    return Verifier(workers=2)


@pytest.mark.parametrize("name", sorted(RETAKES))
def test_a_retake_that_passes_the_other_copy_tests_is_a_similar_shot(name, verifier):
    first, second, test, bound = _pair(name)
    for a, b in ((first, second), (second, first)):
        ev = verifier.compare(str(a), str(b))
        assert classify(ev) == "similar", (name, ev)
        assert getattr(ev, test) > bound, (name, test, ev)  # this test is what says so


def _vignette(im: Image.Image, strength: float) -> Image.Image:
    """``im`` darkened towards its corners (a radial tone edit: one capture still)."""
    import numpy as np

    a = np.asarray(im, dtype=np.float32)
    h, w = a.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((x - w / 2) / (w / 2)) ** 2 + ((y - h / 2) / (h / 2)) ** 2
    return Image.fromarray(np.clip(a * (1 - strength * r2 / 2)[..., None], 0, 255).astype(np.uint8))


@pytest.mark.parametrize("name", sorted(RETAKES))
def test_copies_of_the_same_photos_are_still_duplicates(name, verifier, tmp_path):
    first, *_ = _pair(name)
    im = ImageOps.exif_transpose(Image.open(first)).convert("RGB")  # as the verifier sees it
    w, h = im.size
    copies = {
        "reencoded.jpg": im,
        "darker.jpg": ImageEnhance.Brightness(im).enhance(0.6),
        "cropped.png": im.crop((round(0.08 * w), round(0.06 * h), w, h)),
        "vignette.jpg": _vignette(im, 0.4),
    }
    for file, copy in copies.items():
        file = f"{name}_{file}"  # the verifier keeps features by path (a folder name may come again)
        copy.save(tmp_path / file, quality=80) if file.endswith(".jpg") else copy.save(tmp_path / file)
        ev = verifier.compare(str(first), str(tmp_path / file))
        assert classify(ev) == "duplicate", (name, file, ev)
        assert ev.crossed <= MAX_CROSSED and ev.relit <= MAX_RELIT and ev.shifted <= MAX_SHIFTED, ev


def test_a_turned_copy_spills_nothing_and_a_reframed_retake_does(verifier, tmp_path):
    """``copytests.spill`` widens the other's footprint by its margin as a radius: a copy turned by
    9.5 degrees (its corners filled black, as the generated set's) shows only the fill's edge
    beyond its original, well inside the margin (0.02 before, when the margin was half as wide: a
    similar shot); the lava field shot again, framed a little differently, still shows a strip
    on each side (it rests on two tests, ``spill`` and ``crossed``; not on ``crossed`` alone, as it
    did with ``spill`` loosened to 0.02 or measured as it is with the bound 0.015)."""
    from indexer.dedup.rule import COPY_OUTSIDE

    ant = DATA / "photos" / "hymenoptera" / "val" / "ants" / "10308379_1b6c72e180.jpg"
    lava = HOLIDAYS / "104800.jpg", HOLIDAYS / "104802.jpg"
    if not ant.is_file() or not all(p.is_file() for p in lava):
        pytest.skip("hymenoptera or holidays150 is not in ../shared/data")
    im = Image.open(ant).convert("RGB")
    im.save(tmp_path / "ant.jpg", quality=95)
    im.rotate(-9.5, resample=Image.BICUBIC, expand=False).save(tmp_path / "ant_turned.jpg", quality=92)
    ev = verifier.compare(str(tmp_path / "ant.jpg"), str(tmp_path / "ant_turned.jpg"))
    assert classify(ev) == "duplicate" and ev.spill <= COPY_OUTSIDE / 3, ev
    ev = verifier.compare(str(lava[0]), str(lava[1]))
    assert classify(ev) == "similar" and ev.spill > COPY_OUTSIDE, ev  # crossed: 0.065 (dedup_margins.py)


def test_the_vectorised_tone_curve_and_neighbourhood_medians_equal_the_plain_loops():
    """``relit``'s tone curve (32 quantile bins of x, each bin's median of y) and ``shifted``'s 3 x 3
    neighbourhood medians are computed in blocks for speed: bit for bit what a loop over the bins
    (np.array_split) and over the cells (np.median of the neighbours present) gives, ties included."""
    import numpy as np

    from indexer.dedup import retake

    def tone_loop(x, y):
        order = np.argsort(x, kind="stable")
        xs, ys = x[order], y[order]
        cx, cy = [], []
        for part in np.array_split(np.arange(len(xs)), retake.TONE_BINS):
            if len(part):
                cx.append(float(xs[part[len(part) // 2]]))
                cy.append(float(np.median(ys[part])))
        cx, first = np.unique(np.array(cx), return_index=True)
        return cx, np.array(cy)[first]

    rng = np.random.default_rng(0)
    for n in [*range(1, 70), 255, 8000, 8001, 9033]:
        for dtype in (np.float32, np.float64):
            x = (rng.random(n) * 255).astype(dtype) if n % 2 else rng.integers(0, 5, n).astype(dtype)
            y = (rng.random(n) * 255).astype(dtype)
            want, got = tone_loop(x, y), retake._tone_curve(x, y)
            assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(want, got)), n

    for trial in range(60):
        cols, rows = rng.integers(1, 25, 2)
        cells = [(c, r) for c in range(cols) for r in range(rows) if rng.random() < 0.7] or [(0, 0)]
        grid = np.array(cells)
        values = rng.normal(size=(len(grid), 2))
        values = np.round(values, 1) if trial % 2 else values  # ties
        if trial % 5 == 0:  # a value that is not finite: np.median's answer for its neighbourhoods
            values[rng.integers(len(values)), rng.integers(2)] = [np.nan, np.inf, -np.inf][trial % 3]
        at = {tuple(g): v for g, v in zip(grid.tolist(), values)}
        count, median = retake._neighbourhood_medians(grid, values)
        for (c, r), k, m in zip(grid.tolist(), count, median):
            near = [at[(c + i, r + j)] for i in (-1, 0, 1) for j in (-1, 0, 1) if (c + i, r + j) in at]
            assert k == len(near) and np.array_equal(m, np.median(np.array(near), axis=0), equal_nan=True)
