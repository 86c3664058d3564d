"""``dedup undo``: move the files of a signed undo log back where they were, under the index's
write lock, as one recoverable step (``indexer.dedup.journal``). Every entry is checked
(``indexer.dedup.undo_log``) before any file moves: one bad entry and nothing is moved."""

from __future__ import annotations

import os
import time
from pathlib import Path

from indexer.faults import crash_point
from indexer.index import Index
from indexer.storage import move_journal
from indexer.storage.undo_log import UndoLog, check_file, check_place, index_key, read_log, verify, write_log
from retrieval.errors import UserError

from . import journal
from .moves import Outcome, _move


def restorable(idx, log: UndoLog) -> list[int]:
    """The entries of ``log`` to move back (still only in the quarantine), all checked: UserError
    naming the first entry that may not be, or when the log is not the index's own."""
    verify(log, index_key(idx.directory))
    roots, offline = idx.store.roots(), list(idx.store.offline_folders())
    for n in range(len(log.moves)):
        check_place(log, n, roots, offline)
    todo, conflicts, missing = [], [], []
    for n, mv in enumerate(log.moves):
        at_src, at_dst = os.path.lexists(mv.src), os.path.lexists(mv.dst)
        if at_dst and not at_src:
            todo.append(n)
        elif at_dst and at_src:
            conflicts.append(n)
        elif not at_dst and not at_src:
            missing.append(n)
        # only at src: never moved (or already back): nothing to do
    if conflicts:
        raise UserError(
            f"{log.entry(conflicts[0])}: its original path is taken again ({len(conflicts)} such "
            f"entries); move those aside first; nothing was moved"
        )
    if missing:
        raise UserError(
            f"{log.entry(missing[0])}: the quarantined file is gone ({len(missing)} such entries); "
            f"nothing was moved"
        )
    for n in todo:
        check_file(log, n)
    return todo


def _open_checked(path) -> tuple:
    """(the log, the entries to restore), for a dry run: the index opened read-only, not locked."""

    log = read_log(path)
    if not Index.exists(log.index_dir):
        raise UserError(f"undo log {log.path}: its index {log.index_dir} is gone; nothing was moved")
    with Index.open(log.index_dir) as idx:
        return log, restorable(idx, log)


def undo(path, execute: bool = False, update_index: bool = True, echo=print) -> Outcome:
    """Move the files of the undo log at ``path`` back where they were (only prints unless ``execute``)."""
    if not execute:
        log, todo = _open_checked(path)
        for n in todo:
            echo(f"would restore {log.moves[n].dst} -> {log.moves[n].src}")
        echo(f"dry run: {len(todo)} files would be restored; nothing was changed (add --yes to do it)")
        return Outcome([log.moves[n] for n in todo], executed=False, log=str(log.path))
    log = read_log(path)  # its shape (and the index it names) before anything is locked
    with journal.locked_index(log.index_dir, echo) as idx:
        crash_point("undo_locked")
        log = read_log(path)  # again: a recovery may have just written it
        todo = restorable(idx, log)
        out = Outcome([log.moves[n] for n in todo], executed=True, log=str(log.path))
        for mv in out.moves:
            echo(f"restore {mv.dst} -> {mv.src}")
        was_restoring = log.data["state"] == "restoring"
        if todo or was_restoring:
            _restore(idx, log, out, echo)
        if update_index and (todo or was_restoring):
            back = [mv.src for mv in log.moves if os.path.lexists(mv.src)]
            out.index_summary = journal.reindex(idx, back, echo)
    return out


def _restore(idx, log: UndoLog, out: Outcome, echo) -> None:
    """The moves back, under the lock: log "restoring", journal, files, log "undone", journal gone."""
    key = index_key(idx.directory)
    log.data["state"] = "restoring"
    write_log(log.path, log.data, key)
    move_journal.begin(idx, "undo", log.path)
    crash_point("undo_journal_written")
    for n, mv in enumerate(out.moves):
        _move(mv.dst, mv.src, "undo_half_moved")
        if n == 0:
            crash_point("undo_moved_one")
    crash_point("undo_moved_all")
    _tidy(Path(log.quarantine), out.moves)
    log.data["state"] = "undone"
    log.data["undone_at"] = time.time()
    write_log(log.path, log.data, key)
    crash_point("undo_log_marked")
    move_journal.end(idx)
    echo(f"restored {len(out.moves)} files")


def _tidy(quarantine: Path, moves) -> None:
    """Remove the folders the quarantine made, when now empty."""
    for mv in moves:
        d = Path(mv.dst).parent
        while quarantine in d.parents:
            try:
                d.rmdir()
            except OSError:
                break
            d = d.parent
