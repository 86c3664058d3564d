"""Search: upload an image, paste an indexed path, search by words, or "Similar" on a result.

The view (query, filters, page, open result) lives in the URL (``ui.logic.urlstate``): a link reopens it,
and each change is one browser history entry, so Back returns to the previous view."""

import time

import streamlit as st

from indexer.search import DEFAULT_QE
from retrieval import UserError
from ui.logic import (
    DEFAULT_PER,
    MAX_QE,
    PER_PAGE,
    CaptureFilter,
    View,
    message,
    page_of_results,
    row_identity,
    upload_identity,
)
from ui.widgets import OPEN, guard, lightbox, service, settings
from ui.widgets import components as C

ss = st.session_state
ss.setdefault("q_src", None)  # ("upload", file_id) | ("path", text) | ("text", words) | ("similar", image_id)
ss.setdefault(OPEN, None)
ss.setdefault("page", 1)
ss.setdefault("queries", {})  # (source, crop) -> (Query, classification, Identity)
ss.setdefault("threshold", 0.0)
ss.setdefault("page_size", DEFAULT_PER)
ss.setdefault("thumbs", "medium")
ss.setdefault("qe", DEFAULT_QE)  # query expansion's K (0 = off)
ss.setdefault("rotations", False)  # also search the query turned by 90/180/270 degrees
THUMBS = {"small": (120, 110), "medium": (160, 150), "large": (240, 220)}  # min column width, image height


def _reset_view() -> None:
    ss.page = 1
    ss[OPEN] = None


def _more_like(image_id: int) -> None:
    ss.q_src = ("similar", int(image_id))
    _reset_view()


def _open(image_id: int) -> None:
    ss[OPEN] = int(image_id)


def _to_page(n: int) -> None:
    ss.page = max(1, int(n))
    ss[OPEN] = None


def _capture_filter(known_cameras) -> CaptureFilter:
    """The sidebar's capture filters: a date range and cameras (from the photos' EXIF)."""
    with st.expander("Capture date and camera"):
        days = st.date_input(
            "Captured between",
            value=(),
            key="captured",
            on_change=_reset_view,
            help="The EXIF capture date; photos without one are left out while a range is set.",
        )
        cameras = st.multiselect(
            "Cameras", known_cameras, key="cameras", placeholder="all cameras", on_change=_reset_view
        )
    days = list(days) if isinstance(days, (list, tuple)) else [days]
    first = days[0].isoformat() if days else None
    last = days[1].isoformat() if len(days) > 1 else first
    return CaptureFilter(first, last, tuple(cameras))


def view_now() -> View:
    """The view the page shows now, as its URL would say it."""
    kind, ref = ss.q_src or (None, None)
    query = {"similar": ("id", str(ref)), "path": ("path", ref), "text": ("text", ref)}.get(kind)
    return View(
        query,
        float(ss.threshold),
        tuple(ss.get("labels") or ()),
        tuple(ss.get("roots") or ()),
        int(ss.page_size),
        int(ss.page),
        ss[OPEN],
        int(ss.qe),
        bool(ss.rotations),
    ).normal()


def adopt(view: View, known_labels, known_roots) -> None:
    """Show ``view`` (a link was opened, or Back/Forward moved to it): the widgets take its values."""
    ss.threshold = view.threshold
    ss.labels = [v for v in view.labels if v in known_labels]
    ss.roots = [v for v in view.roots if v in known_roots]
    ss.page_size, ss.page, ss[OPEN] = view.per, view.page, view.open
    ss.qe, ss.rotations = view.qe, view.rotations
    if view.query is None:  # an upload can't be in a URL: keep it while the uploader holds it
        ss.q_src = ("upload", ss.last_upload) if ss.get("last_upload") else None
        return
    kind, ref = view.query
    if kind == "id":
        ss.q_src = ("similar", int(ref))
    elif kind == "path":
        ss.q_src, ss.path, ss.last_path = ("path", ref), ref, ref
    else:
        ss.q_src, ss.words, ss.last_words = ("text", ref), ref, ref


