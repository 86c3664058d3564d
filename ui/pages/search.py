"""Search: upload an image, paste an indexed path, search by words, or "Similar" on a result.

The results come first: the query is a compact strip (thumbnail, name, classes as text, time) above a
dense grid of thumbnails; clicking one opens the lightbox, "Similar" shows on hover.

The view (query, filters, page, open result) lives in the URL (``ui.logic.urlstate``): a link reopens it,
and each change is one browser history entry, so Back returns to the previous view. An upload is kept
by its sha256 in the index's cache folder (``ui.logic.uploads``), so its URL (``?upload=``) reloads too."""

import hashlib
import time

import streamlit as st

from indexer.search import DEFAULT_QE, DEFAULT_ROTATIONS, TURN_MARGIN
from ui.logic import (
    DEFAULT_PER,
    MAX_QE,
    PER_PAGE,
    CaptureFilter,
    ClassLine,
    View,
    keep_upload,
    kept_upload,
    message,
    page_of_results,
    query_class_lines,
    row_identity,
    upload_identity,
)
from ui.widgets import OPEN, guard, lightbox, service, settings
from ui.widgets import components as C

ss = st.session_state
ss.setdefault("q_src", None)  # ("upload", sha256) | ("path", text) | ("text", words) | ("similar", image_id)
ss.setdefault(OPEN, None)
ss.setdefault("page", 1)
ss.setdefault("queries", {})  # (source, crop) -> (Query, classification, Identity)
ss.setdefault("threshold", 0.0)
ss.setdefault("page_size", DEFAULT_PER)
ss.setdefault("thumbs", "medium")
ss.setdefault("qe", DEFAULT_QE)  # query expansion's K (0 = off)
ss.setdefault("rotations", DEFAULT_ROTATIONS)  # also search the query turned by 90 and 270 degrees
ss.setdefault("uploads", {})  # sha256 -> (name, bytes) of this session's last upload
ss.setdefault("kept", set())  # sha256s kept in the index's cache folder (their URL reloads them)
ss.setdefault("upload_gen", 0)  # a new uploader (empty) after "Similar"
THUMBS = {"small": (96, 90), "medium": (120, 112), "large": (200, 190)}  # min column width, image height


def _reset_view() -> None:
    ss.page = 1
    ss[OPEN] = None


def _more_like(image_id: int) -> None:
    ss.q_src = ("similar", int(image_id))
    ss.upload_gen += 1  # the uploader no longer shows the old file
    ss.last_upload = None
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
    if kind == "upload" and ref in ss.kept:
        query = ("upload", ref)
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
    if view.query is None:  # an upload that could not be kept has no URL: keep it while the uploader holds it
        ss.q_src = ("upload", ss.last_sha) if ss.get("last_upload") and ss.get("last_sha") else None
        return
    kind, ref = view.query
    if kind == "upload":
        ss.q_src = ("upload", ref)
        ss.kept.add(ref)
    elif kind == "id":
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
            "Also search rotated (90/270)",
            key="rotations",
            on_change=_reset_view,
            help="For photos stored sideways (no EXIF orientation): each image keeps its best "
            f"score over the query and its two quarter turns, a turned view's counting {TURN_MARGIN:g} less. "
            "As `vgg-retrieval search --rotations` (on by default).",
        )
        box = C.crop_box("crop")

