"""Duplicates: find them now (a background run with progress and Cancel) or open a saved report (the
index folder, a path anywhere, an upload), then review the groups the way a review screen that cannot
hurt works (``ui.logic.dedup_proof``, ``ui.logic.dedup_review``; actions hidden in read-only mode):

- only groups the report proves (byte copies, the same EXIF capture, the pixel copy tests) come with
  quarantine preselected and say "safe to quarantine"; the strongest come first;
- similar shots are a list of their own: pick the one to keep, nothing preselected, no red button;
- Apply asks once, in the group, naming what moves where; afterwards the group stays where it was,
  saying what happened (nothing above it moves, so the pointer stays on it);
- Compare opens the keeper and a file large, with one zoom and pan, a flicker and the differences."""

import os
import time

import streamlit as st

from ui.logic import (
    DedupJob,
    at_least,
    check_report,
    find_reports,
    load_report_bytes,
    load_report_file,
    load_report_path,
    ordered,
    save_report,
    score_bounds,
)
from ui.widgets import COMPARE, compare_dialog, guard, service, settings
from ui.widgets import components as C
from ui.widgets import dedup_groups as G

ss = st.session_state
ss.setdefault("dedup", None)  # {"report", "source", "dups", "similar", "done": {group key: text}}
ss.setdefault("dedup_job", None)  # the running DedupJob of this session
ss.setdefault("dedup_note", None)  # (kind, text): how the last run or action ended, shown in its place
ss.setdefault("dedup_confirm", None)  # the group key (or "exact") whose Apply awaits its confirmation
ss.setdefault("dedup_actions", [])  # [(report, Action, group keys)], the last one undoable
ss.setdefault("dedup_errors", {})  # group key -> the refusal of its last action
ss.setdefault(COMPARE, None)


def _note(kind: str, text: str) -> None:
    (st.success if kind == "success" else st.info if kind == "info" else st.error)(text)


def _set_report(report, source: str, upload_id=None) -> None:
    check_report(report, svc, os.path.basename(source) if source.endswith(".json") else source)
    ss.dedup = {
        "report": report,
        "source": source,
        "upload_id": upload_id,
        "dups": ordered(report.groups),
        "similar": ordered(report.groups, similar=True),
        "done": {},
        "gen": ss.get("dedup_gen", 0) + 1,
    }
    ss.dedup_gen = ss.dedup["gen"]
    for k in [k for k in ss if str(k).startswith(("dd_pick_", "dd_best_"))]:
        del ss[k]  # a choice made on another report is not a choice on this one
    ss.dedup_confirm, ss.dedup_errors, ss[COMPARE] = None, {}, None
    ss.dedup_page_dups = ss.dedup_page_similar = 0


def _run_controls() -> None:
    from indexer.dedup import VERIFY_FLOOR, default_threshold

    c1, c2 = st.columns([2, 1])
    verify = c2.checkbox(
        "Verify pixels",
        value=True,
        key="dedup_verify",
        help="A pair is a duplicate only when it is proven the same capture: byte-identical, the same EXIF "
        "capture, or aligned pixels that pass the copy tests. Other shots of one scene are listed as "
        "similar shots, never as copies (reads those files again).",
    )
    if verify:
        floor = c1.slider(
            "Check pairs from similarity (cosine)",
            0.30,
            1.00,
            float(VERIFY_FLOOR),
            0.01,
            key="dedup_floor",
            help="Pairs of photos at least this similar are verified; every group listed is at least this "
            "similar (byte copies and turned copies always are checked).",
        )
        options = {"verify_floor": floor}
    else:
        threshold = c1.slider(
            "Similarity threshold (cosine)",
            0.50,
            1.00,
            float(default_threshold(svc.index.spec, False)),
            0.01,
            key="dedup_threshold",
            help="Without verification every pair at or above it is listed: not proven copies, nothing "
            "preselected. Exact copies (same sha256) always are listed.",
        )
        options = {"threshold": threshold}
    exact_only = c2.checkbox("Exact copies only", key="dedup_exact")
    if st.button("Find duplicates", key="dedup_run", type="primary", disabled=ss.dedup_job is not None):
        ss.dedup_note = None
        ss.dedup_job = DedupJob(svc.directory, near=not exact_only, verify=verify, **options).start()


