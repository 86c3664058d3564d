"""End-to-end: the real UI (``streamlit run`` on a free loopback port) in a real browser (Debian's
headless Chromium driven by Playwright), against a real index of real photos.

Needs ``pip install streamlit playwright`` and ``apt-get install chromium``; it fails (never skips)
when the browser is missing, so CI can't pass without really running it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import SAMPLES, copy_photos

from tests.e2e.browser import (
    CHROMIUM,
    DIALOG,
    chromium,
    class_line,
    index_by_folder,
    lightbox_heading,
    lightbox_image,
    lightbox_step,
    open_page,
    open_result,
    quarantine_exact_copy,
    result_cards,
    search_by_upload,
    serve,
    stop_indexing,
    thumbnails_in_view,
    upload_file,
    wait_for_results,
)

INDEXED = [
    "pixabay/horse01.jpg",
    "pixabay/cat01.jpg",
    "pixabay/dog01.jpg",
    "pixabay/ship01.jpg",
    "skimage/coffee.png",
    "skimage/chelsea.png",
    "sklearn/china.jpg",
    "opencv/fruits.jpg",
]


def need_browser() -> None:
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `apt-get install -y chromium` "
            f"(this end-to-end test needs a real browser; Playwright must not download one)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(
            "Playwright for Python is not installed: pip install playwright (no browser download needed)"
        )


@pytest.fixture(scope="module")
def search_ui(tiny_model, module_tmp):
    """One UI server for the search-page tests: the photos of INDEXED plus two byte copies of cat01.jpg
    in another folder, an upload limit of 0.3 MB; (base URL, photos folder, the upload)."""
    from indexer import Index

    spec, _, model_dir = tiny_model
    base = module_tmp("ui-browser")
    photos = base / "photos"
    copy_photos(photos, INDEXED)
    for name in ("cat01-a.jpg", "cat01-b.jpg"):
        (photos / "copies").mkdir(exist_ok=True)
        shutil.copy2(photos / "pixabay" / "cat01.jpg", photos / "copies" / name)
    with Index.create(base / "index", spec, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)
        assert idx.count == len(INDEXED) + 2
    # the upload: a byte copy of an indexed photo under another name, outside the indexed folder
    query = base / "upload" / "my-query.jpg"
    query.parent.mkdir()
    shutil.copy2(photos / "pixabay" / "horse01.jpg", query)
    need_browser()
    with serve(base / "index", max_upload_mb=0.3) as url:
        yield url, photos, query


def test_upload_in_a_real_browser_finds_the_photo(search_ui):
    """The query is not its own first result (it is said next to the query), and the three byte copies
    of cat01.jpg are one result with a count."""
    url, photos, query = search_ui
    with chromium(1280, 1000) as page:
        captions = search_by_upload(page, url, query)
        assert page.get_by_text("no classifier").count() == 1  # the classification note
        assert page.get_by_text("This image is in the index: horse01.jpg").count() == 1
    assert len(captions) == len(INDEXED) - 1, captions  # 7 others; the cat and its 2 copies are one
    assert not any("horse01.jpg" in c for c in captions), captions
    cats = [c for c in captions if c.split(" · ")[1].startswith("cat01")]
    assert len(cats) == 1 and cats[0].endswith("cat01.jpg +2 copies"), captions
    scores = [float(c.split(" ")[0]) for c in captions]
    assert scores == sorted(scores, reverse=True)
    # nothing was written into the indexed folder
    assert sorted(p.name for p in (photos / "pixabay").iterdir()) == sorted(Path(n).name for n in INDEXED[:4])


def test_lightbox_opens_a_lower_result_where_the_user_looks_and_steps(search_ui, tmp_path):
    """A click on the 5th result: the dialog is on screen (not at the top of the page); its counter
    counts the results only (the query's own file is not one); Next/Previous move through the results
    in their order; the original downloads byte for byte."""
    url, photos, query = search_ui
    with chromium(1280, 700) as page:
        captions = search_by_upload(page, url, query)
        names = [c.split(" · ")[1].split(" ")[0] for c in captions]
        result_cards(page).nth(4).scroll_into_view_if_needed()
        assert open_result(page, 4) == names[4]
        box = page.locator(DIALOG).bounding_box()
        assert box["y"] >= 0 and box["y"] < 700 and box["height"] > 200, box
        assert page.locator(DIALOG).get_by_text(f"5 / {len(captions)}", exact=True).count() == 1
        assert "open=" in page.url
        assert lightbox_step(page, "Next") == names[5]
        assert lightbox_step(page, "Previous") == names[4]
        with page.expect_download() as dl:
            page.locator(DIALOG).get_by_role("button", name="Download original").click()
        saved = tmp_path / "downloaded"
        dl.value.save_as(saved)
    original = next(p for p in photos.rglob(names[4]))
    assert saved.read_bytes() == original.read_bytes()


def test_a_shared_url_reopens_the_query_filters_and_open_result_and_back_works(search_ui):
    url, photos, query = search_ui
    with chromium(1280, 900) as page:
        captions = search_by_upload(page, url, query)
        similar = captions[0].split(" · ")[1].split(" ")[0]
        result_cards(page).nth(0).get_by_role("button", name="Similar").click()
        page.get_by_text(f"Query: {similar}").wait_for(timeout=30_000)
        wait_for_results(page)
        opened = open_result(page, 1)
        shared = page.url
        assert "id=" in shared and "open=" in shared, shared
        page.keyboard.press("Escape")  # closing the lightbox is a step back can undo
        page.locator(DIALOG).wait_for(state="hidden", timeout=10_000)
        page.wait_for_function("() => !location.search.includes('open=')", timeout=10_000)
        page.go_back()
        assert lightbox_heading(page) == opened
        page.keyboard.press("Escape")
        page.go_back()  # (the lightbox), then the "Similar" step: back to the upload's results
        page.go_back()
        page.get_by_text("Query: my-query.jpg").wait_for(timeout=30_000)
        page = page.context.browser.new_page(
            viewport={"width": 1280, "height": 900}
        )  # a new session: the link alone
        page.goto(shared, wait_until="domcontentloaded")
        assert lightbox_heading(page) == opened
        assert page.get_by_text(f"Query: {similar}").count() == 1
        page.goto(shared.split("&open=")[0] + "&label=pixabay", wait_until="domcontentloaded")
        assert wait_for_results(page)
        labels = page.locator(".vr-cap").evaluate_all("cs => cs.map(c => c.dataset.label)")
        assert labels and set(labels) == {"pixabay"}, labels


def test_an_upload_over_the_limit_is_an_error_in_the_page(search_ui, tmp_path):
    import numpy as np
    from PIL import Image

    url, _, _ = search_ui
    big = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8)).save(big)
    assert 0.3 * 1024 * 1024 < big.stat().st_size < 1.5 * 1024 * 1024
    with chromium(1280, 900) as page:
        upload_file(page, url, big)
        alert = page.locator('[data-testid="stMain"] [data-testid="stAlert"]').filter(has_text="limited to")
        alert.wait_for(timeout=30_000)
        assert "noise.png is 1.0 MB; uploads are limited to 307.2 KB" in alert.inner_text()
        assert alert.is_visible()


def test_phone_width_shows_the_upload_and_the_first_results_on_the_first_screen(search_ui):
    url, _, query = search_ui
    with chromium(390, 844) as page:
        search_by_upload(page, url, query)
        dropzone = page.locator('[data-testid="stFileUploaderDropzone"]').bounding_box()
        first = result_cards(page).nth(0).bounding_box()
        second = result_cards(page).nth(1).bounding_box()
    for box in (dropzone, first, second):
        assert box["y"] >= 0 and box["y"] + box["height"] <= 844 and box["x"] + box["width"] <= 390, (
            box,
            first,
        )


# --- the demo's photos with the real VGG16: results first, honest classes, upload URLs, the lightbox ---
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def demo_ui(vgg16_model, module_tmp):
    """The UI on the demo's index (examples/photos: 27 photos in 8 folders of 3-4, the shared VGG16),
    its folder classes learnt from 3+ photos each, as examples/demo.sh does; the base URL."""
    from indexer import Index
    from indexer.classify import fit_index

    spec, _, model_dir = vgg16_model
    base = module_tmp("ui-demo")
    with Index.create(base / "index", spec, model_dir=model_dir) as idx:
        idx.update([EXAMPLES / "photos"], workers=0, progress=False)
        assert idx.count == 27
        assert fit_index(idx, min_per_class=3).classifier is not None
    need_browser()
    with serve(base / "index") as url:
        yield url


def test_results_first_on_a_desktop_screen_and_an_upload_url_reloads_them(demo_ui):
    """At 1400x900 the demo's cat query shows its classes ("cat") in the query strip and at least 20
    result thumbnails without scrolling, its best hits are the three cats; its URL (?upload=sha256)
    opens the same results in a new browser (no upload there)."""
    with chromium(1400, 900) as page:
        captions = search_by_upload(page, demo_ui, EXAMPLES / "queries" / "cat01.jpg")
        in_view = thumbnails_in_view(page)
        line = class_line(page)
        uploader = page.locator('[data-testid="stFileUploader"]').first.inner_text()
        link = page.url
        other = page.context.browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        other.goto(link, wait_until="domcontentloaded")
        again = wait_for_results(other)
    print("thumbnails in view:", in_view, "|", line, "|", captions[:4])
    names = [c.split(" · ")[1] for c in captions]
    assert len(captions) == 27 and in_view >= 20, (len(captions), in_view)
    assert sorted(names[:3]) == ["cat02.jpg", "cat03.jpg", "chelsea.jpg"], names
    assert line.startswith("Folder classes: cat ") and "learnt from the index's 8 folders" in line, line
    assert "upload=" in link and again == captions
    assert "at most 20 MB" in uploader and "MB per file" not in uploader, uploader  # one limit, said once


def test_out_of_domain_photos_get_none_of_these(demo_ui):
    """Photos unlike every folder of the demo (a laptop, a bowl of fruit, a chessboard): "none of these",
    while a ship finds its folder."""
    outside = [EXAMPLES / "queries" / "laptop01.jpg", SAMPLES / "opencv" / "fruits.jpg"]
    with chromium(1400, 900) as page:
        said = {}
        for photo in outside + [EXAMPLES / "queries" / "ship04.jpg"]:
            search_by_upload(page, demo_ui, photo)
            said[photo.name] = class_line(page)
    print(said)
    for photo in outside:
        assert said[photo.name].startswith("Folder classes: none of these (nearest "), said
    assert said["ship04.jpg"].startswith("Folder classes: ship "), said


@pytest.mark.parametrize("width,height", [(1400, 900), (390, 844)])
def test_the_lightbox_picture_fits_the_window_and_is_never_enlarged(demo_ui, width, height):
    """The lightbox shows the whole picture inside the window (contain), at most at its own pixels,
    with its name and buttons on the same screen; "100%" shows it pixel for pixel."""
    with chromium(width, height) as page:
        search_by_upload(page, demo_ui, EXAMPLES / "queries" / "cat01.jpg")
        if width < 600:  # a phone: the query strip comes before the results
            strip = page.locator(".st-key-query_strip").bounding_box()
            assert strip["y"] + strip["height"] <= result_cards(page).nth(0).bounding_box()["y"] + 1
        opened = open_result(page, 4)
        fit = lightbox_image(page)
        similar = page.locator(DIALOG).get_by_role("button", name="Similar").bounding_box()
        page.locator(DIALOG).get_by_text("100%").click()
        page.wait_for_function(
            "() => document.querySelector('.st-key-lb_full img')?.complete", timeout=30_000
        )
        full = lightbox_image(page)
    print(opened, fit, full)
    assert fit["x"] >= 0 and fit["y"] >= 0, fit
    assert fit["x"] + fit["width"] <= width and fit["y"] + fit["height"] <= height, fit
    assert fit["width"] <= fit["natural_width"] + 0.5 and fit["height"] <= fit["natural_height"] + 0.5, fit
    assert similar["y"] + similar["height"] <= height, similar  # the buttons need no scrolling
    assert abs(full["width"] - full["natural_width"]) <= 1, full


def test_the_index_page_fits_a_phone(demo_ui):
    """At 390 px the Index page scrolls only down: no table wider than the screen, "Last update"
    whole, the model in words (its hashes folded away), the same class words as the Search page."""
    with chromium(390, 844) as page:
        page.goto(demo_ui, wait_until="domcontentloaded")
        facts = page.locator(".st-key-index_facts")
        page.locator('[data-testid="stExpandSidebarButton"]').click(timeout=60_000)  # the phone's menu
        open_page(page, "Index", facts, 60_000)
        page.locator('[data-testid="stSidebarCollapseButton"] button').click(timeout=10_000)
        page.locator('[data-testid="stSidebar"]').wait_for(state="hidden", timeout=10_000)
        wide = page.evaluate("() => document.documentElement.scrollWidth")
        cut = page.locator('[data-testid="stMetricValue"]').evaluate_all(
            "vs => vs.filter(v => v.scrollWidth > v.clientWidth + 1).map(v => v.innerText)"
        )
        text = facts.inner_text()
    assert wide <= 390 and not cut, (wide, cut)
    assert (
        "Model: VGG16, GEM pooling" in text and "Folder classes: 8 (learnt from the index's 8 folders" in text
    )
    assert "ImageNet classes: none" in text


def small_index(tiny_model, index_dir: Path, photos: Path) -> None:
    """An index of the first two photos of INDEXED (copied to ``photos``), for the Index page's tests."""
    from indexer import Index

    spec, _, model_dir = tiny_model
    copy_photos(photos, INDEXED[:2])
    with Index.create(index_dir, spec, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)


def test_indexing_a_folder_from_the_index_page_in_a_real_browser(tiny_model, tmp_path):
    """The page follows the background update on its own (a fragment refreshing itself): the
    progress bar, then the outcome and the new count, with no reload by the user."""
    need_browser()
    small_index(tiny_model, tmp_path / "index", tmp_path / "photos")
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


def test_stopping_an_index_job_from_the_index_page_keeps_the_last_commit(tiny_model, tmp_path):
    """ "Stop indexing" while a big folder is being embedded: the page says it stopped, and the index
    opens with its last commit: no more rows than files, consistent (check), no file errors."""
    need_browser()
    import os

    from indexer import Index

    small_index(tiny_model, tmp_path / "index", tmp_path / "photos")
    big = tmp_path / "big"
    copy_photos(big / "originals", INDEXED[2:])
    originals = sorted(p for p in (big / "originals").rglob("*") if p.is_file())
    for i in range(160):  # 960 more files (hard links: no disk space, but each one is read and embedded)
        (big / f"copy{i:03d}").mkdir()
        for src in originals:
            os.link(src, big / f"copy{i:03d}" / f"{i:03d}-{src.name}")
    files = sum(1 for p in big.rglob("*") if p.is_file())

    with serve(tmp_path / "index") as url, chromium(1280, 1000) as page:
        pressed, outcome = stop_indexing(page, url, big)
        images = page.locator('[data-testid="stMetric"]').first.inner_text()
        assert page.get_by_role("button", name="Start indexing").is_visible()  # ready for the next run
        assert not page.locator('[data-testid="stException"]').count()

    print("stopped at:", pressed, "|", outcome)
    done, total = (int(n.replace(",", "")) for n in pressed.split(":")[1].split()[0:3:2])
    assert total == files and 0 < done < files, pressed
    kept = int(outcome.split("(")[1].split()[0].replace(",", ""))
    assert outcome == f"Indexing stopped: the index keeps its last commit ({kept:,} images).", outcome
    assert images.split() == ["Images", f"{kept:,}"], images
    with Index.open(tmp_path / "index") as idx:
        assert idx.count == kept and 2 <= kept < 2 + files
        report = idx.check()
        assert report.ok, report.problems
        assert not list(idx.store.errors())  # stopping is not a file error


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
    later = copy.stat().st_mtime_ns + 10**12
    os.utime(copy, ns=(later, later))  # the newer file is the copy
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)
        assert idx.count == 4

    with serve(tmp_path / "index") as url, chromium(1280, 1000) as page:
        said = quarantine_exact_copy(page, url)

    q = tmp_path / "quarantine"
    assert said.startswith("Moved 1 files (") and f" to {q}; undo log {q}/dedup-undo-" in said, said
    assert (
        not copy.exists() and (q / "horse01-copy.jpg").read_bytes() == (photos / "horse01.jpg").read_bytes()
    )
    assert len(list(q.glob("dedup-undo-*.json"))) == 1
    with Index.open(tmp_path / "index") as idx:
        assert idx.count == 3 and idx.store.row_by_path(str(copy.resolve())) is None
