"""End-to-end: the real UI (``streamlit run`` on a free loopback port) in a real browser (Debian's
headless Chromium driven by Playwright), against a real index of real photos.

Needs ``pip install streamlit playwright`` and ``apt-get install chromium``; it fails (never skips)
when the browser is missing, so CI can't pass without really running it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import copy_photos
from ui.browser import CHROMIUM, chromium, index_by_folder, quarantine_exact_copy, search_by_upload, serve

INDEXED = ["pixabay/horse01.jpg", "pixabay/cat01.jpg", "pixabay/dog01.jpg", "pixabay/ship01.jpg",
           "skimage/coffee.png", "skimage/chelsea.png", "sklearn/china.jpg", "opencv/fruits.jpg"]


def need_browser() -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `apt-get install -y chromium` "
                    f"(this end-to-end test needs a real browser; Playwright must not download one)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("Playwright for Python is not installed: pip install playwright (no browser download needed)")


def test_upload_in_a_real_browser_finds_the_photo(tiny_model, tmp_path):
    need_browser()
    from indexer import Index

    spec, _, model_dir = tiny_model
    photos = tmp_path / "photos"
    copy_photos(photos, INDEXED)
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)
        assert idx.count == len(INDEXED)
    # the upload: a byte copy of an indexed photo under another name, outside the indexed folder
    query = tmp_path / "upload" / "my-query.jpg"
    query.parent.mkdir()
    shutil.copy2(photos / "pixabay" / "horse01.jpg", query)
    shot = tmp_path / "ui-search-browser.png"

    with serve(tmp_path / "index") as url, chromium(1280, 1000) as page:
        captions = search_by_upload(page, url, query)
        page.screenshot(path=str(shot), full_page=True)
        assert page.get_by_text("no classifier").count() == 1  # the classification note

    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert len(captions) == len(INDEXED), captions
    assert captions[0].startswith("1.000 · horse01.jpg pixabay · 960x"), captions
    scores = [float(c.split(" ")[0]) for c in captions]
    assert scores == sorted(scores, reverse=True)
    # nothing was written into the indexed folder
    assert sorted(p.name for p in (photos / "pixabay").iterdir()) == sorted(Path(n).name for n in INDEXED[:4])


def test_indexing_a_folder_from_the_index_page_in_a_real_browser(tiny_model, tmp_path):
    """The page follows the background update on its own (a fragment refreshing itself): the
    progress bar, then the outcome and the new count, with no reload by the user."""
    need_browser()
    from indexer import Index

    spec, _, model_dir = tiny_model
    photos = tmp_path / "photos"
    copy_photos(photos, INDEXED[:2])
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)
    more = tmp_path / "more"
    for i in range(4):
        copy_photos(more / f"copy{i}", INDEXED[2:])

    with serve(tmp_path / "index") as url, chromium(1280, 1000) as page:
        seen, outcome = index_by_folder(page, url, more)
        images = page.locator('[data-testid="stMetric"]').first.inner_text()

    print("progress seen:", seen)
    assert seen and all(t == "scanning the folder..." or t.startswith("indexing: ") for t in seen), seen
    assert outcome.startswith(f"{tmp_path / 'index'}: 24 added, 0 updated, 0 removed"), outcome
    assert outcome.endswith("; 26 images in the index"), outcome
    assert images.split() == ["Images", "26"], images


def test_quarantining_a_copy_from_the_duplicates_page_in_a_real_browser(tiny_model, tmp_path):
    """The review actions in a real browser: the byte copy goes to the quarantine next to the
    index (through dedup apply's undo log), the original stays, the index forgets the copy."""
    need_browser()
    import os

    from indexer import Index

    spec, _, model_dir = tiny_model
    photos = tmp_path / "photos"
    copy_photos(photos, INDEXED[:3], flat=True)
    copy = photos / "horse01-copy.jpg"
    shutil.copy2(photos / "horse01.jpg", copy)
    later = copy.stat().st_mtime_ns + 10 ** 12
    os.utime(copy, ns=(later, later))  # the newer file is the copy
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)
        assert idx.count == 4

    with serve(tmp_path / "index") as url, chromium(1280, 1000) as page:
        said = quarantine_exact_copy(page, url)

    q = tmp_path / "quarantine"
    assert said.startswith("Moved 1 files (") and f" to {q}; undo log {q}/dedup-undo-" in said, said
    assert not copy.exists() and (q / "horse01-copy.jpg").read_bytes() == (photos / "horse01.jpg").read_bytes()
    assert len(list(q.glob("dedup-undo-*.json"))) == 1
    with Index.open(tmp_path / "index") as idx:
        assert idx.count == 3 and idx.store.row_by_path(str(copy.resolve())) is None
