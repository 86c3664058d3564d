"""Streamlit building blocks shared by the pages."""

from __future__ import annotations

import os
import re

import streamlit as st

from ui.launch import receive_mb
from ui.logic import UPLOAD_TYPES, Service, Settings, human_bytes


def image_uploader(label: str, key: str, settings: Settings):
    """The uploader takes files up to a few times the limit, so that a file over the limit reaches
    ``read_upload`` and its refusal is a message in the page (Streamlit's own refusal is a small
    tooltip in the drop zone, easy to miss); the limit is said in the label."""
    mb = settings.max_upload_bytes / (1024 * 1024)
    return st.file_uploader(
        f"{label} (at most {mb:g} MB)",
        type=UPLOAD_TYPES,
        key=key,
        max_upload_size=receive_mb(mb),
        help=f"JPEG, PNG, WebP, GIF, BMP or TIFF; at most {mb:g} MB and "
        f"{settings.max_pixels / 1e6:.0f} megapixels. Kept in memory only.",
    )


def crop_box(key: str) -> tuple[float, float, float, float] | None:
    """Optional crop of the query: four sliders in percent; None when off."""
    if not st.checkbox("Crop a region of the query before searching", key=f"{key}_on"):
        return None
    c1, c2 = st.columns(2)
    left, right = c1.slider("Left / right edge (%)", 0, 100, (0, 100), key=f"{key}_x")
    top, bottom = c2.slider("Top / bottom edge (%)", 0, 100, (0, 100), key=f"{key}_y")
    return (left / 100, top / 100, right / 100, bottom / 100)


def md(text: str) -> str:
    """``text`` (a file name, a label) shown literally inside Markdown."""
    return _MD_SPECIAL.sub(r"\\\g<0>", str(text)).replace("\n", " ")


_MD_SPECIAL = re.compile(r"[\\`*_{}\[\]<>#|~$:]")


def hit_caption(hit) -> str:
    name = md(os.path.basename(getattr(hit, "where", hit.path)))  # video frames: "clip.mp4 @ 01:12.5"
    dims = f"{hit.width}x{hit.height}" if hit.width else "?"
    c = getattr(hit, "capture", None)
    shot = " · ".join(md(x) for x in ((c.captured or "")[:10], c.camera or "") if x) if c is not None else ""
    return f"**{hit.score:.3f}** · {name}  \n{md(hit.label or '-')} · {dims} · {human_bytes(hit.size)}" + (
        f"  \n{shot}" if shot else ""
    )


def thumbnail(svc: Service, image_id: int, px: int | None = None, caption: str | None = None) -> None:
    """An indexed image scaled to fit ``px`` (default: the grid's thumbnail), as wide as its cell when
    ``px`` is not given, else at most ``px`` wide."""
    data = svc.thumbnail(image_id) if px is None else svc.thumbnail(image_id, px)
    if data is None:
        st.warning("cannot show this image (missing or unreadable now)")
    else:
        st.image(data, caption=caption, width="stretch" if px is None else px)


