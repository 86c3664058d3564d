"""The search page's lightbox: one result large in a dialog, shown where the user is looking (Esc or
the X closes it), previous/next through the page's results (buttons, or the Left/Right keys; the
counter counts the results only, not the query), the original file to download and its details.

The picture fits the window (contain: never cropped, never enlarged past its own pixels), with the
name and buttons on the same screen; "100%" shows it pixel for pixel, scrolling inside the dialog.

The original is read only for a row of the index, through ``Index.indexed_file`` (which refuses a
path outside the index's folders): never a path from the URL or the user."""

from __future__ import annotations

import mimetypes
import os
import time

import streamlit as st

from indexer.video import format_time
from ui.logic import human_bytes

from . import components as C
from .state import guard

LIGHTBOX_PX = 1280
FULL_PX = 4096  # "100%": the original's pixels, up to this side
LIGHTBOX_CSS = """<style>
div[role="dialog"] { margin-top: 1rem !important; margin-bottom: 1rem !important; }
.st-key-lb_image img { display: block; margin: 0 auto; width: auto !important; height: auto;
  max-width: 100%; max-height: calc(100vh - 19rem); object-fit: contain; }
.st-key-lb_full { max-height: calc(100vh - 19rem); overflow: auto; }
.st-key-lb_full img { max-width: none !important; width: auto !important; }
.st-key-lb_nav p { margin: 0; }
.st-key-lb_title h3 { font-size: 1.15rem; overflow-wrap: anywhere; }
</style>"""
OPEN = "open_id"  # session state: the id of the result in the lightbox, or None
VIDEO_PLAY_MAX_BYTES = 512 * 1024 * 1024  # st.video sends the whole file to the browser
_VIDEO_MIME = {
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
}


def _dismissed() -> None:
    st.session_state[OPEN] = None


def _move(image_id: int) -> None:
    st.session_state[OPEN] = int(image_id)


@st.dialog("Result", width="large", on_dismiss=_dismissed)
def lightbox(svc, order: list[int], cards: dict, on_similar, on_change) -> None:
    """``order``: the ids of the page's results; ``cards``: id -> ui.logic.results.Card; ``on_similar(id)``:
    search with that image; ``on_change()``: after the shown result changed (the URL follows)."""
    with guard():  # an error shows in the dialog
        _body(svc, order, cards, on_similar, on_change)


def _body(svc, order: list[int], cards: dict, on_similar, on_change) -> None:
    image_id = st.session_state.get(OPEN)
    if image_id is None:
        return
    on_change()
    row = svc.row(image_id)
    pos = order.index(image_id) if image_id in order else None
    nav = st.container(horizontal=True, vertical_alignment="center", key="lb_nav")
    prev_id = order[pos - 1] if pos else None
    next_id = order[pos + 1] if pos is not None and pos + 1 < len(order) else None
    nav.button(
        "Previous",
        key="lb_prev",
        icon=":material/chevron_left:",
        disabled=prev_id is None,
        on_click=_move,
        args=(prev_id,),
        shortcut="Left",
    )
    nav.markdown(f"**{pos + 1} / {len(order)}**" if pos is not None else "the query's own file")
    nav.button(
        "Next",
        key="lb_next",
        icon=":material/chevron_right:",
        disabled=next_id is None,
        on_click=_move,
        args=(next_id,),
        shortcut="Right",
    )
    full = nav.toggle(
        "100%", key="lb_zoom", help="Show the picture pixel for pixel (scroll inside it); off: fit the window"
    )
    st.html(LIGHTBOX_CSS)
    side = max(row.width or 0, row.height or 0) or LIGHTBOX_PX
    data = svc.thumbnail(row.id, min(side, FULL_PX) if full else min(side, LIGHTBOX_PX))
    if data is None:
        st.warning("cannot show this image (missing or unreadable now)")
    else:
        with st.container(key="lb_full" if full else "lb_image", horizontal_alignment="center"):
            st.image(data, width="content")  # its own pixels at most: CSS fits it to the window
    card = cards.get(image_id)
    score = f"similarity **{card.hit.score:.4f}** · " if card is not None else ""
    with st.container(key="lb_title", gap="xxsmall"):
        st.markdown(f"### {C.md(os.path.basename(row.path))}")
        st.markdown(f"{score}{row.width} x {row.height} · {human_bytes(row.size)} · {C.md(row.label or '-')}")
    actions = st.container(horizontal=True)
    if getattr(row, "source", None) is None:
        path = svc.index.indexed_file(row.id)  # inside the index's folders, or refused
        actions.download_button(
            "Download original",
            data=lambda: path.read_bytes(),
            file_name=os.path.basename(row.path),
            key="lb_download",
            mime=mimetypes.guess_type(row.path)[0] or "application/octet-stream",
            icon=":material/download:",
            on_click="ignore",
            help=f"The full-size file ({human_bytes(row.size)}) as it is on disk",
        )
    if actions.button(
        "Similar",
        key="lb_similar",
        icon=":material/image_search:",
        help="More like this: search with this image",
    ):
        on_similar(row.id)
        st.rerun()
    if card is not None and card.copies:
        st.markdown(f"**Exact copies** (same bytes, {card.copies_note}):")
        st.code("\n".join([card.hit.path] + [c.path for c in card.copies]), language=None)
    else:
        st.code(row.path, language=None)
    play_moment(svc, row)
    with st.expander("Details"):
        meta = {
            "format": row.format,
            "sha256": row.sha256,
            "id": str(row.id),
            "modified": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.mtime_ns / 1e9)),
            "indexed": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.indexed_at)),
        }
        st.table({"field": list(meta), "value": list(meta.values())})


def play_moment(svc, row) -> None:
    """A video frame's result: its video, starting at that moment."""
    if getattr(row, "source", None) is None:
        return

    path = svc.index.indexed_file(row.id)  # the video file, inside the index's folders
    st.markdown(f"**{C.md(os.path.basename(row.source))} @ {format_time(row.time_s)}**")
    if path.stat().st_size > VIDEO_PLAY_MAX_BYTES:
        st.caption("Too large to play in the page: open the file at that time in a video player.")
        return
    st.video(
        str(path), format=_VIDEO_MIME.get(path.suffix.lower(), "video/mp4"), start_time=float(row.time_s or 0)
    )
