"""Acting on a report, safely: move the non-kept files into a quarantine folder (keeping their paths
relative to the indexed folder), write a signed JSON undo log first, never delete, and bring the index
up to date. ``undo`` (``indexer.dedup.undo``) moves them back. Both only print what they would do
unless ``execute`` is set; executed, both take the index's write lock first and run as one
recoverable step (``indexer.dedup.journal``).

More: docs/design-notes.md (``indexer.dedup.apply``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from indexer.faults import crash_point
from indexer.index import Index
from indexer.storage import move_journal
from indexer.storage.undo_log import LOG_FORMAT, LOG_VERSION, Move, index_key, inside, write_log  # noqa: F401 - API
from indexer.storage.undo_log import read_log as read
from retrieval.errors import UserError
from retrieval.files import file_sha256

from . import journal
from .moves import Outcome, _move
from .report import DedupReport


def stale_files(report: DedupReport, groups=None) -> list[str]:
    """'path: what changed' for every file of ``groups`` that is not as the report saw it."""
    problems = []
    for g in report.groups if groups is None else groups:
        for m in g.files:
            try:
                st = os.stat(m.path)
            except FileNotFoundError:
                problems.append(f"{m.path}: no longer exists")
                continue
            except OSError as e:
                problems.append(f"{m.path}: {e.strerror}")
                continue
            if st.st_size != m.size:
                problems.append(f"{m.path}: size changed ({m.size} -> {st.st_size} bytes)")
            elif st.st_mtime_ns != m.mtime_ns:
                problems.append(f"{m.path}: modified since the report")
            elif file_sha256(m.path) != m.sha256:
                problems.append(f"{m.path}: content changed (sha256)")
    return problems


def _root_of(path: str, roots: list[str]) -> str | None:
    best = None
    for r in roots:
        if path.startswith(os.path.join(r, "")) and (best is None or len(r) > len(best)):
            best = r
    return best


def _root_names(roots: list[str]) -> dict[str, str]:
    """Folder name under the quarantine for each root: '' for a single root, else its basename
    (made unique)."""
    if len(roots) <= 1:
        return {r: "" for r in roots}
    names, used = {}, set()
    for r in sorted(roots):
        base = os.path.basename(os.path.normpath(r)) or "root"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        names[r] = name
    return names


def with_keepers(report: DedupReport, keep=()) -> DedupReport:
    """``report`` with the named files made the keepers of their groups (user overrides)."""
    for k in keep:
        k = os.path.realpath(k)
        for g in report.groups:
            for n, m in enumerate(g.members):
                if m.path == k:
                    old = g.keeper
                    g.keeper, g.members[n] = m, old
                    old.reason = f"was the suggested keeper; {m.path} kept instead"
                    break
            else:
                continue
            break
        else:
            if not any(g.keeper.path == k for g in report.groups):
                raise UserError(f"--keep {k}: not a file of this report")
    return report


def acted_on(report: DedupReport, include_similar: bool = False) -> list:
    """The groups ``apply`` moves files of: duplicates, and similar shots only when asked for."""
    return [g for g in report.groups if g.is_duplicates or include_similar]


def plan(report: DedupReport, quarantine, include_similar: bool = False) -> list[Move]:
    quarantine = Path(os.path.abspath(quarantine))
    qreal = os.path.realpath(quarantine)
    roots = [os.path.realpath(r) for r in report.roots]
    for r in roots:
        if qreal == r or qreal.startswith(os.path.join(r, "")):
            raise UserError(
                f"the quarantine folder {quarantine} is inside the indexed folder {r}; "
                f"choose a folder outside it"
            )
    names = _root_names(roots)
    moves = []
    for g in acted_on(report, include_similar):
        for m in g.members:
            root = _root_of(m.path, roots)
            if root is None or os.path.normpath(m.path) != m.path:
                raise UserError(f"refusing to move {m.path}: it is not inside the report's indexed folders")
            rel = (
                os.path.join(names[root], os.path.relpath(m.path, root))
                if names[root]
                else os.path.relpath(m.path, root)
            )
            moves.append(Move(m.path, str(quarantine / rel), m.sha256, m.size, m.mtime_ns))
    dsts = [mv.dst for mv in moves]
    if len(set(dsts)) != len(dsts):
        raise UserError("two files would get the same quarantine path (files outside the indexed folders?)")
    taken = [d for d in dsts if os.path.lexists(d)]
    if taken:
        raise UserError(
            f"{len(taken)} quarantine destination(s) already exist, e.g. {taken[0]}; "
            f"use another --move-to folder"
        )
    return moves


def _default_log(quarantine: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = quarantine / f"dedup-undo-{stamp}.json"
    n = 2
    while path.exists():
        path, n = quarantine / f"dedup-undo-{stamp}-{n}.json", n + 1
    return path


def _require_indexed(idx, paths: list[str]) -> None:
    """Only files the index holds, inside its folders and not offline, are ever moved (a report is
    just a file)."""
    offline = list(idx.store.offline_folders())
    for p in paths:
        idx.indexed_file(p)
        gone = [f for f in offline if inside(p, f)]
        if gone:
            raise UserError(
                f"refusing to move {p}: its folder {gone[0]} is offline (index it again when it is back)"
            )


def _checked(report: DedupReport, quarantine: Path, include_similar: bool, echo, idx=None) -> list[Move]:
    """The moves of ``report``, every file checked (``idx``: the locked index; None: opened here)."""

    groups = acted_on(report, include_similar)
    problems = stale_files(report, groups)
    if problems:
        raise UserError(
            f"the report is older than {len(problems)} of the files it names (e.g. {problems[0]}); "
            f"update the index (vgg-retrieval index --index DIR) and run dedup again"
        )
    moves = plan(report, quarantine, include_similar)
    skipped = len(report.groups) - len(groups)
    if skipped:
        echo(f"{skipped} group(s) of similar shots left alone (for review; not copies)")
    if idx is not None:
        _require_indexed(idx, [mv.src for mv in moves])
        return moves
    if not Index.exists(report.index_dir):
        raise UserError(
            f"the report's index {report.index_dir} is gone: cannot confirm what the report names"
        )
    with Index.open(report.index_dir) as opened:
        _require_indexed(opened, [mv.src for mv in moves])
    return moves


def apply_report(
    report: DedupReport,
    quarantine,
    execute: bool = False,
    log=None,
    keep=(),
    update_index: bool = True,
    echo=print,
    include_similar: bool = False,
) -> Outcome:
    """Move every non-kept file of ``report``'s duplicate groups under ``quarantine`` (only prints
    unless ``execute``); ``include_similar``: the similar-shot groups' too."""
    report = with_keepers(report, keep)
    quarantine = Path(os.path.abspath(quarantine))
    if not execute:
        moves = _checked(report, quarantine, include_similar, echo)
        out = Outcome(moves, executed=False)
        for mv in moves:
            echo(f"would move {mv.src} -> {mv.dst}")
        echo(
            f"dry run: {len(moves)} files ({out.bytes / 1e6:.1f} MB) would be moved to {quarantine}; "
            f"nothing was changed (add --yes to do it)"
        )
        return out
    with journal.locked_index(report.index_dir, echo) as idx:
        crash_point("apply_locked")
        moves = _checked(report, quarantine, include_similar, echo, idx)
        out = Outcome(moves, executed=True)
        for mv in moves:
            echo(f"move {mv.src} -> {mv.dst}")
        if not moves:
            echo("nothing to move")
            return out
        _execute(idx, report, out, quarantine, log, update_index, echo)
    return out


