"""Acting on a dedup report from the Duplicates page (no Streamlit here), the way a review screen
works: a keep/quarantine choice per file, "keep all" (the group is not duplicates: stored in the
index as review decisions, so the next run leaves it out), apply per group or for every group of
exact copies, and undo of the last action.

Files are moved only by ``indexer.dedup.apply`` - the same quarantine folder, undo log and
refusals as ``vgg-retrieval dedup apply`` (a file changed since the report, a destination taken, a
quarantine inside an indexed folder) - and never deleted."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from indexer.dedup import DedupReport, Group, apply_report, kept_pairs, read_log, undo
from retrieval import UserError

from .dedup_proof import is_safe

KEEP, QUARANTINE = "keep", "quarantine"
CHOICES = (KEEP, QUARANTINE)


def group_key(group) -> str:
    """A name for a group that stays the same while the page shows it (widget keys)."""
    return f"{group.keeper.id}-{group.keeper.sha256[:12]}"


def default_choice(group, member) -> str:
    """The keeper is kept; the others of a proven duplicate group (``dedup_proof.is_safe``) go to
    quarantine; similar shots and groups the report does not prove (--no-verify, a claim without its
    evidence) are all kept."""
    return KEEP if member is group.keeper or not is_safe(group) else QUARANTINE


def pick_choices(group, best_id: int) -> dict:
    """The choices of "keep only this one" for a group of similar shots: ``best_id`` kept, the others
    to quarantine."""
    if not any(m.id == best_id for m in group.files):
        raise UserError("choose the photo to keep from this group")
    return {m.path: KEEP if m.id == best_id else QUARANTINE for m in group.files}


def is_exact(group) -> bool:
    """A duplicate group whose every member is byte-identical to its keeper."""
    return (
        group.is_duplicates
        and bool(group.members)
        and all(m.sha256 == group.keeper.sha256 for m in group.members)
    )


def default_quarantine(settings, index_dir) -> Path:
    """The quarantine folder the page proposes: the setting, else a ``quarantine`` folder next to the index."""
    if settings.quarantine:
        return Path(settings.quarantine)
    return Path(os.path.abspath(index_dir)).parent / "quarantine"


@dataclass
class Action:
    """One applied step of the page, enough to undo it."""

    label: str
    groups: list = field(default_factory=list)  # (position in the report, the group as shown)
    log: str | None = None  # the undo log of the files moved
    decisions: list = field(default_factory=list)  # (sha_a, sha_b) keys recorded


def _check_report(svc, report) -> None:
    if os.path.realpath(report.index_dir) != os.path.realpath(svc.directory):
        raise UserError(
            f"this report is of another index ({report.index_dir}): act on it from that index's UI "
            f"or with vgg-retrieval dedup apply"
        )


def split(group, choices: dict) -> tuple[list, list]:
    """(files kept, files to quarantine) of ``group`` under ``choices`` (path -> KEEP/QUARANTINE;
    a file not named takes ``default_choice``)."""
    kept, moved = [], []
    for m in group.files:
        choice = choices.get(m.path, default_choice(group, m))
        if choice not in CHOICES:
            raise UserError(f"unknown choice {choice!r} for {m.path}")
        (kept if choice == KEEP else moved).append(m)
    if not kept:
        raise UserError(
            f"keep at least one file of the group of {os.path.basename(group.keeper.path)} "
            f"(every file is marked for quarantine)"
        )
    return kept, moved


def _take_out(report, groups) -> list:
    """Remove ``groups`` from the report shown; their (position, group), for undo."""
    taken = [(n, g) for n, g in enumerate(report.groups) if any(g is x for x in groups)]
    report.groups[:] = [g for g in report.groups if not any(g is x for x in groups)]
    return taken


def apply_choices(svc, report, groups, choices: dict, quarantine, label: str = "apply") -> tuple[Action, str]:
    """Move the files marked for quarantine in ``groups`` (one undo log for all), bring the index up
    to date, and remember the files kept together as not duplicates; (the action, what happened)."""

    _check_report(svc, report)
    if not str(quarantine).strip():
        raise UserError("choose a quarantine folder (outside the indexed folders)")
    plans = [(g, *split(g, choices)) for g in groups]
    moving = [
        Group(kept[0], moved, g.kind, g.why, g.keeper_reason, g.proven) for g, kept, moved in plans if moved
    ]
    if not moving:
        raise UserError('no file is marked for quarantine; use "Keep all" when these are not duplicates')
    sub = DedupReport(
        report.threshold,
        report.created_at,
        report.index_dir,
        moving,
        roots=svc.roots(),
        stats=dict(report.stats),
        rule=dict(report.rule),
    )
    lines: list[str] = []
    out = apply_report(
        sub, Path(str(quarantine).strip()).expanduser(), execute=True, echo=lines.append, include_similar=True
    )
    together = [p for _, kept, _ in plans if len(kept) > 1 for p in kept_pairs(kept)]
    keys = svc.index.store.record_dedup_decisions(together) if together else []
    action = Action(label, _take_out(report, [g for g, _, _ in plans]), out.log, keys)
    said = f"Moved {len(out.moves)} files ({out.bytes / 1e6:.1f} MB) to {quarantine}"
    return action, f"{said}; undo log {out.log}. {out.index_summary}".strip()


def keep_all(svc, report, group) -> tuple[Action, str]:
    """ "Keep all (not duplicates)": remember every pair of the group, so dedup leaves it out."""

    _check_report(svc, report)
    keys = svc.index.store.record_dedup_decisions(kept_pairs(group.files))
    action = Action("keep all", _take_out(report, [group]), None, keys)
    return action, (
        f"Kept all {len(group.files)} files of the group of {os.path.basename(group.keeper.path)}; "
        f"dedup leaves them out from now on (until one of them changes)"
    )


def last_moved_log(quarantine, index_dir) -> Action | None:
    """The newest undo log in ``quarantine`` whose files of ``index_dir`` are still moved (an apply
    of an earlier page session, or of ``dedup apply``), as an action to undo; None when there is none."""

    try:
        logs = sorted(
            Path(str(quarantine).strip()).expanduser().glob("dedup-undo-*.json"),
            key=lambda p: p.stat().st_mtime_ns,
            reverse=True,
        )
    except OSError:
        return None
    for log in logs:
        try:
            data = read_log(log)
        except UserError:
            continue
        if data.get("state") == "moved" and os.path.realpath(data.get("index_dir", "")) == os.path.realpath(
            index_dir
        ):
            return Action(f"apply of {log.name}", log=str(log))
    return None


def undo_action(svc, report, action: Action) -> str:
    """Undo ``action``: move its files back (``indexer.dedup.undo``, which updates the index),
    forget its decisions and show its groups again."""

    said = []
    if action.log:
        out = undo(action.log, execute=True, echo=lambda *_: None)
        said.append(f"restored {len(out.moves)} files from {action.log}")
        if out.index_summary:
            said.append(out.index_summary)
    gone = svc.index.store.forget_dedup_decisions(action.decisions)
    if gone:
        said.append(f"forgot {gone} review decisions")
    for n, g in sorted(action.groups, key=lambda x: x[0]):
        report.groups.insert(min(n, len(report.groups)), g)
    return f'Undid "{action.label}": ' + "; ".join(said or ["nothing to restore"])
