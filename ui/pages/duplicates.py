"""Duplicates: run a dedup over the index (or open a saved report) and browse the groups."""
import os
import time

import streamlit as st

from ui import components as C
from ui.core import human_bytes
from ui.dedup import find_reports, load_report_bytes, load_report_file, member_row, run_dedup, save_report
from ui.state import guard, service, settings

ss = st.session_state
ss.setdefault("dedup", None)  # {"report": DedupReport, "source": str}
ss.setdefault("dedup_page", 0)

GROUPS_PER_PAGE = 5
PER_ROW = 5


def _set_page(n: int) -> None:
    ss.dedup_page = max(0, n)


st.title("Duplicates")
cfg = settings()
svc = service()
if svc is None:
    st.stop()

with guard():
    from indexer.dedup import default_threshold

    run_tab, open_tab = st.tabs(["Find duplicates now", "Open a saved report"])
    with run_tab:
        c1, c2 = st.columns([2, 1])
        verify = c2.checkbox("Verify pixels", value=True, key="dedup_verify",
                             help="Every candidate pair is a duplicate only when the two pictures, aligned by their "
                                  "agreeing keypoints, agree pixel for pixel; other shots of one scene are listed "
                                  "as similar shots, never as copies (reads those files again).")
        threshold = c1.slider("Similarity threshold (cosine)", 0.50, 1.00,
                              float(default_threshold(svc.index.spec, verify)), 0.01,
                              key=f"dedup_threshold_{int(verify)}",
                              help="With verification: pairs too plain for keypoints are duplicates at or above "
                                   "it. Without: every pair at or above it is. Exact copies (same sha256) always are.")
        exact_only = c2.checkbox("Exact copies only", key="dedup_exact")
        if st.button("Find duplicates", key="dedup_run", type="primary"):
            with guard(), st.spinner("Searching the index for duplicates..."):
                t0 = time.perf_counter()
                report = run_dedup(svc, threshold, near=not exact_only, verify=verify)
                ss.dedup = {"report": report, "source": f"run now ({time.perf_counter() - t0:.1f} s)"}
                ss.dedup_page = 0
    with open_tab:
        reports = find_reports(svc.directory)
        if reports:
            choice = st.selectbox("Reports saved in the index folder", [str(p) for p in reports],
                                  key="dedup_choice", format_func=lambda p: os.path.relpath(p, svc.directory))
            if st.button("Open", key="dedup_open"):
                with guard():
                    ss.dedup = {"report": load_report_file(svc.directory, choice), "source": choice}
                    ss.dedup_page = 0
        else:
            st.caption("No reports in the index folder (`vgg-retrieval dedup --index DIR --out DIR/dedup/report` "
                       "saves one, or save the one found here).")
        up = st.file_uploader("...or upload a report (.json)", type=["json"], key="dedup_upload")
        if up is not None and (ss.dedup is None or ss.dedup.get("upload_id") != up.file_id):
            with guard():
                ss.dedup = {"report": load_report_bytes(up.name, up.getvalue()), "source": up.name,
                            "upload_id": up.file_id}
                ss.dedup_page = 0

state = ss.dedup
if state is None:
    st.info("Find duplicates now, or open a report.")
    st.stop()

with guard():
    report = state["report"]
    st.markdown(f"**{C.md(state['source'])}** - {C.md(report.summary())}")
    if not cfg.read_only and state["source"].startswith("run now"):
        if st.button("Save this report in the index folder", key="dedup_save"):
            with guard():
                paths = save_report(report, svc.directory)
                st.success("Saved " + ", ".join(str(p) for p in paths))
    groups = report.groups
    if not groups:
        st.success("No duplicates at this threshold.")
        st.stop()
    pages = (len(groups) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE
    page = min(ss.dedup_page, pages - 1)
    nav = st.columns([1, 1, 4])
    nav[0].button("Previous", key="dedup_prev", disabled=page == 0, on_click=_set_page, args=(page - 1,))
    nav[1].button("Next", key="dedup_next", disabled=page >= pages - 1, on_click=_set_page, args=(page + 1,))
    nav[2].markdown(f"Groups {page * GROUPS_PER_PAGE + 1}-{min(len(groups), (page + 1) * GROUPS_PER_PAGE)} "
                    f"of {len(groups)}")
    for gi in range(page * GROUPS_PER_PAGE, min(len(groups), (page + 1) * GROUPS_PER_PAGE)):
        g = groups[gi]
        with st.container(border=True):
            kind = "Duplicates" if g.is_duplicates else "Similar shots (not copies: review only)"
            st.markdown(f"**Group {gi + 1}: {kind}** - {len(g.files)} files, "
                        f"{human_bytes(g.reclaimable_bytes) + ' reclaimable, ' if g.is_duplicates else ''}"
                        f"lowest similarity {g.min_score:.3f}")
            if g.why or g.keeper_reason:
                st.caption(C.md(" · ".join(x for x in (g.why, f"keeper: {g.keeper_reason}" if g.keeper_reason else "")
                                           if x)))
            files = g.files
            for start in range(0, len(files), PER_ROW):
                cols = st.columns(PER_ROW)
                for col, m in zip(cols, files[start:start + PER_ROW]):
                    with col:
                        keeper = m is g.keeper
                        row = member_row(svc, m)
                        if row is None:
                            st.warning("not in the index now")
                        else:
                            C.thumbnail(svc, row.id)
                        tag = ":green-background[**KEEPER**]" if keeper else f"{m.score:.3f} - {m.reason}"
                        st.markdown(f"{tag}  \n{C.md(os.path.basename(m.path))}  \n"
                                    f"{m.width}x{m.height} · {human_bytes(m.size)}")
                        st.code(m.path, language=None)