def publish() -> None:
    """Write the view into the URL when it changed (one history entry per change, none per rerun)."""
    now = view_now()
    if now != ss.get("url_view"):
        ss.url_view = now
        st.query_params.from_dict(now.params())


C.page_style()
st.title("Search")
cfg = settings()
svc = service()
if svc is None:
    st.stop()

known_labels, known_roots, known_cameras = [], [], []
with guard():
    known_labels, known_roots, known_cameras = svc.labels(), svc.roots(), svc.cameras()
url = View.from_params(st.query_params.get_all)
if url != ss.get("url_view"):
    adopt(url, known_labels, known_roots)
    ss.url_view = url

with st.sidebar:
    st.markdown("### Filters")
    threshold = st.slider(
        "Minimum similarity",
        0.0,
        1.0,
        step=0.01,
        key="threshold",
        on_change=_reset_view,
        help="Cosine similarity of the descriptors; 1.0 is the same picture.",
    )
    labels = st.multiselect(
        "Folder labels", known_labels, key="labels", placeholder="all labels", on_change=_reset_view
    )
    roots = []
    if len(known_roots) > 1:
        roots = st.multiselect(
            "Indexed folders", known_roots, key="roots", placeholder="all folders", on_change=_reset_view
        )
    capture = _capture_filter(known_cameras)
    with st.expander("Search options"):
        per = st.selectbox("Results per page", PER_PAGE, key="page_size", on_change=_reset_view)
        thumbs = st.segmented_control("Thumbnail size", list(THUMBS), key="thumbs") or "medium"
        qe = st.number_input(
            "Query expansion (K)",
            0,
            MAX_QE,
            step=1,
            key="qe",
            on_change=_reset_view,
            help="Search again with the query blended with its K best hits (weighted by "
            "their similarity): finds more views of the same place or object. 0: off. "
            "As `vgg-retrieval search --qe K`; searches by words do not use it.",
        )
        rotations = st.checkbox(
            "Also search rotated (90/180/270)",
            key="rotations",
            on_change=_reset_view,
            help="For photos stored sideways or upside down (no EXIF orientation): each "
            "image keeps its best score over the query and its three turns. As "
            "`vgg-retrieval search --rotations`.",
        )

c_up, c_path = st.columns(2)
with c_up:
    upload = C.image_uploader("Upload an image", "upload", cfg)
with c_path:
    path_text = st.text_input(
        "...or paste the path of an indexed image", key="path", placeholder="/photos/2023/img_0042.jpg"
    )
words = ""
with guard():
    if svc.has_text_search():  # INDEX/text exists: vgg-retrieval text-train was run
        words = st.text_input(
            "Search by words",
            key="words",
            placeholder="a red flower",
            help="Photos that match a description (learnt from folder names, file names "
            "and caption files by vgg-retrieval text-train).",
        )

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
publish()

if ss.q_src is None:
    st.info(
        f"Upload an image or paste a path to search {svc.index.count:,} indexed images. "
        f"Then **Similar** under any result searches with that one."
    )
    st.stop()

query = classification = ident = None
with guard():
    key = (ss.q_src, box)
    cached = ss.queries.get(key)
    if cached is None:
        kind, ref = ss.q_src
        if kind == "upload":
            if upload is None:
                raise UserError("the uploaded file is gone; upload it again")
            data = upload.getvalue()
            q = svc.query_from_upload(upload.name, data, cfg, box)
            ident = upload_identity(data, q.image.size, box is not None)
        elif kind == "text":
            q = svc.query_from_text(ref)
        else:
            row = svc.row_for_path(ref) if kind == "path" else svc.row(ref)
            q = svc.query_from_row(row, box, cfg)
            ident = row_identity(row, box is not None)
        try:
            cls = (
                svc.classifications(q)
                if kind != "text"
                else [("Classification", None, "A search by words has no classification.")]
            )
        except Exception as e:  # classification must not hide the results
            cls = [("Classification", None, f"Classification failed: {message(e)}")]
        ss.queries = {key: (q, cls, ident)}  # keep only the current query
        cached = ss.queries[key]
    query, classification, ident = cached
