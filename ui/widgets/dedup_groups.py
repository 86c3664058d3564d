"""The Duplicates page's groups (``ui.pages.duplicates``): each group in a bordered box keyed by the
group, its proof as a badge, its files large with their full paths, and its actions. Actions run in
callbacks (before the page is drawn again), so the page is drawn once, in place: Apply asks first in
the group (what moves where), and an applied group stays where it was, saying what happened."""

from __future__ import annotations

import os

import streamlit as st

from ui.logic import (
    CHOICES,
    KEEP,
    PROOF_COLOR,
    PROOF_EXPLAIN,
    PROOF_LABEL,
    apply_choices,
    default_choice,
    default_quarantine,
    group_key,
    human_bytes,
    is_exact,
    is_safe,
    keep_all,
    last_moved_log,
    member_row,
    message,
    pick_choices,
    plan_text,
    proof,
    split,
    undo_action,
)

from . import components as C
from .compare import COMPARE

ss = st.session_state
GROUPS_PER_PAGE = 5
PER_ROW = 4
THUMB_PX = 384
CSS = """<style>
[class*="st-key-dd_group_"] [data-testid="stImage"] img { height: 260px; width: 100%; object-fit: contain;
  background: #f0f2f6; border-radius: 4px; }
[class*="st-key-dd_group_"] pre code { white-space: pre-wrap !important; word-break: break-all; }
</style>"""
_S: dict = {}  # the page's service and settings (one per process), for the callbacks


def _wk(g) -> str:
    """The group's key in this page: its report's number (the browser keeps a widget's value by its key,
    so a choice made on an earlier report must not carry over) and ``group_key``."""
    return f"{ss.dedup.get('gen', 0)}_{group_key(g)}"


def use(svc, cfg) -> None:
    """The service and settings the groups act with (called by the page on every run)."""
    _S.update(svc=svc, cfg=cfg)
    for k, v in (("dedup_actions", []), ("dedup_errors", {}), ("dedup_confirm", None), (COMPARE, None)):
        ss.setdefault(k, v)
    st.html(CSS)


# --- actions (callbacks: they run before the page is drawn again, so it is drawn once, in place) ---
def _remember(report, result, keys: list[str]) -> None:
    action, text = result
    ss.dedup_actions.append((report, action, keys))
    for k in keys:
        ss.dedup.setdefault("done", {})[k] = text
        ss.dedup_errors.pop(k, None)


def _act(key: str, fn, *args) -> None:
    ss.dedup_confirm = None
    try:
        report = ss.dedup["report"]
        _remember(
            report, fn(_S["svc"], report, *args), [key] if key != "exact" else [_wk(g) for g in args[0]]
        )
    except Exception as e:  # noqa: BLE001 - shown in the group
        ss.dedup_errors[key] = message(e)


def _ask(key: str) -> None:
    ss.dedup_confirm = key
    ss.dedup_errors.pop(key, None)


def _cancel_ask() -> None:
    ss.dedup_confirm = None


def _undo() -> None:
    report, action, keys = ss.dedup_actions[-1] if ss.dedup_actions else (ss.dedup["report"], _last_log(), [])
    try:
        text = undo_action(_S["svc"], report, action)
        if ss.dedup_actions:
            ss.dedup_actions.pop()
        for k in keys:
            ss.dedup["done"].pop(k, None)
        ss.dedup_bar_note = ("success", text)
    except Exception as e:  # noqa: BLE001 - shown in the bar
        ss.dedup_bar_note = ("error", message(e))


def _last_log():
    return last_moved_log(
        ss.get("dedup_quarantine") or default_quarantine(_S["cfg"], _S["svc"].directory), _S["svc"].directory
    )


def _choices(g) -> dict:
    """The page's keep/quarantine choice per file of ``g`` (the default where none was made)."""
    gk = _wk(g)
    if not g.is_duplicates:
        best = ss.get(f"dd_best_{gk}")
        return pick_choices(g, best) if best is not None else {m.path: KEEP for m in g.files}
    return {m.path: ss.get(f"dd_pick_{gk}_{m.id}", default_choice(g, m)) for m in g.files}


