"""End-to-end: the Duplicates page in a real browser (Debian's headless Chromium through Playwright,
``tests/e2e/browser.py``) at 1400x900, against a real index of real photos with byte copies and a
grey copy: no group the report does not prove has anything preselected; Apply asks before anything
moves, and afterwards the page is where it was, the pointer on the applied group.

Also takes the compare view's screenshots for docs/::

    python -m tests.e2e.test_ui_dedup_browser --out docs/ui-duplicates-compare.png
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # conftest, when run as a script
from conftest import copy_photos  # noqa: E402

from tests.e2e.browser import chromium, serve, small_png  # noqa: E402

PHOTOS = ["pixabay/horse01.jpg", "pixabay/cat01.jpg", "pixabay/dog01.jpg", "pixabay/ship01.jpg"]
GROUP = '[class*="st-key-dd_group_"]'
CHECKED_QUARANTINE = """() => [...document.querySelectorAll('[class*="st-key-dd_pick_"] label')]
  .filter(l => l.innerText.trim() === 'Quarantine' && l.querySelector('input')?.checked).length"""


def photo_set(folder: Path) -> dict[str, Path]:
    """PHOTOS, a newer byte copy of horse01, cat01 and dog01 each, and a grey copy of dog01."""
    copy_photos(folder, PHOTOS, flat=True)
    for name in ("horse01", "cat01", "dog01"):
        copy = folder / f"{name}-copy.jpg"
        shutil.copy2(folder / f"{name}.jpg", copy)
        later = copy.stat().st_mtime_ns + 10**12
        os.utime(copy, ns=(later, later))
    with Image.open(folder / "dog01.jpg") as im:
        ImageOps.grayscale(im).save(folder / "dog01-grey.jpg", quality=90)
    return {p.stem: p for p in folder.iterdir()}


def open_duplicates(page, url: str) -> None:
    """The Duplicates page through the app's own navigation (its link says "Duplicates": before the app
    has run once, the sidebar lists the pages/ folder's scripts, "duplicates", which would run the page
    without the app around it)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(url, wait_until="domcontentloaded")
    link = page.locator('[data-testid="stSidebarNav"] a').filter(has_text=re.compile("Duplicates"))
    ready = page.get_by_role("button", name="Find duplicates")
    for _ in range(6):  # a click while the app still connects can be lost on a loaded machine
        if page.viewport_size["width"] < 640:  # a phone: the sidebar opens first
            page.locator(
                '[data-testid="stExpandSidebarButton"], [data-testid="stSidebarCollapsedControl"] button'
            ).first.click(timeout=60_000)
        link.click(timeout=60_000)
        try:
            ready.wait_for(timeout=20_000)
            if page.viewport_size["width"] < 640:  # close the sidebar again
                page.locator('[data-testid="stSidebarCollapseButton"] button').first.click(timeout=10_000)
            return
        except PlaywrightTimeout:
            continue
    raise TimeoutError(f"the Duplicates page did not open on {url}")


def find(page, verify: bool, timeout_ms: int = 120_000) -> None:
    box = page.get_by_role("checkbox", name="Verify pixels")
    if box.is_checked() != verify:
        page.get_by_text("Verify pixels", exact=True).click()
        page.wait_for_function(
            "(v) => [...document.querySelectorAll('input[type=checkbox]')].some(i => "
            "i.closest('label')?.innerText.includes('Verify pixels') && i.checked === v)",
            arg=verify,
        )
    page.get_by_role("button", name="Find duplicates").click()
    # the run is over when the groups say what this run finds (verified: no unproven group is left)
    page.wait_for_function(
        "(v) => { const t = [...document.querySelectorAll('" + GROUP + "')].map(g => g.innerText).join(' ');"
        " return t && (v ? !t.includes('Not proven copies') : t.includes('Not proven copies')); }",
        arg=verify,
        timeout=timeout_ms,
    )
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=timeout_ms)


def group_under(page, x: float, y: float) -> str:
    """The key class of the group box at viewport point (x, y) ("" if none), and what is there."""
    return page.evaluate(
        "([x, y]) => { const e = document.elementFromPoint(x, y); const g = e && e.closest('"
        + GROUP.replace("'", "\\'")
        + "'); const b = e && e.closest('button');"
        " return (g ? [...g.classList].find(c => c.startsWith('st-key-dd_group_')) : '') + '|' +"
        " (b ? b.innerText.trim() : ''); }",
        [x, y],
    )