min_width, thumb_h = THUMBS.get(thumbs, THUMBS["medium"])
C.search_style(thumb_h)
with st.container(key="inputs"):
    with guard():
        has_words = svc.has_text_search()  # INDEX/text exists: vgg-retrieval text-train was run
    cols = st.columns(3 if has_words else 2, gap="small")
    with cols[0]:
        upload = C.image_uploader(
            "Upload an image", "upload" if not ss.upload_gen else f"upload{ss.upload_gen}", cfg
        )
    with cols[1]:
        path_text = st.text_input(
            "...or paste the path of an indexed image", key="path", placeholder="/photos/2023/img_0042.jpg"
        )
    words = ""
    if has_words:
        with cols[2]:
            words = st.text_input(
                "...or search by words",
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
        data = upload.getvalue()
        ss.last_sha = hashlib.sha256(data).hexdigest()
        ss.uploads = {ss.last_sha: (upload.name, data)}  # this session's upload, in memory
        ss.q_src = ("upload", ss.last_sha)
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

if ss.q_src is None:
    publish()
    st.info(
        f"Upload an image or paste a path to search {svc.index.count:,} indexed images. "
        f"Then click a result to see it large, or **Similar** on it to search with that one."
    )
    st.stop()

query = classification = ident = None
with guard():
    key = (ss.q_src, box)
    cached = ss.queries.get(key)
    if cached is None:
        kind, ref = ss.q_src
        if kind == "upload":
            name, data = ss.uploads.get(ref) or kept_upload(svc.directory, ref)
            q = svc.query_from_upload(name, data, cfg, box)  # checked: bytes, pixels, format
            ident = upload_identity(data, q.image.size, box is not None)
            if keep_upload(svc.directory, name, data):
                ss.kept.add(ref)
        elif kind == "text":
            q = svc.query_from_text(ref)
        else:
            row = svc.row_for_path(ref) if kind == "path" else svc.row(ref)
            q = svc.query_from_row(row, box, cfg)
            ident = row_identity(row, box is not None)
        try:
            cls = query_class_lines(svc, q) if kind != "text" else []
        except Exception as e:  # classification must not hide the results
            cls = [ClassLine("Classes", "", (), True, f"classification failed: {message(e)}")]
        ss.queries = {key: (q, cls, ident)}  # keep only the current query
        cached = ss.queries[key]
    query, classification, ident = cached
publish()
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

with st.container(key="query_strip", horizontal=True):
    if query.preview is not None:
        st.image(query.preview, width=88)
    elif query.image_id is not None:
        C.thumbnail(svc, query.image_id, px=88)
    with st.container(width="stretch", gap="xsmall"):
        st.markdown(f"**Query:** {C.md(query.title)}")
        for line in classification:  # where the classes come from, said on the line
            st.markdown(
                f"**{C.md(line.word)}:** {C.md(line.text())}"
                + (f" <small>({C.md(line.source)})</small>" if line.source and line.top else ""),
                unsafe_allow_html=True,
            )
        if pg.own is not None:
            own = pg.own
            row_ = st.container(horizontal=True, vertical_alignment="center", gap="xsmall")
            row_.markdown(
                f"**This image** is in the index: {C.md(own.hit.where.rsplit('/', 1)[-1])}"
                + (f" ({own.copies_note})" if own.copies else ""),
                width="content",
            )
            row_.button(
                "Open",
                key=f"own_{own.hit.id}",
                on_click=_open,
                args=(own.hit.id,),
                type="tertiary",
                icon=":material/open_in_full:",
            )
        timing_slot = st.empty()

t_thumbs = time.perf_counter()
with st.container(key="result_list"):
    if not pg.cards:
        st.warning(
            "No results: lower the minimum similarity or clear the label/folder filters."
            if pg.page == 1
            else "No more results: go back a page."
        )
    with st.grid("auto", min_column_width=min_width, gap="small", key="results_grid"):
        for card in pg.cards:
            hit = card.hit
            with st.container(key=f"card_{hit.id}", gap="xxsmall"):
                C.thumbnail(svc, hit.id)
                st.markdown(C.card_caption_html(hit, card.copies_note), unsafe_allow_html=True)
                st.button("Open", key=f"open_{hit.id}", on_click=_open, args=(hit.id,), help=None)
                st.button(
                    "Similar",
                    key=f"more_{hit.id}",
                    on_click=_more_like,
                    args=(hit.id,),
                    icon=":material/image_search:",
                    help="More like this: search with this image",
                )
    if pg.page > 1 or pg.has_next:
        nav = st.container(horizontal=True, vertical_alignment="center")
        nav.button(
            "Previous page", key="page_prev", on_click=_to_page, args=(pg.page - 1,), disabled=pg.page == 1
        )
        first = (pg.page - 1) * per + 1
        nav.markdown(f"Page {pg.page}: results {first}\u2013{first + len(pg.cards) - 1}")
        nav.button(
            "Next page", key="page_next", on_click=_to_page, args=(pg.page + 1,), disabled=not pg.has_next
        )
t_thumbs = time.perf_counter() - t_thumbs

t = dict(query.timings, search=pg.seconds, thumbnails=t_thumbs)
parts = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in t.items())
timing_slot.caption(
    f"Query time {sum(t.values()) * 1000:.0f} ms ({parts}); {len(pg.cards)} results"
    f"{' (more on the next page)' if pg.has_next else ''} of {pg.fetched} neighbours looked at"
)

if ss[OPEN] is not None:
    lightbox(
        svc,
        [c.hit.id for c in pg.cards],
        {c.hit.id: c for c in pg.cards + ([pg.own] if pg.own else [])},
        _more_like,
        publish,
    )
