"""``dedup apply`` and ``dedup undo`` as one recoverable step.

Both take the index's write lock first (so an ``index`` run and a move never overlap: the second is
refused before it moves anything), then check the files, write the signed undo log and the journal
``INDEX/dedup.journal`` (which names that log), move the files, update the index and remove the
journal. A kill at any point leaves the journal behind; the next ``index``, ``dedup apply`` or
``dedup undo`` finishes it (``recover``) under the same lock:

- an apply: a file found under both names (a move cut between its two steps) keeps its quarantine
  name; the index forgets every file that is in the quarantine; the log says "moved". The files
  not moved yet stay where they are (and in the index); ``dedup undo LOG`` brings back the others.
- an undo: a file found under both names keeps its restored name; the log stays "restoring", and
  the files back are indexed again; ``dedup undo LOG`` restores the rest.

Crash points: ``indexer.faults.APPLY_POINTS`` and ``UNDO_POINTS``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from indexer.storage.move_journal import recover
from indexer.storage.undo_log import inside
from retrieval.errors import UserError


@contextmanager
def locked_index(index_dir, echo=print) -> Iterator:
    """The index at ``index_dir``, open and write-locked, with an interrupted apply/undo finished."""
    from indexer.index import Index
    from indexer.storage.folder import check_writable

    if not Index.exists(index_dir):
        raise UserError(f"the index {index_dir} is gone: cannot confirm the files to move; nothing was moved")
    with Index.open(index_dir) as idx:
        check_writable(idx.directory)
        with idx.write_lock():
            back = recover(idx, echo)
            if back:
                reindex(idx, back, echo)
            yield idx


def roots_of(index, paths) -> list[str]:
    """The index's folders holding any of ``paths`` (and still there)."""
    roots = index.store.roots()
    return sorted({r for r in roots for p in paths if inside(p, r) and p != r and os.path.isdir(r)})


def reindex(index, paths: list[str], echo) -> str:
    """Embed restored files again: an update of the index's folders that hold them."""
    affected = roots_of(index, paths)
    if not affected:
        return "no indexed folder affected"
    rep = index.update(affected, progress=False, workers=0)
    summary = f"index updated: {rep.summary()}"
    echo(summary)
    return summary