def _quarantine() -> str:
    return str(ss.get("dedup_quarantine") or default_quarantine(_S["cfg"], _S["svc"].directory))


def _apply_group(g) -> None:
    _act(_wk(g), apply_choices, [g], _choices(g), _quarantine())


def _apply_exact(groups) -> None:
    choices = {p: c for g in groups for p, c in _choices(g).items()}
    _act(
        "exact",
        apply_choices,
        groups,
        choices,
        _quarantine(),
        f"apply all exact copies ({len(groups)} groups)",
    )


def _keep_all(g) -> None:
    _act(_wk(g), keep_all, g)


# --- drawing ------------------------------------------------------------------------------------
def _confirm(key: str, moves: list, kept: list, on_yes, args: tuple, primary: bool) -> None:
    """The one question before files move, where the user is: what moves where, Cancel, Move."""
    with st.container(border=True, key=f"dd_confirm_{key}"):
        st.warning(plan_text(moves, _quarantine(), kept))
        b1, b2, _ = st.columns([1, 2, 3])
        b1.button("Cancel", key=f"dd_no_{key}", on_click=_cancel_ask)
        b2.button(
            f"Move {len(moves)} file{'s' if len(moves) != 1 else ''} to quarantine",
            key=f"dd_yes_{key}",
            type="primary" if primary else "secondary",
            on_click=on_yes,
            args=args,
        )


def review_bar(report, groups) -> None:
    """The quarantine folder, the bulk apply of byte copies (asks too) and undo."""
    c1, c2, c3 = st.columns([3, 2, 2], vertical_alignment="bottom")
    c1.text_input(
        "Quarantine folder (files are moved there, never deleted)",
        value=str(default_quarantine(_S["cfg"], _S["svc"].directory)),
        key="dedup_quarantine",
    )
    exact = [g for g in groups if is_exact(g) and any(g is x for x in report.groups)]
    c2.button(
        f"Apply all byte copies ({len(exact)} groups)",
        key="dedup_apply_exact",
        disabled=not exact,
        on_click=_ask,
        args=("exact",),
        help="Quarantine the byte-identical copies of every group of exact copies (asks first; one undo log)",
    )
    last = ss.dedup_actions[-1][1] if ss.dedup_actions else _last_log()
    c3.button(
        f"Undo: {last.label}" if last else "Undo",
        key="dedup_undo",
        disabled=last is None,
        on_click=_undo,
        help="Move the files of the last action back (its undo log) and forget its decisions",
    )
    if ss.dedup_confirm == "exact" and exact:
        moves = [m for g in exact for m in g.members]
        _confirm("exact", moves, [g.keeper for g in exact], _apply_exact, (exact,), True)
    note = ss.pop("dedup_bar_note", None)
    if note:
        (st.success if note[0] == "success" else st.error)(note[1])
    if "exact" in ss.dedup_errors:
        st.error(ss.dedup_errors.pop("exact"))


def _header(g, n: int) -> None:
    p = proof(g)
    size = f"{human_bytes(g.reclaimable_bytes)} reclaimable · " if g.is_duplicates else ""
    st.markdown(
        f"**Group {n}** :{PROOF_COLOR[p]}-badge[{PROOF_LABEL[p]}] · {len(g.files)} files · {size}"
        f"lowest similarity {g.min_score:.3f}"
    )
    why = PROOF_EXPLAIN[p] + (f" · keeper: {g.keeper_reason}" if g.keeper_reason else "")
    st.caption(C.md(why))


