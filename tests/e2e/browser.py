"""Drive the real UI in a real browser: start ``streamlit run`` on a free loopback port and run Debian's
headless Chromium through Playwright (never a browser Playwright downloads itself).

Used by tests/e2e/test_ui_browser.py (a search by upload, the lightbox, indexing a folder from the Index
page and stopping it, quarantining a copy from the Duplicates page) and to take the screenshots in docs/::

    python -m tests.e2e.browser --index DIR --query photo.jpg --out docs/ui-search.png
    python -m tests.e2e.browser --index DIR --query photo.jpg --out docs/ui-search-phone.png --width 390 --height 844
    python -m tests.e2e.browser --index DIR --query photo.jpg --out docs/ui-lightbox.png --open 2
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from retrieval.engines import DEFAULT_ENGINE, ENGINES
from ui.logic import DEFAULT_MAX_UPLOAD_MB

CHROMIUM = os.environ.get("VGG_RETRIEVAL_CHROMIUM", "/usr/bin/chromium")
RESULT = re.compile(r"^-?\d\.\d{3} · ")  # a result card's caption: "0.987 · name.jpg ..."
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(
    index_dir,
    engine: str = DEFAULT_ENGINE,
    port: int | None = None,
    timeout: float = 60.0,
    log=None,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
):
    """``streamlit run ui/app.py`` on 127.0.0.1 against ``index_dir``; yields the base URL."""
    from ui.launch import streamlit_command, streamlit_env

    port = port or free_port()
    cmd = streamlit_command(index_dir, port=port, address="127.0.0.1", max_upload_mb=max_upload_mb)
    env = streamlit_env(index_dir, engine=engine, max_upload_mb=max_upload_mb)
    env.pop("TQDM_DISABLE", None)
    own_log = log is None
    log = log or tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with status {proc.returncode}: {_tail(log)}")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer on {url} within {timeout:.0f} s: {_tail(log)}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if own_log:
            log.close()


def _tail(log, n: int = 2000) -> str:
    try:
        log.flush()
        log.seek(0)
        return log.read().decode(errors="replace")[-n:]
    except Exception:
        return ""


@contextmanager
def chromium(width: int = 1280, height: int = 900):
    """A Playwright page in Debian's headless Chromium."""
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(
            f"Chromium is not installed at {CHROMIUM}: apt-get install -y chromium "
            f"(Playwright must not download its own browser)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


UPLOAD_INPUT = '[data-testid="stFileUploaderDropzoneInput"]'
DIALOG = '[role="dialog"]'


def upload_file(page, url: str, image: Path, timeout_ms: int = 60_000) -> None:
    """Open the search page and give the uploader ``image``."""
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector(UPLOAD_INPUT, state="attached", timeout=timeout_ms)
    page.set_input_files(UPLOAD_INPUT, str(image))


def search_by_upload(page, url: str, image: Path, timeout_ms: int = 60_000) -> list[str]:
    """Open the search page, upload ``image``, wait for the results; returns the result captions
    (``"<score> · <file name> <label> · <w>x<h> · <size>"``) in page order."""
    upload_file(page, url, image, timeout_ms)
    return wait_for_results(page, timeout_ms)


def wait_for_results(page, timeout_ms: int = 60_000) -> list[str]:
    """Wait until the search page shows its results with every thumbnail decoded; their captions."""
    page.get_by_text("Query time").wait_for(timeout=timeout_ms)
    caps = page.locator('[data-testid="stMarkdownContainer"]')
    deadline = time.monotonic() + timeout_ms / 1000
    captions: list[str] = []
    while time.monotonic() < deadline:  # results rendered and every thumbnail decoded
        captions = [t.replace("\n", " ").strip() for t in caps.all_inner_texts()]
        captions = [t for t in captions if RESULT.match(t)]
        ready = page.evaluate(
            "(n) => { const imgs = [...document.querySelectorAll('[data-testid=\"stImage\"] img')];"
            " return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }",
            len(captions),
        )
        if captions and ready:
            break
        time.sleep(0.2)
    else:
        raise TimeoutError(f"no complete results on {page.url} after {timeout_ms / 1000:.0f} s")
    return captions


def thumbnails_in_view(page) -> int:
    """How many result thumbnails are wholly inside the window, without scrolling."""
    return page.evaluate(
        """() => [...document.querySelectorAll('[class*="st-key-card_"] [data-testid="stImage"] img')]
            .filter(i => { const r = i.getBoundingClientRect();
                return i.complete && i.naturalWidth > 0 && r.width > 0 && r.top >= 0 && r.left >= 0
                    && r.bottom <= innerHeight && r.right <= innerWidth; }).length"""
    )


def class_line(page, word: str = "Folder classes") -> str:
    """The query strip's line of ``word`` (``"Folder classes: cat 100% (learnt from ...)"``)."""
    line = page.locator('.st-key-query_strip [data-testid="stMarkdownContainer"]').filter(has_text=f"{word}:")
    return line.first.inner_text().replace("\n", " ").strip()


def lightbox_image(page) -> dict:
    """The lightbox picture's box on screen and its own pixel size (``naturalWidth``/``Height``)."""
    return (
        page.locator(DIALOG)
        .locator('[data-testid="stImage"] img')
        .first.evaluate(
            """i => { const r = i.getBoundingClientRect();
            return {x: r.x, y: r.y, width: r.width, height: r.height, natural_width: i.naturalWidth,
                    natural_height: i.naturalHeight, window_width: innerWidth, window_height: innerHeight}; }"""
        )
    )


def result_cards(page):
    """The result cards of the search page, in page order (a locator)."""
    return page.locator('[class*="st-key-card_"]')


def open_result(page, n: int, timeout_ms: int = 30_000) -> str:
    """Press "Open" on the ``n``-th result (0-based); returns the lightbox's heading (the file name)."""
    result_cards(page).nth(n).get_by_role("button", name="Open").click(timeout=timeout_ms)
    return lightbox_heading(page, timeout_ms)


def lightbox_heading(page, timeout_ms: int = 30_000, not_text: str | None = None) -> str:
    """The file name the lightbox shows, once its large image has loaded (and differs from ``not_text``)."""
    dialog = page.locator(DIALOG)
    dialog.locator("h3").first.wait_for(timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        text = dialog.locator("h3").first.inner_text().strip()
        loaded = dialog.locator('[data-testid="stImage"] img').evaluate_all(
            "imgs => imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0)"
        )
        if loaded and text != not_text:
            return text
        if time.monotonic() > deadline:
            raise TimeoutError(f"the lightbox did not show a new image (still {text!r})")
        time.sleep(0.1)


def lightbox_step(page, name: str, timeout_ms: int = 30_000) -> str:
    """Press "Next" or "Previous" in the lightbox; returns the heading it then shows."""
    before = lightbox_heading(page, timeout_ms)
    page.locator(DIALOG).get_by_role("button", name=name).click(timeout=timeout_ms)
    return lightbox_heading(page, timeout_ms, not_text=before)


def open_page(page, name: str, ready, timeout_ms: int) -> None:
    """Click the sidebar link ``name`` until ``ready`` (a locator on that page) shows. A click that lands
    while the app is still connecting its websocket can be lost on a loaded machine, so it is repeated
    rather than waited on once."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        left_ms = max(1_000, int((deadline - time.monotonic()) * 1000))
        page.get_by_role("link", name=name).click(timeout=left_ms)
        try:
            ready.wait_for(timeout=min(20_000, left_ms))
            return
        except PlaywrightTimeout:
            if time.monotonic() >= deadline:
                raise


def start_indexing(page, url: str, folder: Path, timeout_ms: int = 120_000) -> None:
    """Open the Index page and press "Start indexing" on ``folder``."""
    page.goto(url, wait_until="domcontentloaded")  # (a deep link opens a "page not found" dialog first)
    box = page.get_by_label("Folder to add or update (empty: update every indexed folder)")
    open_page(page, "Index", box, timeout_ms)
    box.fill(str(folder))
    box.press("Enter")
    page.get_by_role("button", name="Start indexing").click()


def index_by_folder(page, url: str, folder: Path, timeout_ms: int = 120_000) -> tuple[list[str], str]:
    """Open the Index page, index ``folder`` and follow the page (it refreshes itself) until the
    outcome shows; returns (the progress bar texts seen, in order, the outcome message)."""
    start_indexing(page, url, folder, timeout_ms)
    seen: list[str] = []
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        for text in page.locator('[data-testid="stProgress"]').all_inner_texts():
            text = text.strip()
            if text and (not seen or seen[-1] != text):
                seen.append(text)
        if not seen:  # the outcome of an earlier run may still be on the page
            time.sleep(0.1)
            continue
        alerts = [t.strip() for t in page.locator('[data-testid="stAlert"]').all_inner_texts() if t.strip()]
        if alerts and not page.locator('[data-testid="stProgress"]').count():
            return seen, alerts[0]
        time.sleep(0.1)
    raise TimeoutError(
        f"indexing {folder} on {url} did not finish within {timeout_ms / 1000:.0f} s; seen {seen}"
    )


def stop_indexing(page, url: str, folder: Path, timeout_ms: int = 60_000) -> tuple[str, str]:
    """Start indexing ``folder`` from the Index page, press "Stop indexing" as soon as images are being
    embedded, and wait for the outcome; returns (the progress text when Stop was pressed, the outcome)."""
    start_indexing(page, url, folder, timeout_ms)
    bar = page.locator('[data-testid="stProgress"]').filter(has_text=re.compile(r"^\s*indexing: [1-9]"))
    bar.wait_for(timeout=timeout_ms)
    pressed = bar.inner_text().strip()
    page.get_by_role("button", name="Stop indexing").click(timeout=timeout_ms)
    outcome = page.locator('[data-testid="stAlert"]').filter(has_text="Indexing stopped")
    outcome.wait_for(timeout=timeout_ms)
    return pressed, outcome.inner_text().strip()


def quarantine_exact_copy(page, url: str, timeout_ms: int = 120_000) -> str:
    """Open the Duplicates page, find the exact copies, press the first group's Apply (its copies
    preselected for quarantine) and confirm the move it asks about; returns the message the page shows."""
    page.goto(url, wait_until="domcontentloaded")
    exact = page.get_by_text("Exact copies only")
    open_page(page, "Duplicates", exact, timeout_ms)
    exact.click(timeout=timeout_ms)
    page.get_by_role("button", name="Find duplicates").click(timeout=timeout_ms)
    page.get_by_role("button", name="Apply", exact=True).first.click(timeout=timeout_ms)
    page.get_by_role("button", name=re.compile(r"^Move \d+ files? to quarantine$")).click(timeout=timeout_ms)
    done = page.locator('[data-testid="stAlert"]').filter(has_text="Moved ")
    done.first.wait_for(timeout=timeout_ms)
    return done.first.inner_text().strip()


def settle(page, timeout_ms: int = 30_000) -> None:
    """Wait until the app has finished running (no "Running..." status), its buttons are drawn and its
    charts are painted: what a screenshot should show."""
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=timeout_ms)
    page.get_by_role("button", name="Open").first.wait_for(timeout=timeout_ms)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stSkeleton\"]')", timeout=timeout_ms
    )
    for chart in page.locator('[data-testid="stVegaLiteChart"]').all():
        chart.locator("canvas, svg").first.wait_for(timeout=timeout_ms)
    time.sleep(1.0)  # the fade-in of the last elements


def small_png(path: Path, max_bytes: int = 300_000) -> int:
    """Re-save a screenshot as a palette PNG when it is larger than ``max_bytes``; returns its size."""
    from PIL import Image

    path = Path(path)
    if path.stat().st_size <= max_bytes:
        return path.stat().st_size
    im = Image.open(path).convert("RGB")
    for colors in (256, 128, 64):
        buf = io.BytesIO()
        im.quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buf, "PNG", optimize=True
        )
        if buf.tell() <= max_bytes:
            break
    path.write_bytes(buf.getvalue())
    return path.stat().st_size


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--query", required=True, help="image to upload")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--engine", default=DEFAULT_ENGINE, choices=ENGINES)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1100)
    ap.add_argument("--max-bytes", type=int, default=300_000)
    ap.add_argument(
        "--open", type=int, default=None, metavar="N", help="show the N-th result (0-based) large"
    )
    a = ap.parse_args(argv)
    with serve(a.index, engine=a.engine) as url, chromium(a.width, a.height) as page:
        caps = search_by_upload(page, url, Path(a.query))
        settle(page)
        if a.open is not None:
            open_result(page, a.open)
            time.sleep(1.0)
        page.screenshot(path=a.out)
    size = small_png(Path(a.out), a.max_bytes)
    print(f"{a.out}: {size / 1000:.0f} KB; results: {caps[:4]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
