"""A copy's verdict does not depend on which file is asked first (when one way narrowly fails).

Keypoint matching and the model fits depend on which file asks, so a copy can fail its copy tests
one way by chance; ``Verifier.compare`` then measures the other way round. Real photos (the
vacation samples); the copies are made here, as ``benchmarks/near_duplicates.py`` makes them."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image, ImageOps

from indexer.dedup.rule import classify, turned_round
from indexer.dedup.verify import Verifier

VACATION = SAMPLES / "vacation"


def _squash(im, f):
    return im.resize((im.width, int(im.height * f)), Image.LANCZOS)


def _frame(im, f, outer):
    pad = int(max(im.size) * f)
    inner = max(2, pad // 6)
    return ImageOps.expand(
        ImageOps.expand(im, border=inner, fill=(245, 245, 235)), border=pad - inner, fill=outer
    )


def _screenshot(im, s, cw, ch):
    small = im.resize((int(im.width * s), int(im.height * s)), Image.BILINEAR)
    canvas = Image.new("RGB", (cw, ch), (240, 240, 240))
    bar = max(6, ch // 14)
    canvas.paste(Image.new("RGB", (cw, bar), (50, 50, 60)), (0, 0))
    canvas.paste(Image.new("RGB", (cw, bar), (220, 220, 225)), (0, ch - bar))
    canvas.paste(small, ((cw - small.width) // 2, bar + (ch - 2 * bar - small.height) // 2))
    return canvas


# copies that failed one way on the verification before it measured the other way too
COPIES = {
    "squash": ("image00071.jpg", lambda im: _squash(im, 0.62)),
    "frame": ("image00054.jpg", lambda im: _frame(im, 0.25, (40, 120, 200))),
    "screenshot": ("image00014.jpg", lambda im: _screenshot(im, 0.53, 140, 221)),
}


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("order")
    made = {}
    for kind, (name, make) in COPIES.items():
        src = VACATION / name
        if not src.is_file():
            pytest.skip(f"the vacation samples are not in {VACATION}")
        orig, copy = out / f"{kind}_original.jpg", out / f"{kind}_copy.jpg"
        im = Image.open(src).convert("RGB")
        im.save(orig, "JPEG", quality=95)
        make(im).save(copy, "JPEG", quality=92)
        made[kind] = (str(orig), str(copy))
    return made


@pytest.mark.parametrize("kind", sorted(COPIES))
def test_a_copy_is_a_duplicate_whichever_file_comes_first(copies, kind):
    orig, copy = copies[kind]
    v = Verifier(workers=1)
    try:
        forward, backward = v.compare(orig, copy), v.compare(copy, orig)
    finally:
        v.close()
    assert classify(forward) == "duplicate", kind
    assert classify(backward) == "duplicate", kind


def test_turned_round_inverts_the_transform():
    from indexer.dedup.rule import Evidence

    t = np.array([[2.0, 0.0, 10.0], [0.0, 2.0, 5.0], [0.0, 0.0, 1.0]])
    ev = turned_round(Evidence(transform=tuple(t.ravel()), scale=2.0, rotation=30.0))
    assert np.allclose(np.array(ev.transform).reshape(3, 3) @ t, np.eye(3))
    assert ev.scale == pytest.approx(0.5) and ev.rotation == pytest.approx(330.0) and ev.backwards
    mirrored = turned_round(Evidence(transform=tuple(t.ravel()), rotation=30.0, mirrored=True))
    assert mirrored.transform == ()  # it maps onto the mirror image of the first file
    assert mirrored.rotation == pytest.approx(30.0)  # M R(t) M = R(-t): the same turn either way
