"""Search: upload an image, paste an indexed path, or "more like this" on a result."""
import time

import streamlit as st

from ui import components as C
from ui.core import UserError
from ui.state import guard, service, settings

ss = st.session_state
ss.setdefault("q_src", None)  # ("upload", file_id) | ("path", text) | ("similar", image_id)
ss.setdefault("visible", None)
ss.setdefault("selected", None)  # (image_id, score)
ss.setdefault("queries", {})  # (source, crop) -> (Query, classification)


def _reset_view() -> None:
    ss.visible = None
    ss.selected = None


def _more_like(image_id: int) -> None:
    ss.q_src = ("similar", int(image_id))
    _reset_view()


def _open(image_id: int, score: float) -> None:
    ss.selected = (int(image_id), float(score))


def _close() -> None:
    ss.selected = None


def _load_more(step: int) -> None:
    ss.visible = (ss.visible or step) + step


VIDEO_PLAY_MAX_BYTES = 512 * 1024 * 1024  # st.video sends the whole file to the browser
_VIDEO_MIME = {".webm": "video/webm", ".mkv": "video/x-matroska", ".mov": "video/quicktime",
               ".avi": "video/x-msvideo"}


def _play_moment(svc, image_id: int) -> None:
    """A video frame's result: its video, starting at that moment."""
    import os

    from indexer.keyframes import format_time

    row = svc.row(image_id)
    if getattr(row, "source", None) is None:
        return
    path = svc.index.indexed_file(row.id)  # the video file, inside the index's folders
    st.markdown(f"**{C.md(os.path.basename(row.source))} @ {format_time(row.time_s)}**")
    if path.stat().st_size > VIDEO_PLAY_MAX_BYTES:
        st.caption("Too large to play in the page: open the file at that time in a video player.")
        return
    st.video(str(path), format=_VIDEO_MIME.get(path.suffix.lower(), "video/mp4"), start_time=float(row.time_s or 0))


st.title("Search")
cfg = settings()
svc = service()
if svc is None:
    st.stop()

with st.sidebar:
    st.markdown("### Filters")
    threshold = st.slider("Minimum similarity", 0.0, 1.0, 0.0, 0.01, key="threshold",
                          help="Cosine similarity of the descriptors; 1.0 is the same picture.")
    labels, roots = [], []
    with guard():
        labels = st.multiselect("Folder labels", svc.labels(), key="labels", placeholder="all labels")
        all_roots = svc.roots()
        if len(all_roots) > 1:
            roots = st.multiselect("Indexed folders", all_roots, key="roots", placeholder="all folders")
    page_size = st.selectbox("Results per page", [12, 24, 48], key="page_size")

c_up, c_path = st.columns(2)
with c_up:
    upload = C.image_uploader("Upload an image (drag and drop)", "upload", cfg)
with c_path:
    path_text = st.text_input("...or paste the path of an indexed image", key="path",
                              placeholder="/photos/2023/img_0042.jpg")
    st.caption("Or click **Similar** under any result: more like this.")
words = ""
with guard():
    if svc.has_text_search():  # INDEX/text exists: vgg-retrieval text-train was run
        words = st.text_input("Search by words", key="words", placeholder="a red flower",
                              help="Photos that match a description (learnt from folder names, file names "
                                   "and caption files by vgg-retrieval text-train).")

# whichever input changed last is the query
up_id = upload.file_id if upload is not None else None
if up_id != ss.get("last_upload"):
    ss.last_upload = up_id
    if up_id is not None:
        ss.q_src = ("upload", up_id)
        _reset_view()
    elif ss.q_src and ss.q_src[0] == "upload":
        ss.q_src = None
for kind, text, last in (("path", path_text, "last_path"), ("text", words, "last_words")):
    if text != ss.get(last):
        ss[last] = text
        if text.strip():
            ss.q_src = (kind, text)
            _reset_view()
        elif ss.q_src and ss.q_src[0] == kind:
            ss.q_src = None

box = C.crop_box("crop")

if ss.q_src is None:
    st.info(f"Upload an image or paste a path to search {svc.index.count:,} indexed images.")
    st.stop()

query = classification = None
with guard():
    key = (ss.q_src, box)
    cached = ss.queries.get(key)
    if cached is None:
        kind, ref = ss.q_src
        if kind == "upload":
            if upload is None:
                raise UserError("the uploaded file is gone; upload it again")
            q = svc.query_from_upload(upload.name, upload.getvalue(), cfg, box)
        elif kind == "text":
            q = svc.query_from_text(ref)
        elif kind == "path":
            q = svc.query_from_row(svc.row_for_path(ref), box, cfg)
        else:
            q = svc.query_from_row(svc.row(ref), box, cfg)
        try:
            cls = svc.classifications(q) if kind != "text" else [
                ("Classification", None, "A search by words has no classification.")]
        except Exception as e:  # classification must not hide the results
            from ui.core import message

            cls = [("Classification", None, f"Classification failed: {message(e)}")]
        ss.queries = {key: (q, cls)}  # keep only the current query
        cached = ss.queries[key]
    query, classification = cached

if query is None:
    st.stop()

visible = ss.visible or page_size
result = None
with guard():
    result = svc.search(query, want=visible + 1, threshold=threshold, labels=labels, roots=roots)
if result is None:
    st.stop()

c_q, c_cls = st.columns([1, 2])
with c_q:
    st.markdown(f"**Query:** {C.md(query.title)}")
    if query.preview is not None:
        st.image(query.preview, width=220)
    elif query.image_id is not None:
        C.thumbnail(svc, query.image_id)
    timing_slot = st.empty()
with c_cls:
    for section in classification:
        C.classification(*section)

if ss.selected is not None:
    with guard():
        C.detail(svc, ss.selected[0], ss.selected[1], on_close=_close)
        _play_moment(svc, ss.selected[0])

hits = result.hits[:visible]
more = len(result.hits) > visible
if not hits:
    st.warning("No results: lower the minimum similarity or clear the label/folder filters.")
else:
    st.markdown(f"**{len(hits)} result{'s' if len(hits) != 1 else ''}** shown"
                + (" (more below)" if more else ""))
t_thumbs = time.perf_counter()
cols_per_row = 4
for start in range(0, len(hits), cols_per_row):
    cols = st.columns(cols_per_row)
    for col, hit in zip(cols, hits[start:start + cols_per_row]):
        with col, st.container(border=True):
            C.thumbnail(svc, hit.id)
            st.markdown(C.hit_caption(hit))
            b1, b2 = st.columns(2)
            b1.button("Open", key=f"open_{hit.id}", on_click=_open, args=(hit.id, hit.score),
                      width="stretch")
            b2.button("Similar", key=f"more_{hit.id}", on_click=_more_like, args=(hit.id,),
                      width="stretch", help="More like this: search with this image")
t_thumbs = time.perf_counter() - t_thumbs
if more:
    st.button("Load more", key="load_more", on_click=_load_more, args=(page_size,))

t = dict(query.timings, search=result.seconds, thumbnails=t_thumbs)
total = sum(t.values())
parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in t.items())
timing_slot.caption(f"Query time {total * 1000:.0f} ms ({parts}); looked at {result.fetched} neighbours")
