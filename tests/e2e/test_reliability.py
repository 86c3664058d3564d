"""Concurrent use, odd inputs and crafted paths."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import SAMPLES, copy_photos
from PIL import Image

from indexer import Index
from indexer.storage.tables import ImageRow
from retrieval.errors import UserError


def test_searches_during_indexing_see_whole_generations(tmp_path, tiny_model):
    photos = tmp_path / "photos"
    names = sorted(p.name for p in (SAMPLES / "pixabay").glob("*.jpg"))[:16]
    copy_photos(photos, [f"pixabay/{n}" for n in names[:2]], flat=True)
    ix = tmp_path / "ix"
    Index.create(ix, tiny_model[0], model_dir=tiny_model[2]).update([photos], workers=0, progress=False)
    copy_photos(photos, [f"pixabay/{n}" for n in names[2:]], flat=True)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "indexer",
            "index",
            str(photos),
            "--index",
            str(ix),
            "--commit-every",
            "1",
            "--batch-size",
            "1",
            "--workers",
            "0",
            "-q",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_counts = set()
    query = photos / names[0]
    try:
        with Index.open(ix) as reader:
            while writer.poll() is None:
                n1 = reader._load_vectors().ntotal
                hits = reader.search(query, k=100)
                n2 = reader._load_vectors().ntotal
                paths = [h.path for h in hits]
                assert len(paths) == len(set(paths)) and all(os.path.exists(p) for p in paths)
                assert hits[0].path == str(query)
                # one whole generation (this run only adds), every vector of it with its row
                assert n1 <= len(hits) <= n2
                seen_counts.add(len(hits))
                rep = reader.check()
                assert rep.ok, rep.problems
    finally:
        writer.wait(timeout=300)
    assert writer.returncode == 0, writer.stderr.read()
    assert len(seen_counts) >= 2  # the reader really saw the index grow
    with Index.open(ix) as idx:
        assert idx.count == 16 and idx.check().ok


def _save(im, path, fmt, **kw):
    im.save(path, fmt, **kw)


def test_odd_but_valid_images_are_indexed(tmp_path, make_index):
    folder = tmp_path / "odd"
    folder.mkdir()
    base = Image.open(SAMPLES / "skimage" / "astronaut.png").convert("RGB").resize((96, 96))
    _save(
        Image.fromarray((np.asarray(base.convert("L"), dtype=np.uint16) * 257)), folder / "deep16.png", "PNG"
    )
    _save(base.convert("CMYK"), folder / "cmyk.jpg", "JPEG")
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE)
    _save(pal, folder / "palette.png", "PNG", transparency=0)
    frames = [base, base.rotate(90)]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:])
    frames[0].save(folder / "pages.tif", save_all=True, append_images=frames[1:])
    _save(base, folder / "photo.webp", "WEBP")
    _save(Image.new("RGB", (1, 1), (9, 99, 199)), folder / "pixel.png", "PNG")
    _save(base, folder / "line\nbreak.jpg", "JPEG")
    _save(base, folder / "no-extension", "JPEG")  # found by content
    (folder / "huge.bin").touch()
    os.truncate(folder / "huge.bin", 500 * 1024 * 1024)  # 500 MB of zeros (sparse), not an image
    (folder / "huge.jpg").touch()
    os.truncate(folder / "huge.jpg", 500 * 1024 * 1024)
    idx = make_index(tmp_path / "ix")
    r = idx.update([folder], workers=1, progress=False)
    assert r.added == 9, r.errors
    assert [(os.path.basename(p), reason) for p, reason in r.errors] == [
        ("huge.jpg", "not an image: content is zero bytes")
    ]
    assert idx.store.row_by_path(str(folder / "line\nbreak.jpg")).format == "JPEG"
    assert idx.store.row_by_path(str(folder / "deep16.png")).width == 96
    assert idx.check().ok


def test_crafted_paths_in_the_database_are_refused(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    good = idx.store.row_by_path(str(photos / "pixabay" / "cat01.jpg"))
    assert idx.indexed_file(good.id) == photos / "pixabay" / "cat01.jpg"
    with idx.store.session.begin() as s:
        s.get(ImageRow, good.id).path = "/etc/passwd"
        other = s.query(ImageRow).filter(ImageRow.id != good.id).first()
        other.path = str(photos) + "/../../../etc/passwd"
        other_id = other.id
    for bad in (good.id, other_id, "/etc/passwd"):
        with pytest.raises(UserError, match="outside the index's folders"):
            idx.indexed_file(bad)
    with pytest.raises(UserError, match="not an indexed image"):
        idx.indexed_file(str(photos / "nowhere.jpg"))


def test_stale_lock_file_from_a_killed_writer_is_taken_over(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, os, time\n"
                f"fd = os.open({str(tmp_path / 'ix' / 'index.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'99999'); os.kill(os.getpid(), 9)\n"
            ),
        ]
    )
    proc.wait()
    assert (tmp_path / "ix" / "index.lock").read_text() == "99999"  # the stale file is still there
    assert idx.update([photos], workers=0, progress=False).added == 6
