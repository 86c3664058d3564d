"""Dedup at scale (issue 24): each photo's verification features made once and kept with the index
(a second run makes none; a changed photo is made again; a corrupt cache is made again, never an
error), capture evidence read when a photo is indexed and stored in the metadata database (an
older index is upgraded, on SQLite and PostgreSQL), and the same answer on one or two workers.

Real photos (the samples' pixabay and skimage pictures) with real edited copies; the tiny random
VGG11 index (make_index) with the verify floor at -1, so every neighbour pair is verified."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image, ImageOps

from indexer.dedup import capture as capture_evidence
from indexer.dedup import find_duplicates
from indexer.dedup.align import ratio_matches
from indexer.dedup.verify import RATIO, Verifier
from indexer.storage.layout import FEATURE_CACHE
from indexer.storage.tables import EVIDENCE_FIELDS
from indexer.update.capture import fill_missing

PIX = SAMPLES / "pixabay"
EVIDENCE_COLUMNS = (*EVIDENCE_FIELDS, "evidence")
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" '
    b'xmpMM:DocumentID="xmp.did:0a1b2c" xmpMM:OriginalDocumentID="xmp.did:ffee99"/>'
    b"</rdf:RDF></x:xmpmeta>"
)


def _exif(time: str, subsec: str, serial: str, unique: str) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Maker", "X100"
    sub = exif.get_ifd(0x8769)
    sub[0x9003], sub[0x9291], sub[0x9011] = time, subsec, "+02:00"
    sub[0xA431], sub[0xA420] = serial, unique
    return exif


@pytest.fixture
def library(tmp_path):
    """Photos with copies (grey, crop, mirror), other photos; two with EXIF capture evidence (one
    with XMP document ids too)."""
    lib = tmp_path / "lib"
    lib.mkdir()
    dog = Image.open(PIX / "dog01.jpg").convert("RGB")
    w, h = dog.size
    dog.save(lib / "dog.jpg", quality=92, exif=_exif("2024:05:01 10:00:00", "12", "SN-1", "u" * 32), xmp=XMP)
    dog.convert("L").save(lib / "dog_grey.jpg", quality=85)
    dog.crop((w // 8, h // 8, w - w // 8, h - h // 8)).save(lib / "dog_crop.jpg", quality=85)
    ImageOps.mirror(dog).save(lib / "dog_mirror.jpg", quality=85)
    cat = Image.open(PIX / "cat01.jpg").convert("RGB")
    cat.save(lib / "cat.jpg", quality=90, exif=_exif("2024:05:01 10:00:07", "40", "SN-1", "v" * 32))
    cat.resize((cat.width // 2, cat.height // 2)).save(lib / "cat_small.jpg", quality=80)
    for name in ("dog02.jpg", "bird01.jpg"):
        Image.open(PIX / name).convert("RGB").save(lib / name, quality=90)
    return lib


def _index(make_index, tmp_path, lib, **options):
    idx = make_index(tmp_path / "index", **options)
    idx.update([lib], progress=False, workers=0)
    return idx


def _decisions(rep):
    return [(g.kind, g.keeper.path, [(m.path, m.reason, m.evidence) for m in g.members]) for g in rep.groups]


def test_a_second_dedup_makes_no_features_and_a_changed_photo_is_made_again(make_index, tmp_path, library):
    idx = _index(make_index, tmp_path, library)
    first = find_duplicates(idx, verify_floor=-1.0)
    made = first.stats["features_computed"]
    assert made >= 8 and first.stats["verified_pairs"] >= 8  # every photo has a candidate: all made
    assert (tmp_path / "index" / FEATURE_CACHE).is_file()
    again = find_duplicates(idx, verify_floor=-1.0)
    assert again.stats["features_computed"] == 0
    assert _decisions(again) == _decisions(first)  # read back bit for bit: the same report
    # a photo changed in place (same path, new content and mtime): its features only are made again
    with sqlite3.connect(tmp_path / "index" / FEATURE_CACHE) as db:
        (kept,) = db.execute("SELECT count(*) FROM features WHERE path LIKE '%bird01.jpg'").fetchone()
    assert kept >= 1
    bird = Image.open(library / "bird01.jpg")
    ImageOps.flip(bird).save(library / "bird01.jpg", quality=90)
    third = find_duplicates(idx, verify_floor=-1.0)
    assert third.stats["features_computed"] == kept  # (and its mirror image's, where a pair used it)
    # a photo gone from the index is gone from the cache
    (library / "dog02.jpg").unlink()
    idx.update([library], progress=False, workers=0)
    find_duplicates(idx, verify_floor=-1.0)
    with sqlite3.connect(tmp_path / "index" / FEATURE_CACHE) as db:
        paths = {p for (p,) in db.execute("SELECT path FROM features")}
    assert paths and not any(p.endswith("dog02.jpg") for p in paths)
    assert any(g.kind == "duplicates" and len(g.members) >= 2 for g in third.groups)


def test_a_corrupt_feature_cache_is_made_again_never_an_error(make_index, tmp_path, library):
    idx = _index(make_index, tmp_path, library)
    first = find_duplicates(idx, verify_floor=-1.0)
    cache = tmp_path / "index" / FEATURE_CACHE
    # one damaged row: that photo is made again, the rest are read (the stored pairs forgotten, so
    # that every pair needs its photos' features again)
    with sqlite3.connect(cache) as db:
        (path,) = db.execute("SELECT path FROM features WHERE mirrored = 0 LIMIT 1").fetchone()
        db.execute("UPDATE features SET data = ? WHERE path = ?", (b"\x07garbage", path))
        db.execute("DELETE FROM pairs")
    rep = find_duplicates(idx, verify_floor=-1.0)
    assert rep.stats["features_computed"] == 1 and _decisions(rep) == _decisions(first)
    # the whole file overwritten with garbage: everything is made again, and the cache works again
    cache.write_bytes(b"this is not a database" * 100)
    rep = find_duplicates(idx, verify_floor=-1.0)
    assert rep.stats["features_computed"] == first.stats["features_computed"]
    assert _decisions(rep) == _decisions(first)
    assert find_duplicates(idx, verify_floor=-1.0).stats["features_computed"] == 0


def test_one_or_two_workers_give_the_same_report(make_index, tmp_path, library):
    idx = _index(make_index, tmp_path, library)
    one = find_duplicates(idx, verify_floor=-1.0, verifier=Verifier(workers=1))
    two = find_duplicates(idx, verify_floor=-1.0, verifier=Verifier(workers=2))
    assert _decisions(one) == _decisions(two)
    assert one.stats["verified_pairs"] == two.stats["verified_pairs"] >= 8
    assert any(g.kind == "duplicates" for g in one.groups)


def test_a_run_stopped_during_verification_leaves_no_thread_and_keeps_what_it_verified(
    make_index, tmp_path, library
):
    """The UI's cancel raises from the progress callback: the verification threads end with the run
    (pairs queued ahead are dropped), and the pairs verified so far are kept for the next run."""
    import threading

    idx = _index(make_index, tmp_path, library)
    before = set(threading.enumerate())

    def stop(stage, done, total):
        if stage == "verify" and done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        find_duplicates(idx, verify_floor=-1.0, progress=stop)
    assert set(threading.enumerate()) <= before  # no verification thread left running
    with sqlite3.connect(tmp_path / "index" / FEATURE_CACHE) as db:
        kept = db.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]
    rep = find_duplicates(idx, verify_floor=-1.0)
    assert 0 < kept and 0 < rep.stats["pairs_cached"] <= kept
    assert _decisions(rep) == _decisions(find_duplicates(idx, verify_floor=-1.0, verifier=Verifier()))


def test_stored_capture_evidence_is_what_the_file_says(make_index, tmp_path, library, monkeypatch):
    idx = _index(make_index, tmp_path, library)
    rows = {r[1]: r[0] for r in idx.store.photo_facts()}
    stored = idx.store.captures(list(rows.values()), by="id")
    assert len(stored) == len(rows) and all(c.evidence for c in stored.values())
    for path, image_id in rows.items():
        assert capture_evidence.from_stored(stored[image_id]) == capture_evidence.read_capture(path)
    dog = stored[rows[str((library / "dog.jpg").resolve())]]
    assert (dog.time_original, dog.subsec, dog.time_offset) == ("2024:05:01 10:00:00", "12", "+02:00")
    assert (dog.body_serial, dog.unique_id) == ("SN-1", "u" * 32)
    assert (dog.document_id, dog.original_document_id) == ("xmp.did:0a1b2c", "xmp.did:ffee99")
    cat = capture_evidence.from_stored(stored[rows[str((library / "cat.jpg").resolve())]])
    assert capture_evidence.compare(capture_evidence.from_stored(dog), cat) == capture_evidence.DIFFERS
    # dedup takes the evidence from the index: no file's EXIF is read again
    calls, read = [], capture_evidence.read_capture
    monkeypatch.setattr(capture_evidence, "read_capture", lambda p: calls.append(p) or read(p))
    rep = find_duplicates(idx, verify_floor=-1.0)
    assert rep.stats["verified_pairs"] >= 8 and calls == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_older_index_gets_the_capture_evidence_columns_and_its_files_read_once(
    make_index, tmp_path, library, backend, request
):
    from sqlalchemy import text

    from indexer import Index

    options = {"db_url": request.getfixturevalue("pg_database")()} if backend == "postgresql" else {}
    idx = _index(make_index, tmp_path, library, **options)
    with idx.store.engine.begin() as c:  # as an index made before the columns were kept
        for column in EVIDENCE_COLUMNS:
            c.execute(text(f'ALTER TABLE captures DROP COLUMN "{column}"'))
    idx.close()
    with Index.open(tmp_path / "index", **options) as old:
        assert old.store.has_captures
        ids = [r[0] for r in old.store.photo_facts()]
        assert sorted(i for i, _ in old.store.photos_without_capture()) == sorted(ids)
        assert not any(c.evidence for c in old.store.captures(ids).values())
        before = find_duplicates(old, verify_floor=-1.0)  # dedup reads those files' EXIF itself
        assert fill_missing(old.store) == len(ids)
        assert old.store.photos_without_capture() == []
        stored = old.store.captures(ids)
        assert all(c.evidence for c in stored.values())
        paths = {r[0]: r[1] for r in old.store.photo_facts()}
        for i in ids:
            assert capture_evidence.from_stored(stored[i]) == capture_evidence.read_capture(paths[i])
        assert _decisions(find_duplicates(old, verify_floor=-1.0)) == _decisions(before)


def test_ratio_matches_are_opencvs_knn_ratio_matches():
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (600, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (500, 32), dtype=np.uint8)
    b[:200] = a[100:300] ^ (rng.random((200, 32)) < 0.04).astype(np.uint8)  # noisy true matches
    b[200:210] = b[190:200]  # ties for the nearest: never a match
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a, b, k=2)
    want = [
        (m[0].queryIdx, m[0].trainIdx) for m in knn if len(m) == 2 and m[0].distance < RATIO * m[1].distance
    ]
    qi, ti = ratio_matches(a, b, RATIO)
    assert list(zip(qi.tolist(), ti.tolist())) == want and len(want) >= 150


def test_pairs_verified_ahead_in_one_batch_give_the_one_thread_report(make_index, tmp_path, library):
    """find's own verifier (two threads, every candidate pair verified ahead in one batch,
    ``batch.Settled``, mirror images prefetched) against one thread asked pair by pair."""
    idx = _index(make_index, tmp_path, library)
    one = find_duplicates(idx, verify_floor=-1.0, verifier=Verifier(workers=1))
    stages = []
    two = find_duplicates(idx, verify_floor=-1.0, progress=lambda s, d, t: stages.append((s, d, t)))
    assert _decisions(two) == _decisions(one)
    assert one.stats["verified_pairs"] == two.stats["verified_pairs"] >= 8
    assert any(g.kind == "duplicates" and len(g.members) >= 2 for g in two.groups)
    photos = [d for s, d, t in stages if s == "verify"]  # the verification's progress, in photos
    totals = {t for s, d, t in stages if s == "verify"}
    assert len(totals) == 1 and photos == sorted(photos) and photos[-1] == totals.pop() >= 4


def test_a_second_dedup_reads_no_photo_for_its_keeper_order_or_turned_copies(
    make_index, tmp_path, library, monkeypatch
):
    """The files' qualities (keeper order) and layouts (turned copies) are kept with the index
    (``factcache``): a second run reads none of them, a changed photo is read again, and a damaged
    row or file is read again, never an error."""
    from indexer.dedup import quality, rotated

    idx = _index(make_index, tmp_path, library)
    stages = []
    first = find_duplicates(idx, verify_floor=-1.0, progress=lambda s, d, t: stages.append((s, d, t)))
    assert first.stats["quality_cached"] == 0 and first.stats["rotated_cached"] == 0
    # both reads show their progress, in files read, up to all of them
    for stage in ("layouts", "qualities"):
        done = [(d, t) for s, d, t in stages if s == stage]
        assert done and done == sorted(done) and done[-1][0] == done[-1][1] >= 8
    read = {"quality": [], "layout": []}
    real_quality, real_layout = quality.read_quality, rotated._read

    def counted(kind, real):
        def reader(path):
            read[kind].append(path)
            return real(path)

        return reader

    monkeypatch.setattr(quality, "read_quality", counted("quality", real_quality))
    monkeypatch.setattr(rotated, "_read", counted("layout", real_layout))
    stages.clear()
    again = find_duplicates(idx, verify_floor=-1.0, progress=lambda s, d, t: stages.append((s, d, t)))
    assert read == {"quality": [], "layout": []}
    assert not {s for s, _, _ in stages} & {"layouts", "qualities"}  # nothing read: nothing to show
    assert again.stats["quality_cached"] >= 8 and again.stats["rotated_cached"] >= 8
    assert _decisions(again) == _decisions(first)
    # a photo changed in place: that file alone is read again
    bird = str((library / "bird01.jpg").resolve())
    ImageOps.flip(Image.open(bird)).save(bird, quality=90)
    changed = find_duplicates(idx, verify_floor=-1.0)
    assert read == {"quality": [bird], "layout": [bird]}
    # a damaged row is read again; a file that is not a database is made again
    cache = tmp_path / "index" / FEATURE_CACHE
    with sqlite3.connect(cache) as db:
        db.execute("UPDATE facts SET data = ? WHERE path = ?", (b"\x07garbage", bird))
    read["quality"].clear(), read["layout"].clear()
    assert _decisions(find_duplicates(idx, verify_floor=-1.0)) == _decisions(changed)
    assert read == {"quality": [bird], "layout": [bird]}
    cache.write_bytes(b"this is not a database" * 100)
    read["quality"].clear(), read["layout"].clear()
    assert _decisions(find_duplicates(idx, verify_floor=-1.0)) == _decisions(changed)
    assert len(read["quality"]) == again.stats["quality_cached"] and len(read["layout"]) >= 8
    # a photo gone from the index is gone from the facts
    (library / "dog02.jpg").unlink()
    idx.update([library], progress=False, workers=0)
    find_duplicates(idx, verify_floor=-1.0)
    with sqlite3.connect(cache) as db:
        paths = {p for (p,) in db.execute("SELECT path FROM facts")}
    assert bird in paths and not any(p.endswith("dog02.jpg") for p in paths)


def test_a_second_dedup_verifies_no_pair_and_a_changed_photo_only_its_own(
    make_index, tmp_path, library, monkeypatch
):
    """Verified pairs are kept with the index (``paircache``): a second run verifies none and gives
    the same report, a photo changed in place has its own pairs verified again and no other, a
    damaged row is verified again, another verifier setting verifies everything again, and the
    rows of a photo gone from the index are deleted."""
    from indexer.dedup import keeper, paircache

    idx = _index(make_index, tmp_path, library)
    checked = []  # the keeper checks of duplicate groups (is one file made from the other?)
    real_made_from = keeper.made_from

    def made_from(verifier, a, b, ev):
        checked.append((a, b))
        return real_made_from(verifier, a, b, ev)

    monkeypatch.setattr(keeper, "made_from", made_from)
    first = find_duplicates(idx, verify_floor=-1.0)
    assert first.stats["pairs_cached"] == 0 and first.stats["verified_pairs"] >= 8 and checked
    asked = []
    real = Verifier.compare

    def counted(self, a, b, mirror=True):
        asked.append((a, b))
        return real(self, a, b, mirror=mirror)

    monkeypatch.setattr(Verifier, "compare", counted)
    checked.clear()
    again = find_duplicates(idx, verify_floor=-1.0)
    assert asked == [] and checked == [] and again.stats["pairs_cached"] == first.stats["verified_pairs"]
    assert again.stats["features_computed"] == 0
    assert _decisions(again) == _decisions(first)
    # the evidence comes back exactly (floats, the transform, the capture comparison)
    dog, crop = (str((library / n).resolve()) for n in ("dog.jpg", "dog_crop.jpg"))
    ev = real(Verifier(), dog, crop)
    assert ev.transform and paircache.decode(paircache.encode(ev)) == ev
    numpy_ev = replace(ev, inliers=np.int64(ev.inliers), pixel=np.float32(0.5), mirrored=np.bool_(True))
    assert paircache.decode(paircache.encode(numpy_ev)) == numpy_ev  # numpy scalars stored as numbers
    # a photo changed in place: its pairs alone are verified again
    bird = str((library / "bird01.jpg").resolve())
    ImageOps.flip(Image.open(bird)).save(bird, quality=90)
    changed = find_duplicates(idx, verify_floor=-1.0)
    assert asked and all(bird in pair for pair in asked)
    assert changed.stats["pairs_cached"] == changed.stats["verified_pairs"] - len(asked)
    # a damaged row: that pair is verified again, with the same report
    cache = tmp_path / "index" / FEATURE_CACHE
    with sqlite3.connect(cache) as db:
        (a, b) = db.execute("SELECT a, b FROM pairs WHERE a != ? AND b != ? LIMIT 1", (bird, bird)).fetchone()
        db.execute("UPDATE pairs SET data = ? WHERE a = ? AND b = ?", (b"\x07garbage", a, b))
    asked.clear()
    assert _decisions(find_duplicates(idx, verify_floor=-1.0)) == _decisions(changed)
    assert asked == [(a, b)]
    # another setting of the verifier: nothing stored counts
    asked.clear()
    other = find_duplicates(idx, verify_floor=-1.0, min_keypoints=10)
    assert other.stats["pairs_cached"] == 0 and len(asked) == other.stats["verified_pairs"]
    # a photo gone from the index is gone from the stored pairs
    (library / "dog02.jpg").unlink()
    idx.update([library], progress=False, workers=0)
    find_duplicates(idx, verify_floor=-1.0)
    with sqlite3.connect(cache) as db:
        paths = {p for row in db.execute("SELECT a, b FROM pairs") for p in row}
    assert bird in paths and not any(p.endswith("dog02.jpg") for p in paths)


def test_stored_features_are_read_while_verified_pairs_wait_to_be_written(tmp_path):
    """The verified pairs are written through the feature cache's own connection: with pair rows
    not committed yet, in a transaction large enough to hold the file's lock (every dirty page
    spilled to it, as at 20,000 photos), the features are still read at once. Two connections
    would wait on each other (each read 5 s, then a miss, and the run stalled)."""
    from indexer.dedup.paircache import PairCache, version_of

    verifier = Verifier(workers=1, cache_file=tmp_path / FEATURE_CACHE)
    dog, cat = str(PIX / "dog01.jpg"), str(PIX / "cat01.jpg")
    verifier.features_of(dog)
    disk = verifier.store.disk
    disk.flush()
    disk.execute("PRAGMA cache_size=1")  # every page written spills to the file: an exclusive lock
    disk.execute("PRAGMA busy_timeout=0")  # a lock held elsewhere fails at once
    cache = PairCache(disk, version_of(verifier))
    ev = verifier.compare(dog, cat)
    stamps = (disk.stamp(dog), disk.stamp(cat))
    cache.put(
        [((f"{dog}-{n}", cat, False), stamps, ev) for n in range(39)] + [((dog, cat, False), stamps, ev)]
    )
    assert disk._pending >= 40  # still in the open transaction
    misses = disk.misses
    assert disk.get(dog, False) is not None and disk.misses == misses
    disk.flush()
    assert cache.load([(dog, cat, False), (f"{dog}-7", cat, False)]) == {(dog, cat, False)}
    assert cache.take((dog, cat, False)) == ev
    # a keeper check counts only with the evidence it was made with
    cache.put_fact((dog, cat), stamps, ev, "enlarged")
    cache.put_fact((cat, dog), stamps[::-1], ev, "")
    disk.flush()
    assert cache.fact((dog, cat), ev) == "enlarged" and cache.fact((cat, dog), ev) == ""
    assert cache.fact((dog, dog), ev) is None
    assert cache.fact((dog, cat), replace(ev, mirrored=not ev.mirrored)) is None
    verifier.close()


def test_the_copy_tests_reads_share_a_decode_where_it_gives_the_same_pixels(tmp_path, monkeypatch):
    """A pair's copy tests read each file at a size of their own (``shifted``, the detail test) and
    the keeper checks read its own pixels (``keeper.native_tile``). Reads that decode the same
    pixels (a JPEG at the same draft scale, a PNG at any size) share one decode, and a file's tile
    is kept for the next pair: the same arrays as reading afresh, fewer decodes."""
    import retrieval.preprocess as preprocess
    from indexer.dedup import filereads, keeper
    from indexer.dedup.verify import read_grey

    big = tmp_path / "big.jpg"  # 2400 x 1600: draft scales 1/4 (600 px) ... 1/1
    Image.open(PIX / "dog01.jpg").convert("RGB").resize((2400, 1600), Image.BICUBIC).save(big, quality=90)
    png = tmp_path / "cat.png"
    Image.open(PIX / "cat01.jpg").convert("RGB").save(png)
    reads = ((big, 700), (big, 1000), (big, 500), (png, 300), (png, 200))
    wants = [read_grey(str(path), side) for path, side in reads]  # each read afresh
    decodes = []
    real_open = filereads.open_image

    def counted(path, *args, **kwargs):
        decodes.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(filereads, "open_image", counted)
    verifier = Verifier(workers=1)
    # 700 and 1000 px both decode the JPEG at half size (1200 px), 500 px at a quarter (600 px)
    for (path, side), want in zip(reads, wants):
        got = verifier._read_once(str(path), side)
        assert np.array_equal(got[0], want[0]) and got[1] == want[1]
        assert not got[0].flags.writeable
    assert decodes == [str(big), str(big), str(png)]
    # the keeper check's tile: read once, the same pixels, read-only
    tiles = []
    real_tile_open = preprocess.open_image
    monkeypatch.setattr(
        preprocess, "open_image", lambda p, *a, **k: tiles.append(p) or real_tile_open(p, *a, **k)
    )
    first, again = verifier.native_tile(str(big)), verifier.native_tile(str(big))
    assert again is first and tiles == [str(big)] and not first.flags.writeable
    monkeypatch.setattr(preprocess, "open_image", real_tile_open)
    assert np.array_equal(first, keeper.native_tile(str(big))) and first.shape == (1024, 1024)
    # the decodes kept stay within their byte budget (here: one half-size decode of the JPEG, which
    # gives way to the quarter-size one and the PNG)
    budget = 1200 * 800 * 3
    small = filereads.FileReads(decode_bytes=budget)
    for path, side in reads:
        small.read(str(path), side)
    kept = {key[2]: cost for key, (_, cost) in small._decodes.items()}
    assert kept == {(600, 400): 600 * 400 * 3, (479, 720): 479 * 720 * 3} and sum(kept.values()) <= budget