PAGE_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 3.75rem; }
[data-testid="stFileUploaderDropzoneInstructions"] small { display: none; }
@media (max-width: 640px) {
  [data-testid="stMainBlockContainer"] { padding: 3.75rem 0.75rem 1rem; }
  h1 { font-size: 1.5rem !important; padding: 0 0 0.25rem !important; }
  [data-testid="stFileUploaderDropzone"] { padding: 0.5rem 0.75rem; }
  div:has(> .st-key-results) { order: 1; }
  div:has(> .st-key-query_panel) { order: 2; }
}
</style>"""


def page_style() -> None:
    """A compact header (no big title padding on a phone); on a phone the results come before the
    query panel, so that the upload and the first results fit on the first screen."""
    st.html(PAGE_CSS)


def grid_style(key: str, thumb_px: int) -> None:
    """Thumbnails of the grid ``key`` in cells of one height, the whole picture shown (contain, not cover)."""
    st.html(
        f'<style>.st-key-{key} [data-testid="stImage"] img {{ height: {int(thumb_px)}px; '
        f"width: 100%; object-fit: contain; }}</style>"
    )


def classification(title: str, top: list[tuple[str, float]] | None, note: str) -> None:
    """Top-5 classes as a bar chart under ``title``, or the note that says why there are none."""
    st.markdown(f"#### {md(title)}")
    if not top:
        st.info(note)
        return
    import pandas as pd

    df = pd.DataFrame({"class": [c for c, _ in top], "probability": [p for _, p in top]})
    st.bar_chart(df, x="class", y="probability", horizontal=True, sort="-probability", height=200)
    st.markdown("Top classes: " + ", ".join(f"{c} {p:.1%}" for c, p in top))


# --- the search page's compact query strip and dense result grid ------------------------------------
def name_html(name: str) -> str:
    """A file name that ellipsises whole: the stem shrinks (``paris_eiffel_00…``), the extension stays."""
    import html

    stem, dot, ext = str(name).rpartition(".")
    if not dot or not stem or len(ext) > 5 or not any(c.isalpha() for c in ext):  # not a video's '@ 00:04.0'
        stem, ext = str(name), ""
    return (
        f'<span class="vr-name" title="{html.escape(str(name))}"><span class="vr-stem">{html.escape(stem)}</span>'
        + (f'<span class="vr-ext">.{html.escape(ext)}</span>' if ext else "")
        + "</span>"
    )


def card_caption_html(hit, copies_note: str = "") -> str:
    """One line under a result's thumbnail: score and whole-ellipsised name; the folder label, pixel
    size, bytes and capture in its tooltip (and in the lightbox)."""
    import html

    dims = f"{hit.width}x{hit.height}" if hit.width else "?"
    c = getattr(hit, "capture", None)
    shot = " · ".join(x for x in ((c.captured or "")[:10], c.camera or "") if x) if c is not None else ""
    details = " · ".join(x for x in (hit.label or "-", dims, human_bytes(hit.size), shot, copies_note) if x)
    name = os.path.basename(getattr(hit, "where", hit.path))
    copies = f' <b class="vr-copies">{html.escape(copies_note)}</b>' if copies_note else ""
    return (
        f'<div class="vr-cap" title="{html.escape(details)}" data-label="{html.escape(hit.label or "")}">'
        f"<b>{hit.score:.3f}</b> · {name_html(name)}{copies}</div>"
    )


SEARCH_CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 3rem; }
.st-key-inputs [data-testid="stFileUploaderDropzone"] { padding: 0.35rem 0.75rem; }
.st-key-inputs [data-testid="stFileUploaderDropzoneInstructions"] { display: none; }
.st-key-query_strip { gap: 0.75rem; align-items: flex-start; }
.st-key-query_strip [data-testid="stImage"] img { max-height: 88px; width: auto; object-fit: contain; }
.st-key-query_strip [data-testid="stMarkdownContainer"] p { margin: 0; line-height: 1.45; }
.st-key-query_strip [data-testid="stCaptionContainer"] { margin-top: 0.2rem; }
.vr-cap { display: flex; gap: 0.25rem; white-space: nowrap; font-size: 0.8rem; line-height: 1.2; }
.vr-name { display: block; flex: 1 1 0; min-width: 0; overflow: hidden; white-space: nowrap; }
.vr-stem { display: inline-block; max-width: calc(100% - 2.6em); overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; vertical-align: bottom; }
.vr-copies { flex: none; }
.st-key-results_grid [class*="st-key-card_"] { position: relative; gap: 0.15rem; }
.st-key-results_grid [class*="st-key-card_"] [data-testid="stMarkdownContainer"] p { margin: 0; }
.st-key-results_grid [class*="st-key-card_"] [data-testid="stImage"] { margin: 0; }
.st-key-results_grid [class*="st-key-open_"] {
  position: absolute; inset: 0; z-index: 1; width: 100% !important; }
.st-key-results_grid [class*="st-key-open_"] button {
  position: absolute; inset: 0; width: 100%; height: 100%; opacity: 0; border: none; }
.st-key-results_grid [class*="st-key-more_"] {
  position: absolute; top: 4px; right: 4px; bottom: auto; left: auto; z-index: 2;
  width: auto !important; height: auto !important; pointer-events: none;
  opacity: 0; transition: opacity 0.15s; }
.st-key-results_grid [class*="st-key-more_"] button { pointer-events: auto; }
.st-key-results_grid [class*="st-key-card_"]:hover [class*="st-key-more_"],
.st-key-results_grid [class*="st-key-more_"]:focus-within { opacity: 1; }
.st-key-results_grid [class*="st-key-more_"] button {
  min-height: 0; padding: 0.1rem 0.45rem; font-size: 0.75rem; background: rgba(255,255,255,0.92); }
@media (hover: none) { .st-key-results_grid [class*="st-key-more_"] { opacity: 0.9; } }
@media (max-width: 640px) {
  [data-testid="stMainBlockContainer"] { padding: 4rem 0.6rem 1rem; }
  .st-key-results_grid { grid-template-columns: repeat(3, minmax(0, 1fr)) !important; }
}
</style>"""


def search_style(thumb_px: int) -> None:
    """The search page's compact layout: a small drop zone (without Streamlit's own size line, which
    names the server's receiving limit, not the page's: the label says the one limit), the query strip, a dense grid of
    thumbnails of one height (the whole picture: contain), clicking one opens it, "Similar" on
    hover (always shown on a touch screen)."""
    st.html(
        SEARCH_CSS + f'<style>.st-key-results_grid [data-testid="stImage"] img {{ height: {int(thumb_px)}px; '
        f"width: 100%; object-fit: contain; background: rgba(128,128,128,0.08); }}</style>"
    )