if query is None:
    st.stop()

pg = None
with guard():
    pg = page_of_results(
        svc,
        query,
        ident,
        ss.page,
        per,
        threshold=threshold,
        labels=labels,
        roots=roots,
        qe=int(qe),
        rotations=bool(rotations),
        capture=capture,
    )
if pg is None:
    st.stop()

with st.container(key="query_panel"):
    c_q, c_cls = st.columns([1, 2])
    with c_q:
        st.markdown(f"**Query:** {C.md(query.title)}")
        if query.preview is not None:
            st.image(query.preview, width=200)
        elif query.image_id is not None:
            C.thumbnail(svc, query.image_id, px=200)
        if pg.own is not None:
            own = pg.own
            line = st.container(horizontal=True, vertical_alignment="center", gap="xsmall")
            line.markdown(
                f"**This image** is in the index: {C.md(own.hit.where.rsplit('/', 1)[-1])}"
                + (f" ({own.copies_note})" if own.copies else ""),
                width="content",
            )
            line.button(
                "Open",
                key=f"own_{own.hit.id}",
                on_click=_open,
                args=(own.hit.id,),
                type="tertiary",
                icon=":material/open_in_full:",
            )
        timing_slot = st.empty()
    with c_cls:
        for section in classification:
            C.classification(*section)

t_thumbs = time.perf_counter()
with st.container(key="results"):
    if not pg.cards:
        st.warning(
            "No results: lower the minimum similarity or clear the label/folder filters."
            if pg.page == 1
            else "No more results: go back a page."
        )
    else:
        first = (pg.page - 1) * per + 1
        st.markdown(
            f"**Results {first}\u2013{first + len(pg.cards) - 1}**"
            + (" (more on the next page)" if pg.has_next else "")
        )
    min_width, thumb_h = THUMBS.get(thumbs, THUMBS["medium"])
    C.grid_style("results_grid", thumb_h)
    with st.grid("auto", min_column_width=min_width, key="results_grid"):
        for card in pg.cards:
            hit = card.hit
            with st.container(border=True, key=f"card_{hit.id}"):
                C.thumbnail(svc, hit.id)
                st.markdown(C.hit_caption(hit) + (f" · **{card.copies_note}**" if card.copies else ""))
                b = st.container(horizontal=True, gap="xsmall")
                b.button("Open", key=f"open_{hit.id}", on_click=_open, args=(hit.id,), width="stretch")
                b.button(
                    "Similar",
                    key=f"more_{hit.id}",
                    on_click=_more_like,
                    args=(hit.id,),
                    width="stretch",
                    help="More like this: search with this image",
                )
    if pg.page > 1 or pg.has_next:
        nav = st.container(horizontal=True, vertical_alignment="center")
        nav.button(
            "Previous page", key="page_prev", on_click=_to_page, args=(pg.page - 1,), disabled=pg.page == 1
        )
        nav.markdown(f"Page {pg.page}")
        nav.button(
            "Next page", key="page_next", on_click=_to_page, args=(pg.page + 1,), disabled=not pg.has_next
        )
t_thumbs = time.perf_counter() - t_thumbs

t = dict(query.timings, search=pg.seconds, thumbnails=t_thumbs)
parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in t.items())
timing_slot.caption(
    f"Query time {sum(t.values()) * 1000:.0f} ms ({parts}); looked at {pg.fetched} neighbours"
)

if ss[OPEN] is not None:
    shown = ([pg.own] if pg.own is not None else []) + pg.cards
    lightbox(svc, [c.hit.id for c in shown], {c.hit.id: c for c in shown}, _more_like, publish)
