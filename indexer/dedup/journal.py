"""``dedup apply`` and ``dedup undo`` as one recoverable step.

More: docs/design-notes.md (``indexer.dedup.journal``)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from indexer.index import Index
from indexer.storage.folder import check_writable
from indexer.storage.move_journal import recover
from indexer.storage.undo_log import inside
from retrieval.errors import UserError


@contextmanager
def locked_index(index_dir, echo=print) -> Iterator:
    """The index at ``index_dir``, open and write-locked, with an interrupted apply/undo finished."""

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
