"""Duplicates: run a dedup over the index (or open a saved report), browse the groups and act on
them: keep/quarantine per file, "keep all", apply per group or for every group of exact copies,
undo (``ui.logic.dedup_review``; hidden in read-only mode)."""

import os
import time

import streamlit as st

from ui.logic import (
    CHOICES,
    KEEP,
    apply_choices,
    default_choice,
    default_quarantine,
    find_reports,
    group_key,
    human_bytes,
    is_exact,
    keep_all,
    last_moved_log,
    load_report_bytes,
    load_report_file,
    member_row,
    run_dedup,
    save_report,
    undo_action,
)
from ui.widgets import components as C
from ui.widgets import guard, service, settings

ss = st.session_state
ss.setdefault("dedup", None)  # {"report": DedupReport, "source": str}
ss.setdefault("dedup_page", 0)
ss.setdefault("dedup_actions", [])  # [(report, ui.logic.dedup_review.Action)], the last one undoable
ss.setdefault("dedup_flash", None)  # (kind, message) of the last action, shown after the rerun

GROUPS_PER_PAGE = 5
PER_ROW = 5


def _set_page(n: int) -> None:
    ss.dedup_page = max(0, n)


def _choices(g) -> dict:
    """The page's keep/quarantine choice per file of ``g`` (the default where none was made)."""
    gk = group_key(g)
    return {m.path: ss.get(f"dd_pick_{gk}_{m.id}", default_choice(g, m)) for m in g.files}


def _done(report, result) -> None:
    action, text = result
    ss.dedup_actions.append((report, action))
    ss.dedup_flash = ("success", text)
    st.rerun()


def _review_bar(report, quarantine_default) -> str:
    """The quarantine folder, bulk apply of exact copies and undo; the folder chosen."""
    c1, c2, c3 = st.columns([3, 2, 2], vertical_alignment="bottom")
    quarantine = c1.text_input(
        "Quarantine folder (files are moved there, never deleted)",
        value=str(quarantine_default),
        key="dedup_quarantine",
    )
    exact = [g for g in report.groups if is_exact(g)]
    if c2.button(
        f"Apply all exact copies ({len(exact)})",
        key="dedup_apply_exact",
        disabled=not exact,
        help=f"Quarantine the byte-identical copies of the {len(exact)} groups of exact copies (one undo log)",
    ):
        with guard():
            _done(
                report,
                apply_choices(
                    svc,
                    report,
                    exact,
                    {p: c for g in exact for p, c in _choices(g).items()},
                    quarantine,
                    label=f"apply all exact copies ({len(exact)} groups)",
                ),
            )
    last_report, last = (
        ss.dedup_actions[-1] if ss.dedup_actions else (report, last_moved_log(quarantine, svc.directory))
    )
    if last is not None and c3.button(
        f"Undo: {last.label}",
        key="dedup_undo",
        help="Move the files of the last action back (its undo log) and forget its decisions",
    ):
        with guard():
            text = undo_action(svc, last_report, last)
            if ss.dedup_actions:
                ss.dedup_actions.pop()
            ss.dedup_flash = ("success", text)
            st.rerun()
    return quarantine


