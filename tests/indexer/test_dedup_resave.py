"""A re-save at a lower JPEG quality (``resave``): heavy re-encodes are found by re-saving the other
file alike, and the copy tests prove nothing for a file at quality 50 or below - real re-takes with
one side re-saved that low passed them.

Real photos (the vacation samples, paris5, holidays150); the re-saves are made here."""

from __future__ import annotations

import pytest
from conftest import DATA, SAMPLES
from PIL import Image

from indexer.dedup.quality import jpeg_quality
from indexer.dedup.resave import GAP, measure, only_resave
from indexer.dedup.rotated import rotated_pairs
from indexer.dedup.rule import LOW_QUALITY, MAX_RESAVE_CHANGED, classify, describe, resave_proven
from indexer.dedup.verify import Verifier

VACATION = SAMPLES / "vacation"
RETRIEVAL = DATA / "retrieval"
# two captures of one scene, the same size, that the copy tests took for copies once one side was
# re-saved at JPEG quality 5-50 (docs/dedup.md, "Re-saves")
RETAKES = [
    ("holidays150/images/112403.jpg", "holidays150/images/112404.jpg"),
    ("holidays150/images/112600.jpg", "holidays150/images/112601.jpg"),
    ("paris5/invalides/paris_invalides_000252.jpg", "paris5/invalides/paris_invalides_000255.jpg"),
]


def _photos(n: int) -> list:
    found = sorted(VACATION.glob("*.jpg"))[:n] if VACATION.is_dir() else []
    if len(found) < n:
        pytest.skip(f"the vacation samples are not in {VACATION}")
    return found


