"""A duplicate is the same capture (issue 24): other captures of a scene are never duplicates.

Real photos and a real fixed-camera video; the copies are made here. Checked: frames of a video
half a second apart, a zoomed re-take against a crop copy, EXIF capture evidence (differing
capture times veto; a copy stripped of its EXIF is still found by its pixels), keeper-centred
groups (no chains), and a similar shot never the keeper of a duplicate group."""

from __future__ import annotations

import glob
import itertools
from pathlib import Path

import pytest
from conftest import DATA, SAMPLES
from PIL import Image

from indexer.dedup import find_duplicates
from indexer.dedup.capture import DIFFERS, SAME, Capture, compare
from indexer.dedup.copytests import MAX_EXTRA
from indexer.dedup.rule import MAX_RESAVE_CHANGED, classify
from indexer.dedup.verify import Verifier

TREE = sorted(glob.glob("/usr/share/doc/opencv-doc/examples/data/tree.avi*"))
PARIS = DATA / "retrieval" / "paris5" / "invalides"
VACATION = SAMPLES / "vacation"
FPS_STEP = 8  # tree.avi runs at 15 frames/s: 8 frames apart is >= 0.5 s


@pytest.fixture(scope="module")
def tree_frames(module_tmp):
    if not TREE:
        pytest.skip(
            "tree.avi is not installed (apt-get install opencv-doc: /usr/share/doc/opencv-doc/examples/data)"
        )
    import cv2

    d = module_tmp("tree")
    cap = cv2.VideoCapture(TREE[0])
    frames, n = [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if n % FPS_STEP == 0:
            cv2.imwrite(str(d / f"tree_{n:03d}.png"), frame)
            frames.append(d / f"tree_{n:03d}.png")
        n += 1
    if len(frames) < 4:
        pytest.skip(f"tree.avi gave only {n} frames here")
    return frames


def test_video_frames_half_a_second_apart_are_never_duplicates(tree_frames):
    """A fixed camera, leaves moving in the wind: the same scene to the scene test (these frames
    align and agree at 128 px), yet never the same capture."""
    v = Verifier(workers=2)
    pairs = list(itertools.combinations(tree_frames, 2))
    found = v.verify([(str(a), str(b)) for a, b in pairs])
    verdicts = [classify(ev) for ev in found]
    assert "duplicate" not in verdicts, [
        (a.name, b.name, ev) for (a, b), ev, x in zip(pairs, found, verdicts) if x == "duplicate"
    ]
    assert verdicts.count("similar") >= len(pairs) // 2  # the same scene: similar shots, for review
    # while a re-encoded copy of a frame is still found
    copy = tree_frames[0].with_name("tree_copy.jpg")
    Image.open(tree_frames[0]).save(copy, quality=85)
    assert classify(v.compare(str(tree_frames[0]), str(copy))) == "duplicate"
    # and so is one re-saved at quality 10 (``resave``), which is no copy of the next frames
    low = tree_frames[0].with_name("tree_q10.jpg")
    Image.open(tree_frames[0]).save(low, quality=10)
    assert classify(v.compare(str(tree_frames[0]), str(low))) == "duplicate"
    for frame in tree_frames[1:]:
        ev = v.compare(str(frame), str(low))
        assert classify(ev) != "duplicate" and ev.resave_changed > MAX_RESAVE_CHANGED, (frame.name, ev)


@pytest.fixture(scope="module")
def zoom(module_tmp):
    """Two real shots of the Dome des Invalides (paris5): 252 is a zoomed-in re-take of 256's dome.
    And a crop copy of 256's dome region, enlarged to 252's size."""
    wide, narrow = PARIS / "paris_invalides_000256.jpg", PARIS / "paris_invalides_000252.jpg"
    if not wide.is_file() or not narrow.is_file():
        pytest.skip(f"paris5 is not in {PARIS.parent}")
    d = module_tmp("zoom")
    im = Image.open(wide).convert("RGB")
    w, h = im.size
    crop = im.crop((int(0.15 * w), 0, int(0.85 * w), int(0.62 * h)))
    crop.resize((round(crop.width * 1.5), round(crop.height * 1.5)), Image.BICUBIC).save(
        d / "crop_up.jpg", quality=92
    )
    return wide, narrow, d / "crop_up.jpg"


def test_a_zoomed_retake_is_not_a_crop_copy(zoom):
    wide, narrow, crop = zoom
    v = Verifier()
    retake = v.compare(str(wide), str(narrow))
    assert classify(retake) == "similar" and retake.extra > MAX_EXTRA, (
        retake
    )  # it holds detail the wide one lacks
    copy = v.compare(str(wide), str(crop))
    assert classify(copy) == "duplicate" and copy.extra <= MAX_EXTRA, copy  # enlarged, yet nothing new
    assert classify(v.compare(str(narrow), str(wide))) == "similar"  # either way round


def _exif(when: str, subsec: str | None = None, model: str = "Camera X"):
    ex = Image.Exif()
    ex[0x010F], ex[0x0110] = "Maker", model
    sub = ex.get_ifd(0x8769)
    sub[0x9003] = when
    if subsec:
        sub[0x9291] = subsec
    return ex


def test_capture_metadata_compared():
    t1 = Capture(time="2024:05:01 10:00:00", subsec="12", camera=("Maker", "X", None))
    assert (
        compare(t1, Capture(time="2024:05:01 10:00:00", subsec="13", camera=("Maker", "X", None))) == DIFFERS
    )
    assert compare(t1, Capture(time="2024:05:01 10:00:00", subsec="12", camera=("Maker", "X", None))) == SAME
    assert compare(t1, Capture(time="2024:05:01 10:00:00")) is None  # to the second only: a burst is possible
    assert compare(t1, Capture(camera=("Maker", "Y", None))) == DIFFERS
    assert compare(t1, None) is None and compare(None, None) is None


def test_different_capture_times_are_never_duplicates_and_a_stripped_copy_is_found(tmp_path):
    """The same pixels saved twice with other EXIF capture times: two captures (a burst frame
    with the sensor's noise would look just like this to the pixels), never duplicates. A copy
    that lost its EXIF (a web upload) is a duplicate by its pixels; one that kept it, by both."""
    photo = Image.open(VACATION / "image00074.jpg").convert("RGB")
    photo.save(tmp_path / "a.jpg", quality=92, exif=_exif("2024:05:01 10:00:00", "10"))
    photo.save(tmp_path / "b.jpg", quality=92, exif=_exif("2024:05:01 10:00:01", "10"))
    photo.resize((photo.width // 2, photo.height // 2)).save(tmp_path / "stripped.jpg", quality=80)
    photo.save(tmp_path / "kept.jpg", quality=70, exif=_exif("2024:05:01 10:00:00", "10"))
    v = Verifier()
    other = v.compare(str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"))
    assert other.capture == DIFFERS and classify(other) == "similar", other
    assert other.local >= 0.85 or other.frame  # the pixels alone would have said "copy"
    stripped = v.compare(str(tmp_path / "a.jpg"), str(tmp_path / "stripped.jpg"))
    assert stripped.capture is None and classify(stripped) == "duplicate", stripped
    kept = v.compare(str(tmp_path / "a.jpg"), str(tmp_path / "kept.jpg"))
    assert kept.capture == SAME and classify(kept) == "duplicate", kept


def _index_of(tmp_path, make_index, files: dict[str, Image.Image]):
    lib = tmp_path / "lib"
    lib.mkdir()
    for name, im in files.items():
        im.save(lib / name, quality=92)
    idx = make_index(tmp_path / "index")
    idx.update([lib], progress=False, workers=0)
    return idx


def _names(group) -> list[str]:
    return [Path(m.path).name for m in group.files]


def test_members_are_verified_against_the_keeper_never_through_a_chain(tmp_path, make_index):
    """left ~ whole ~ right: the left and right crops are each a copy of the whole photo but not of
    each other (each shows a strip the other lacks). The left crop, enlarged, is the best keeper by
    resolution: its group holds the whole photo, never the right crop through it."""
    photo = Image.open(VACATION / "image00074.jpg").convert("RGB")
    w, h = photo.size
    left = photo.crop((0, 0, int(0.7 * w), h))
    left = left.resize((left.width * 2, left.height * 2), Image.BICUBIC)
    idx = _index_of(
        tmp_path,
        make_index,
        {"left_big.jpg": left, "whole.jpg": photo, "right.jpg": photo.crop((int(0.3 * w), 0, w, h))},
    )
    v = Verifier()
    lib = tmp_path / "lib"
    assert classify(v.compare(str(lib / "left_big.jpg"), str(lib / "right.jpg"))) != "duplicate"
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    dup = rep.duplicate_groups
    assert [_names(g) for g in dup] == [["left_big.jpg", "whole.jpg"]], [_names(g) for g in rep.groups]
    for g in rep.groups:  # every member's evidence is its own pair with the keeper
        for m in g.members:
            ev = v.compare(g.keeper.path, m.path)
            assert classify(ev) == ("duplicate" if g.is_duplicates else "similar"), (
                g.keeper.path,
                m.path,
                ev,
            )


def test_a_similar_shot_is_never_the_keeper_of_duplicates(tmp_path, make_index):
    """The second canyon shot, enlarged, outranks everything by resolution; it still keeps no
    duplicate group: the first shot keeps its own copy, and the second shot is a similar shot."""
    first = Image.open(VACATION / "image00074.jpg").convert("RGB")
    second = Image.open(VACATION / "image00075.jpg").convert("RGB")
    w, h = first.size
    idx = _index_of(
        tmp_path,
        make_index,
        {
            "first.jpg": first,
            "second_big.jpg": second.resize((second.width * 2, second.height * 2), Image.BICUBIC),
            "first_copy.jpg": first.crop((w // 10, h // 10, w - w // 10, h - h // 12)),
        },
    )
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    assert [_names(g) for g in rep.duplicate_groups] == [["first.jpg", "first_copy.jpg"]]
    assert all(g.is_proven for g in rep.duplicate_groups)
    assert all("second_big.jpg" not in _names(g) for g in rep.duplicate_groups)
    assert any("second_big.jpg" in _names(g) for g in rep.similar_groups)
    assert not any(g.is_proven for g in rep.similar_groups)


def test_no_verify_groups_are_not_proven(tmp_path, make_index):
    """Without verification a group rests on descriptor similarity alone: not proven, not preselected."""
    from ui.logic.dedup_review import KEEP, default_choice

    photo = Image.open(VACATION / "image00074.jpg").convert("RGB")
    idx = _index_of(
        tmp_path, make_index, {"a.jpg": photo, "b.jpg": photo.resize((photo.width // 2, photo.height // 2))}
    )
    rep = find_duplicates(idx, threshold=0.5, verify=False)
    (g,) = rep.duplicate_groups
    assert not g.is_proven and "not proven" in g.why
    assert {default_choice(g, m) for m in g.files} == {KEEP}


def test_an_enlarged_copy_is_not_kept_over_its_original(tmp_path, make_index):
    """A copy enlarged 1.6x has more pixels than its original, not more picture: the original is
    kept (and says why), the enlarged copy and a re-compressed copy are its members."""
    photo = Image.open(VACATION / "image00074.jpg").convert("RGB")
    big = photo.resize((round(photo.width * 1.6), round(photo.height * 1.6)), Image.BICUBIC)
    idx = _index_of(
        tmp_path,
        make_index,
        {
            "original.jpg": photo,
            "enlarged.jpg": big,
            "small.jpg": photo.resize((photo.width // 2, photo.height // 2)),
        },
    )
    rep = find_duplicates(idx, threshold=1.0, verify_floor=-1.0)
    (g,) = rep.duplicate_groups
    assert Path(g.keeper.path).name == "original.jpg", [_names(x) for x in rep.groups]
    assert sorted(_names(g)) == ["enlarged.jpg", "original.jpg", "small.jpg"]
    assert "enlarged from it" in g.keeper_reason