def _follow_job() -> None:
    """The run's progress until it ends (a Cancel click interrupts this script run, cancels the job in
    its callback, and the next run waits here for the job to stop)."""
    job = ss.dedup_job
    with st.container(border=True, key="dedup_progress"):
        st.button("Cancel", key="dedup_cancel", on_click=job.cancel, disabled=job.cancelled)
        bar = st.progress(job.fraction(), text=job.text())
        while job.running:
            time.sleep(0.25)
            bar.progress(job.fraction(), text=job.text())
    ss.dedup_job = None
    if job.error:
        ss.dedup_note = ("error", f"Finding duplicates failed: {job.error}")
    elif job.report is None:
        ss.dedup_note = (
            "info",
            "Cancelled: nothing was found or changed. Find duplicates again to start over.",
        )
    else:
        n = job.report.stats.get("images", 0)
        _set_report(
            job.report,
            f"run now ({n:,} photos in {job.seconds:.1f} s, {n / max(job.seconds, 1e-3):,.0f} photos/s)",
        )
    st.rerun()


def _open_controls(read_only: bool) -> None:
    reports = find_reports(svc.directory)
    if reports:
        c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
        choice = c1.selectbox(
            "Reports saved in the index folder",
            [str(p) for p in reports],
            key="dedup_choice",
            format_func=lambda p: os.path.relpath(p, svc.directory),
        )
        if c2.button("Open", key="dedup_open"):
            with guard():
                _set_report(load_report_file(svc.directory, choice), choice)
    if not read_only:  # a path on this server: only where the UI may act on its files
        c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
        path = c1.text_input(
            "...or a report saved anywhere (the path given to `dedup --out`)",
            key="dedup_path",
            placeholder="/photos/reports/dups.json",
        )
        if c2.button("Open", key="dedup_open_path"):
            with guard():
                _set_report(load_report_path(path), path.strip())
    up = st.file_uploader("...or upload a report (.json)", type=["json"], key="dedup_upload")
    if up is not None and (ss.dedup is None or ss.dedup.get("upload_id") != up.file_id):
        with guard():
            _set_report(load_report_bytes(up.name, up.getvalue()), up.name, up.file_id)


def _review(state) -> None:
    report = state["report"]
    st.markdown(f"**{C.md(state['source'])}** - {C.md(report.summary())}")
    if not cfg.read_only and state["source"].startswith("run now"):
        if st.button("Save this report in the index folder", key="dedup_save"):
            with guard():
                st.success("Saved " + ", ".join(str(p) for p in save_report(report, svc.directory)))
    dups, similar = state["dups"], state["similar"]
    lo, hi = score_bounds(dups + similar)
    floor = lo
    if lo < hi:
        floor = st.slider(
            f"Show groups down to similarity (this report: {lo:.3f} - {hi:.3f})",
            lo,
            1.0,
            lo,
            0.001,
            format="%.3f",
            key=f"dedup_show_{state['source']}",
            help="Hides the groups whose least similar file is below it; the report is not changed.",
        )
    dups, similar = at_least(dups, floor), at_least(similar, floor)
    if not cfg.read_only:
        G.review_bar(report, dups)
    c1, c2 = st.columns([2, 3], vertical_alignment="center")
    view = c1.radio(  # fixed labels: a label that changes makes the browser forget the choice
        "Show",
        ["dups", "similar"],
        horizontal=True,
        key="dedup_view",
        format_func=lambda v: "Duplicates" if v == "dups" else "Similar shots (review only)",
        label_visibility="collapsed",
    )
    c2.caption(f"{len(dups)} duplicate groups · {len(similar)} groups of similar shots")
    shown = dups if view == "dups" else similar
    if not shown:
        st.success("No groups here." if view == "dups" else "No similar shots at this similarity.")
        return
    G.groups_view(shown, view)


st.title("Duplicates")
cfg = settings()
svc = service()
if svc is None:
    st.stop()
G.use(svc, cfg)

with guard():
    run_tab, open_tab = st.tabs(["Find duplicates now", "Open a saved report"])
    with run_tab:
        _run_controls()
        if ss.dedup_job is not None:
            _follow_job()
        if ss.dedup_note:
            _note(*ss.dedup_note)
    with open_tab:
        _open_controls(cfg.read_only)

if ss.dedup is None:
    st.info("Find duplicates now, or open a report.")
    st.stop()
with guard():
    _review(ss.dedup)
if ss.get(COMPARE):
    compare_dialog(svc)