def _group_actions(report, g, quarantine) -> None:
    gk = group_key(g)
    b1, b2, _ = st.columns([1, 2, 4])
    if b1.button(
        "Apply",
        key=f"dd_apply_{gk}",
        type="primary",
        help="Move the files marked Quarantine (undo log kept; nothing is deleted)",
    ):
        with guard():
            _done(report, apply_choices(svc, report, [g], _choices(g), quarantine))
    if b2.button(
        "Keep all (not duplicates)",
        key=f"dd_keepall_{gk}",
        help="Dismiss the group: remembered in the index, so dedup leaves it out next time",
    ):
        with guard():
            _done(report, keep_all(svc, report, g))


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
        verify = c2.checkbox(
            "Verify pixels",
            value=True,
            key="dedup_verify",
            help="Every candidate pair is a duplicate only when the two pictures, aligned by their "
            "agreeing keypoints, agree pixel for pixel; other shots of one scene are listed "
            "as similar shots, never as copies (reads those files again).",
        )
        threshold = c1.slider(
            "Similarity threshold (cosine)",
            0.50,
            1.00,
            float(default_threshold(svc.index.spec, verify)),
            0.01,
            key=f"dedup_threshold_{int(verify)}",
            help="With verification: pairs too plain for keypoints are duplicates at or above "
            "it. Without: every pair at or above it is. Exact copies (same sha256) always are.",
        )
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
            choice = st.selectbox(
                "Reports saved in the index folder",
                [str(p) for p in reports],
                key="dedup_choice",
                format_func=lambda p: os.path.relpath(p, svc.directory),
            )
            if st.button("Open", key="dedup_open"):
                with guard():
                    ss.dedup = {"report": load_report_file(svc.directory, choice), "source": choice}
                    ss.dedup_page = 0
        else:
            st.caption(
                "No reports in the index folder (`vgg-retrieval dedup --index DIR --out DIR/dedup/report` "
                "saves one, or save the one found here)."
            )
        up = st.file_uploader("...or upload a report (.json)", type=["json"], key="dedup_upload")
        if up is not None and (ss.dedup is None or ss.dedup.get("upload_id") != up.file_id):
            with guard():
                ss.dedup = {
                    "report": load_report_bytes(up.name, up.getvalue()),
                    "source": up.name,
                    "upload_id": up.file_id,
                }
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
    if ss.dedup_flash:
        kind, text = ss.dedup_flash
        ss.dedup_flash = None
        (st.success if kind == "success" else st.error)(text)
    quarantine = None
    if not cfg.read_only:
        quarantine = _review_bar(report, default_quarantine(cfg, svc.directory))
    groups = report.groups
    if not groups:
        st.success(
            "No duplicates at this threshold." if not ss.dedup_actions else "No groups left to review."
        )
        st.stop()
    pages = (len(groups) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE
    page = min(ss.dedup_page, pages - 1)
    nav = st.columns([1, 1, 4])
    nav[0].button("Previous", key="dedup_prev", disabled=page == 0, on_click=_set_page, args=(page - 1,))
    nav[1].button("Next", key="dedup_next", disabled=page >= pages - 1, on_click=_set_page, args=(page + 1,))
    nav[2].markdown(
        f"Groups {page * GROUPS_PER_PAGE + 1}-{min(len(groups), (page + 1) * GROUPS_PER_PAGE)} "
        f"of {len(groups)}"
    )
    for gi in range(page * GROUPS_PER_PAGE, min(len(groups), (page + 1) * GROUPS_PER_PAGE)):
        g = groups[gi]
        with st.container(border=True):
            kind = "Duplicates" if g.is_duplicates else "Similar shots (not copies: review only)"
            st.markdown(
                f"**Group {gi + 1}: {kind}** - {len(g.files)} files, "
                f"{human_bytes(g.reclaimable_bytes) + ' reclaimable, ' if g.is_duplicates else ''}"
                f"lowest similarity {g.min_score:.3f}"
            )
            if g.why or g.keeper_reason:
                st.caption(
                    C.md(
                        " · ".join(
                            x for x in (g.why, f"keeper: {g.keeper_reason}" if g.keeper_reason else "") if x
                        )
                    )
                )
            if not cfg.read_only:
                _group_actions(report, g, quarantine)
            files = g.files
            for start in range(0, len(files), PER_ROW):
                cols = st.columns(PER_ROW)
                for col, m in zip(cols, files[start : start + PER_ROW]):
                    with col:
                        keeper = m is g.keeper
                        row = member_row(svc, m)
                        if row is None:
                            st.warning("not in the index now")
                        else:
                            C.thumbnail(svc, row.id)
                        tag = ":green-background[**KEEPER**]" if keeper else f"{m.score:.3f} - {m.reason}"
                        st.markdown(
                            f"{tag}  \n{C.md(os.path.basename(m.path))}  \n"
                            f"{m.width}x{m.height} · {human_bytes(m.size)}"
                        )
                        st.code(m.path, language=None)
                        if not cfg.read_only:
                            st.radio(
                                "Action",
                                CHOICES,
                                index=CHOICES.index(default_choice(g, m)),
                                horizontal=True,
                                key=f"dd_pick_{group_key(g)}_{m.id}",
                                label_visibility="collapsed",
                                format_func=lambda c: "Keep" if c == KEEP else "Quarantine",
                            )