def _execute(idx, report: DedupReport, out: Outcome, quarantine: Path, log, update_index: bool, echo) -> None:
    """The moves of ``out``, under the lock: log, journal, files, index, log again, journal gone."""
    quarantine.mkdir(parents=True, exist_ok=True)
    log = Path(log) if log else _default_log(quarantine)
    if log.exists():
        raise UserError(f"undo log {log} already exists")
    key = index_key(idx.directory, create=True)
    data = {
        "format": LOG_FORMAT,
        "version": LOG_VERSION,
        "created_at": time.time(),
        "state": "moving",
        "report_created_at": report.created_at,
        "index_dir": report.index_dir,
        "roots": report.roots,
        "quarantine": str(quarantine),
        "moves": [m.as_dict() for m in out.moves],
    }
    write_log(log, data, key)  # before anything moves: a crash leaves a log that undo can use
    move_journal.begin(idx, "apply", log)
    out.log = str(log)
    crash_point("apply_journal_written")
    for n, mv in enumerate(out.moves):
        _move(mv.src, mv.dst, "apply_half_moved")
        if n == 0:
            crash_point("apply_moved_one")
    crash_point("apply_moved_all")
    echo(f"moved {len(out.moves)} files ({out.bytes / 1e6:.1f} MB) to {quarantine}; undo log: {log}")
    if update_index:
        out.index_summary = f"index updated: {idx.forget([m.src for m in out.moves]).summary()}"
        echo(out.index_summary)
    crash_point("apply_index_updated")
    data["state"] = "moved"
    data["moved_at"] = time.time()
    write_log(log, data, key)
    move_journal.end(idx)


def read_log(path) -> dict:
    """The undo log at ``path`` as a dict, its shape checked (``indexer.dedup.undo_log``)."""

    return read(path).data