def test_review_preselects_only_proven_groups_asks_before_moving_and_stays_in_place(tiny_model, tmp_path):
    from indexer import Index
    from tests.e2e.test_ui_browser import need_browser

    need_browser()
    spec, _, model_dir = tiny_model
    files = photo_set(tmp_path / "photos")
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([tmp_path / "photos"], workers=0, progress=False)
    with serve(tmp_path / "index") as url, chromium(1400, 900) as page:
        open_duplicates(page, url)
        # descriptors only: nothing is proven beyond byte copies, and nothing of the rest is preselected
        find(page, verify=False)
        unproven = page.locator(GROUP).filter(has_text="Not proven copies")
        assert unproven.count() >= 1
        for n in range(unproven.count()):
            assert not unproven.nth(n).get_by_role("radio", name="Quarantine", checked=True).count()
        # verified: the proven groups first, their copies preselected
        find(page, verify=True)
        groups = page.locator(GROUP)
        try:  # the page may still be drawing the last groups when the run's status goes
            page.wait_for_function(f"() => document.querySelectorAll('{GROUP}').length >= 3", timeout=30_000)
        except Exception:  # noqa: BLE001 - the count below says what is there
            pass
        assert groups.count() == 3 and groups.filter(has_text="safe to quarantine").count() == 3
        assert page.evaluate(CHECKED_QUARANTINE) == 4
        # the second group's Apply, in the middle of the screen
        target = groups.nth(1)
        gkey = next(c for c in target.get_attribute("class").split() if c.startswith("st-key-dd_group_"))
        moved_name = next(n for n in ("horse01-copy", "cat01-copy") if n in target.inner_text())
        apply = target.get_by_role("button", name="Apply", exact=True)
        apply.scroll_into_view_if_needed()
        box = apply.bounding_box()
        page.mouse.wheel(0, box["y"] - 450)
        time.sleep(0.5)
        scroll = page.evaluate(
            "() => document.querySelector('[data-testid=\"stMain\"]').scrollTop + window.scrollY"
        )
        top = target.bounding_box()["y"]
        box = apply.bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        move = target.get_by_role("button", name=re.compile(r"^Move 1 file to quarantine$"))
        move.wait_for(timeout=30_000)
        question = target.locator('[data-testid="stAlert"]').filter(has_text="Move 1 file (").inner_text()
        assert f"({moved_name}.jpg) to {tmp_path / 'quarantine'}?" in question, question
        mb = move.bounding_box()
        assert 0 <= mb["y"] and mb["y"] + mb["height"] <= 900, mb  # asked where the user is
        assert files[moved_name].exists()  # nothing moved before the answer
        x, y = mb["x"] + mb["width"] / 2, mb["y"] + mb["height"] / 2
        page.mouse.click(x, y)
        target.locator('[data-testid="stAlert"]').filter(has_text="Moved 1 files").wait_for(timeout=60_000)
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=60_000)
        time.sleep(0.5)
        assert not files[moved_name].exists() and (tmp_path / "quarantine" / f"{moved_name}.jpg").is_file()
        after = page.evaluate(
            "() => document.querySelector('[data-testid=\"stMain\"]').scrollTop + window.scrollY"
        )
        assert abs(after - scroll) <= 40, (scroll, after)
        assert abs(page.locator(f".{gkey}").bounding_box()["y"] - top) <= 40
        under = group_under(page, x, y)
        assert under.split("|")[0] == gkey and under.split("|")[1] != "Apply", under  # not the next Apply
        assert groups.nth(2).get_by_role("radio", name="Quarantine", checked=True).count() == 2
        # Compare: the keeper and the grey copy large, one zoom for both panes
        button = groups.nth(2).get_by_role("button", name="Compare").last
        button.scroll_into_view_if_needed()
        button.click()
        frame = page.frame_locator('[role="dialog"] iframe')
        frame.locator("#i2").wait_for(timeout=60_000)
        assert "dog01-grey.jpg" in page.locator('[role="dialog"]').inner_text()
        pane = frame.locator("#p1").bounding_box()
        assert pane["width"] >= 500 and pane["height"] >= 450, pane  # large
        before = frame.locator("#i2").evaluate("i => i.style.transform")
        page.mouse.move(pane["x"] + pane["width"] / 3, pane["y"] + pane["height"] / 2)
        page.mouse.wheel(0, -300)
        time.sleep(0.5)
        zoomed = [frame.locator(f"#i{n}").evaluate("i => i.style.transform") for n in (1, 2)]
        assert zoomed[0] == zoomed[1] != before, (before, zoomed)


def screenshots(out: Path, phone: Path | None = None) -> None:
    """The compare view of a cropped, toned copy (desktop 1400x900, and a phone if asked)."""
    import tempfile

    from indexer import Index
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = photo_set(tmp / "photos")
        with Image.open(files["ship01"]) as im:
            w, h = im.size
            edit = ImageEnhance.Color(im.crop((w // 10, h // 12, w - w // 8, h - h // 10))).enhance(1.6)
            ImageEnhance.Brightness(edit).enhance(1.15).save(tmp / "photos" / "ship01-edit.jpg", quality=88)
        spec, net = build("vgg11", "random", input_size=64)
        model = export_model(spec, net, tmp / "model")
        with Index.create(tmp / "index", spec, model_dir=model) as idx:
            idx.update([tmp / "photos"], workers=0, progress=False)
        for path, (w, h) in ((out, (1400, 900)), (phone, (390, 844))):
            if path is None:
                continue
            with serve(tmp / "index") as url, chromium(w, h) as page:
                open_duplicates(page, url)
                find(page, verify=True)
                ship = page.locator(GROUP).filter(has_text="ship01-edit.jpg")
                button = ship.get_by_role("button", name="Compare").first
                button.scroll_into_view_if_needed()
                button.click()
                frame = page.frame_locator('[role="dialog"] iframe')
                frame.locator("#i2").wait_for(timeout=60_000)
                frame.get_by_role("button", name="Differences").click()
                time.sleep(1.5)
                page.screenshot(path=str(path))
            print(f"{path}: {small_png(path, 400_000) / 1000:.0f} KB")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="screenshots of the duplicate compare view")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--phone", type=Path)
    a = ap.parse_args()
    screenshots(a.out, a.phone)