def test_measure_only_a_jpeg_well_below_the_other(tmp_path):
    im = Image.open(_photos(1)[0]).convert("RGB")
    im.save(tmp_path / "source.jpg", quality=95)
    im.save(tmp_path / "source.png")
    im.save(tmp_path / "low.jpg", quality=20)
    im.save(tmp_path / "near.jpg", quality=95 - GAP // 2)
    im.resize((im.width // 2, im.height // 2)).save(tmp_path / "small.jpg", quality=20)
    im.crop((0, 0, im.width // 2, im.height)).save(tmp_path / "crop.jpg", quality=20)
    low = jpeg_quality(Image.open(tmp_path / "low.jpg").quantization)
    for a, b in (("source.jpg", "low.jpg"), ("low.jpg", "source.jpg"), ("source.png", "low.jpg")):
        quality, changed = measure(str(tmp_path / a), str(tmp_path / b))  # either order
        assert quality == low and changed <= MAX_RESAVE_CHANGED / 4, (a, b, changed)
    assert measure(str(tmp_path / "source.jpg"), str(tmp_path / "near.jpg")) is None  # within GAP
    quality, changed = measure(str(tmp_path / "source.jpg"), str(tmp_path / "small.jpg"))  # made smaller
    assert quality == low and changed <= MAX_RESAVE_CHANGED, changed
    assert measure(str(tmp_path / "source.jpg"), str(tmp_path / "crop.jpg")) == (low, 1.0)  # another aspect
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    assert measure(str(tmp_path / "source.jpg"), str(tmp_path / "broken.jpg")) is None


def test_heavy_re_encodes_are_duplicates_of_their_source(tmp_path):
    """JPEG quality 5 and 15 against a quality 95 source: blocks and ringing fail the copy tests
    against the clean source; the source re-saved alike reproduces them."""
    v = Verifier(workers=1)
    for n, photo in enumerate(_photos(4)):
        im = Image.open(photo).convert("RGB")
        im.save(tmp_path / f"o{n}.jpg", quality=95)
        for q in (5, 15):
            im.save(tmp_path / f"o{n}_q{q}.jpg", quality=q)
            ev = v.compare(str(tmp_path / f"o{n}.jpg"), str(tmp_path / f"o{n}_q{q}.jpg"))
            assert classify(ev) == "duplicate" and resave_proven(ev), (photo.name, q, describe(ev))
            assert "re-save at JPEG quality" in describe(ev)


@pytest.mark.parametrize("a,b", RETAKES)
def test_retakes_with_one_side_resaved_low_are_never_duplicates(tmp_path, a, b):
    a, b = RETRIEVAL / a, RETRIEVAL / b
    if not a.is_file() or not b.is_file():
        pytest.skip(f"{a.parent} is not in {RETRIEVAL}")
    assert Image.open(a).size == Image.open(b).size  # so the re-save test is measured too
    v = Verifier(workers=1)
    assert classify(v.compare(str(a), str(b))) == "similar"
    for q in (5, 15, 30, 50):
        for keep, low in ((a, b), (b, a)):
            Image.open(low).save(tmp_path / f"low{q}.jpg", quality=q)
            ev = v.compare(str(keep), str(tmp_path / f"low{q}.jpg"))
            assert classify(ev) != "duplicate", (q, keep.name, describe(ev))
            assert 0 < ev.resaved <= LOW_QUALITY and not resave_proven(ev), ev


def test_heavy_re_encodes_are_offered_by_layout_only_when_the_re_save_test_can_prove_them(tmp_path):
    """A quality-5 re-save can break its descriptor (cosine 0.29-0.54 to its source on the
    generated set: never a candidate); its layout survives, so ``rotated_pairs`` offers the pair
    upright - but only a pair that ``only_resave`` accepts: a quality-60 copy, a PNG pair or a
    crop is not offered that way."""
    im = Image.open(_photos(1)[0]).convert("RGB")
    im.save(tmp_path / "a_source.jpg", quality=95)
    im.save(tmp_path / "b_q5.jpg", quality=5)
    im.save(tmp_path / "c_q60.jpg", quality=60)
    im.crop((0, 0, im.width * 3 // 4, im.height)).save(tmp_path / "d_crop_q5.jpg", quality=5)
    paths = [str(tmp_path / n) for n in ("a_source.jpg", "b_q5.jpg", "c_q60.jpg", "d_crop_q5.jpg")]
    assert only_resave(paths[0], paths[1]) and only_resave(paths[1], paths[0])
    assert not only_resave(paths[0], paths[2]) and not only_resave(paths[0], paths[3])
    i, j, _, stats = rotated_pairs(paths, workers=1)
    found = {(paths[a], paths[b]) for a, b in zip(i.tolist(), j.tolist())}
    assert (paths[0], paths[1]) in found and stats["upright_candidates"] >= 1
    assert (paths[0], paths[2]) not in found and (paths[0], paths[3]) not in found
    i, j, _, _ = rotated_pairs(paths, workers=1, upright=None)  # turned copies only
    assert (paths[0], paths[1]) not in {(paths[a], paths[b]) for a, b in zip(i.tolist(), j.tolist())}


def test_a_heavy_re_encode_is_found_without_its_descriptor(tmp_path, make_index):
    """Through ``find_duplicates`` with no descriptor candidates at all (floor and threshold 1.0):
    the quality-5 re-save joins its source by layout and is proven by the re-save test."""
    from indexer.dedup import find_duplicates

    lib = tmp_path / "lib"
    lib.mkdir()
    photos = _photos(3)
    for n, photo in enumerate(photos):
        Image.open(photo).convert("RGB").save(lib / f"p{n}.jpg", quality=95)
    Image.open(photos[0]).convert("RGB").save(lib / "p0_q5.jpg", quality=5)
    idx = make_index(tmp_path / "index")
    idx.update([lib], progress=False, workers=0)
    rep = find_duplicates(idx, threshold=1.0, verify_floor=1.0)
    groups = [sorted(m.path.rsplit("/", 1)[1] for m in g.files) for g in rep.duplicate_groups]
    assert groups == [["p0.jpg", "p0_q5.jpg"]], groups
    assert "re-save at JPEG quality" in rep.duplicate_groups[0].members[0].reason