def _actions(g) -> None:
    """Apply (red only for a proven group) and Keep all; similar shots: pick the one to keep."""
    gk = _wk(g)
    if not g.is_duplicates:
        st.radio(
            "Keep which one? The others go to quarantine (nothing is chosen for you)",
            [m.id for m in g.files],
            index=None,
            horizontal=True,
            key=f"dd_best_{gk}",
            format_func=lambda i: os.path.basename(next(m.path for m in g.files if m.id == i)),
        )
    try:
        kept, moves = split(g, _choices(g))
    except Exception:  # noqa: BLE001 - every file marked: Apply says why
        kept, moves = [], [m for m in g.files]
    if ss.dedup_confirm == gk and moves and kept:
        _confirm(gk, moves, kept, _apply_group, (g,), is_safe(g))
        return
    b1, b2, _ = st.columns([2, 2, 3])
    label = "Apply" if g.is_duplicates else "Keep only the chosen one..."
    b1.button(
        label,
        key=f"dd_apply_{gk}",
        type="primary" if is_safe(g) else "secondary",
        disabled=not moves or not kept,
        on_click=_ask,
        args=(gk,),
        help="Asks first, naming the files that move (undo log kept; nothing is deleted)",
    )
    b2.button(
        "Keep all (not duplicates)",
        key=f"dd_keepall_{gk}",
        on_click=_keep_all,
        args=(g,),
        help="Dismiss the group: remembered in the index, so dedup leaves it out next time",
    )


def _open_compare(g, m) -> None:
    ss[COMPARE] = (g.keeper, m, "keeper" if g.is_duplicates else "ranked first")


def _cards(g, actions: bool) -> None:
    gk = _wk(g)
    files = g.files
    for start in range(0, len(files), PER_ROW):
        for col, m in zip(st.columns(PER_ROW), files[start : start + PER_ROW]):
            with col:
                row = member_row(_S["svc"], m)
                if row is None:
                    st.warning("not in the index now")
                else:
                    C.thumbnail(_S["svc"], row.id, THUMB_PX)
                first = "KEEPER" if g.is_duplicates else "ranked first"
                tag = (
                    f":green-background[**{first}**]"
                    if m is g.keeper
                    else f"{m.score:.3f} · {C.md(m.reason)}"
                )
                st.markdown(f"{tag}  \n{m.width}x{m.height} · {human_bytes(m.size)}")
                st.code(m.path, language=None, wrap_lines=True)
                if actions and g.is_duplicates:
                    st.radio(
                        "Action",
                        CHOICES,
                        index=CHOICES.index(default_choice(g, m)),
                        horizontal=True,
                        key=f"dd_pick_{gk}_{m.id}",
                        label_visibility="collapsed",
                        format_func=lambda c: "Keep" if c == KEEP else "Quarantine",
                    )
                if m is not g.keeper and row is not None:
                    st.button("Compare", key=f"dd_cmp_{gk}_{m.id}", on_click=_open_compare, args=(g, m))


def _group(g, n: int) -> None:
    gk = _wk(g)
    with st.container(border=True, key=f"dd_group_{gk}"):
        _header(g, n)
        done = ss.dedup.get("done", {}).get(gk)
        if done is not None:  # applied: the group stays where it was, saying what happened
            st.success(done)
            st.caption("Undo (at the top of the list) moves the files back.")
            for m in g.files:
                st.markdown(f"- {C.md(m.path)}")
            return
        if gk in ss.dedup_errors:
            st.error(ss.dedup_errors[gk])
        if not _S["cfg"].read_only:
            _actions(g)
        _cards(g, not _S["cfg"].read_only)


def groups_view(groups, name: str) -> None:
    pages = max(1, (len(groups) + GROUPS_PER_PAGE - 1) // GROUPS_PER_PAGE)
    page = min(ss.get(f"dedup_page_{name}", 0), pages - 1)
    nav = st.columns([1, 1, 4], vertical_alignment="center")
    nav[0].button(
        "Previous", key=f"dedup_prev_{name}", disabled=page == 0, on_click=_turn, args=(name, page - 1)
    )
    nav[1].button(
        "Next", key=f"dedup_next_{name}", disabled=page >= pages - 1, on_click=_turn, args=(name, page + 1)
    )
    lo = page * GROUPS_PER_PAGE
    nav[2].markdown(f"Groups {lo + 1}-{min(len(groups), lo + GROUPS_PER_PAGE)} of {len(groups)}")
    for n in range(lo, min(len(groups), lo + GROUPS_PER_PAGE)):
        _group(groups[n], n + 1)


def _turn(name: str, page: int) -> None:
    ss[f"dedup_page_{name}"] = max(0, page)
