"""Direct tests of the scan (walk + classify) and of the per-file decode step, on real photos and
on bad files made here."""

import hashlib
import os

import numpy as np
import pytest
from conftest import SAMPLES, copy_photos
from PIL import Image

from indexer.update.decode import decode_file, decode_items
from indexer.update.scan import classify, describe_content, printable, sniff, walk

SIZE = 64


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "f"
    copy_photos(d, ["pixabay/cat01.jpg", "skimage/coffee.png", "opencv/baboon.jpg"])
    (d / "notes.txt").write_text("just words\n")  # neither image nor video: skipped silently
    (d / "fake.jpg").write_text("<html><body>not a photo</body></html>")
    (d / "empty.png").write_bytes(b"")
    (d / "cut.jpg").write_bytes((SAMPLES / "pixabay" / "dog01.jpg").read_bytes()[:3000])  # truncated JPEG
    (d / "sub").mkdir()
    (d / "sub" / "link.jpg").symlink_to(d / "gone.jpg")  # dangling
    return d


def _scan(folder):
    return {os.path.relpath(e.path, folder): e for e in walk(str(folder))}


def test_walk_lists_files_sorted_with_their_stat(folder):
    entries = list(walk(str(folder)))
    paths = [e.path for e in entries]
    top = [p for p in paths if os.path.dirname(p) == str(folder)]
    assert top == sorted(top)
    by_name = _scan(folder)
    cat = by_name[os.path.join("pixabay", "cat01.jpg")]
    st = os.stat(folder / "pixabay" / "cat01.jpg")
    assert (cat.size, cat.mtime_ns, cat.root, cat.problem) == (st.st_size, st.st_mtime_ns, str(folder), None)
    assert by_name[os.path.join("sub", "link.jpg")].problem == "broken symbolic link"
    assert by_name["notes.txt"].problem is None  # walking reads no content


def test_classify_keeps_images_and_names_bad_ones(folder):
    by_name = _scan(folder)
    assert classify(by_name[os.path.join("skimage", "coffee.png")]).kind == "image"
    assert classify(by_name["notes.txt"]) is None
    fake = classify(by_name["fake.jpg"])
    assert fake.problem == "not an image: content is HTML"
    assert classify(by_name["empty.png"]).problem == "empty file (0 bytes)"
    cut = classify(by_name["cut.jpg"])  # the head is a JPEG's: classify keeps it, decoding fails later
    assert cut.problem is None and cut.kind == "image"


def test_sniff_and_describe():
    assert sniff((SAMPLES / "pixabay" / "cat01.jpg").read_bytes()[:16]) == "JPEG"
    assert sniff((SAMPLES / "skimage" / "coffee.png").read_bytes()[:16]) == "PNG"
    assert sniff(b"GIF89a" + b"\0" * 10) == "GIF" and sniff(b"hello world, text") is None
    assert describe_content(b"%PDF-1.4 ...") == "PDF" and describe_content(b"") == "empty file"
    assert describe_content(b"\0\0\0\0") == "zero bytes" and describe_content(b"plain text") == "text"
    assert printable("ok.jpg") == "ok.jpg"
    assert printable(os.fsdecode(b"bad\xff.jpg")) == "bad\\xff.jpg"


def test_decode_file_reads_hashes_and_pads_a_real_photo(folder):
    path = folder / "pixabay" / "cat01.jpg"
    d = decode_file((str(path), str(folder), SIZE, 0))
    assert d.problem is None and d.format == "JPEG"
    assert d.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    with Image.open(path) as im:
        assert (d.width, d.height) == im.size
    st = os.stat(path)
    assert (d.size, d.mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert d.array.shape == (SIZE, SIZE, 3) and d.array.dtype == np.uint8
    vh, vw = d.valid  # the photo is portrait: aspect kept, padded on the right to a square
    assert vh == SIZE and abs(vw - SIZE * d.width / d.height) <= 1
    assert d.array[:, vw:].max() == 0 and d.array[:, :vw].max() > 0


def test_decode_problems_are_one_line_reasons(folder):
    cut = decode_file((str(folder / "cut.jpg"), str(folder), SIZE, 0))
    assert cut.problem and "\n" not in cut.problem and cut.array is None
    fake = decode_file((str(folder / "fake.jpg"), str(folder), SIZE, 0))
    assert fake.problem and fake.array is None
    gone = decode_file((str(folder / "nothing.jpg"), str(folder), SIZE, 0))
    assert gone.problem == "file disappeared while indexing" and gone.size == -1
    big = decode_file((str(folder / "opencv" / "baboon.jpg"), str(folder), SIZE, 1000))  # max_pixels 1000
    assert big.problem and "pixels" in big.problem


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_decode_unreadable_file_is_retried_next_run(folder):
    p = folder / "skimage" / "coffee.png"
    p.chmod(0)
    try:
        d = decode_file((str(p), str(folder), SIZE, 0))
    finally:
        p.chmod(0o644)
    assert d.problem == "permission denied" and d.size == -1


def test_decode_items_gives_one_item_per_photo(folder):
    items = decode_items((str(folder / "skimage" / "coffee.png"), str(folder), SIZE, 0))
    assert len(items) == 1 and items[0].problem is None and items[0].more is False
    assert items[0].source is None and items[0].time_s is None


def test_in_process_decoding_runs_on_threads_in_job_order_and_names_what_it_decodes(tmp_path, monkeypatch):
    """``decode_stream`` without worker processes decodes DECODE_THREADS files at a time (a 12-MP
    JPEG takes ~20 ms even at 1/8 scale), yields them in job order, names every file in flight in
    the journal (what the next run isolates after a decoder crash), and leaves no journal behind."""
    import threading

    from indexer.update import decode as decode_module
    from indexer.update import embedding
    from indexer.update.decode import DecodeJournal

    rng = np.random.default_rng(0)
    jobs = []
    for i in range(12):
        path = tmp_path / f"{i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)).save(path)
        jobs.append((str(path), str(tmp_path), 64, 10**8))
    journal = DecodeJournal(tmp_path)
    seen_in_flight, threads = [], set()
    real = decode_module.decode_items

    def watched(job):
        threads.add(threading.get_ident())
        seen_in_flight.append(journal.suspects())
        return real(job)

    monkeypatch.setattr(embedding, "decode_items", watched)
    out = list(embedding.decode_stream(jobs, workers=0, ahead=8, journal=journal))
    assert [d.path for d in out] == [j[0] for j in jobs] and all(d.problem is None for d in out)
    assert all(len(s) >= 1 for s in seen_in_flight)  # the file being decoded is named while it is
    assert len(threads) <= embedding.DECODE_THREADS
    assert not os.path.exists(journal.path)
    (tmp_path / DecodeJournal.NAME).write_text(jobs[3][0] + DecodeJournal.SEP + jobs[5][0])
    assert journal.suspects() == {jobs[3][0], jobs[5][0]}
