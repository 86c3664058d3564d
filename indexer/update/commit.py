"""The commit of an update: rows and a new vectors file, atomically, or neither.

The new generation's vectors file is saved (fsynced, renamed) inside the database transaction that
names it; the database's ``vectors_file`` meta is the commit point. A crash before it leaves the old
generation (the new file is an orphan the next writer removes); after it, the new one.
"""

from __future__ import annotations

import os
import time

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from indexer import vectors
from indexer.faults import crash_point
from indexer.reports import UpdateReport
from indexer.storage import whitened_vectors as whitened
from indexer.storage.loaded_vectors import CommittedVectors
from indexer.storage.store import Store
from retrieval.errors import UserError

from .decode import Decoded


def commit(
    store: Store,
    committed: CommittedVectors,
    added: list[tuple[Decoded, np.ndarray]],
    errors: list[tuple[str, str, int, int]],
    reasons: dict[str, str],
    delete_paths,
    clear_errors,
    report: UpdateReport,
) -> None:
    """One atomic step: rows and a new vectors file, or neither. ``added``: (item, vector) pairs
    (new or changed files); ``errors``: (path, root, size, mtime_ns) of unusable files, ``reasons``
    says why; ``delete_paths``: rows to drop; ``clear_errors``: error rows to drop."""
    directory = committed.directory
    index = committed.index
    new_file = None
    try:
        with store.session.begin() as s:
            generation = int(Store.get_meta(s, "generation", 0)) + 1
            rows, drop, now = _write_rows(s, added, errors, reasons, delete_paths, clear_errors, report)
            if store.has_captures:  # gone rows lose theirs; new and changed photos get theirs
                Store.delete_captures_in(s, drop)
                Store.write_captures_in(
                    s, [(r.id, d.capture) for r, (d, _) in zip(rows, added) if d.capture is not None]
                )
            ids = np.array([r.id for r in rows], dtype=np.int64)
            index = vectors.without(
                index, drop + ids.tolist()
            )  # updated files keep their id, get a new vector
            new_vectors = np.stack([v for _, v in added]).astype(np.float32) if rows else None
            if rows:
                index.add_with_ids(new_vectors, ids)
            adapted = _adapt_vectors(s, index)
            new_file, digest = vectors.save(adapted, directory, generation)
            committed.whitened.follow(
                s, adapted, generation, drop + ids.tolist(), ids, new_vectors, rebuilt=adapted is not index
            )
            index = adapted
            Store.set_meta(s, "generation", generation)
            Store.set_meta(s, "vectors_file", new_file)
            Store.set_meta(s, "vectors_sha256", digest)
            Store.set_meta(s, "count", int(index.ntotal))
            Store.set_meta(s, "updated_at", now)
    except BaseException as e:
        if new_file and not _names_vectors_file(store, new_file, e):
            (directory / new_file).unlink(missing_ok=True)
        committed.forget()  # back to the committed state, reloaded when next needed
        whitened.discard_uncommitted(directory, store)
        if isinstance(e, (OSError, SQLAlchemyError)):
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:200]
            raise UserError(
                f"cannot save the index in {directory} ({reason}); it keeps its last saved state"
            ) from None
        raise
    crash_point("after_commit")
    committed.replace(index, new_file)
    committed.whitened.installed()
    vectors.remove_stale_files(directory, keep=new_file)


def _write_rows(s, added, errors, reasons, delete_paths, clear_errors, report: UpdateReport):
    """The row changes of a commit in session ``s`` (flushed: new rows have ids): (the added or
    updated rows, in ``added``'s order; the ids whose vectors go; the commit's time)."""
    paths_touched = [d.path for d, _ in added] + [e[0] for e in errors] + list(delete_paths)
    existing = Store.rows_by_path_in(s, paths_touched)
    # files gone, or now unusable: drop their rows and vectors
    readded = {d.path for d, _ in added}  # a changed video's frames at the same time: updated
    gone = [
        existing[p] for p in list(delete_paths) + [e[0] for e in errors] if p in existing and p not in readded
    ]
    drop = [r.id for r in gone]  # out of the vectors, with the replaced ones
    Store.delete_rows_in(s, gone)
    report.removed += len([p for p in delete_paths if p not in readded])
    Store.clear_errors_in(s, list(clear_errors) + [d.path for d, _ in added] + [e[0] for e in errors])
    now = time.time()
    rows = []
    for d, _ in added:
        row = existing.get(d.path)
        if row is None:
            row = Store.new_image_in(s, d.path)
            report.added += 1
        else:
            report.updated += 1
        row.root = d.root
        row.label = label_of(d.path, d.root)
        row.sha256, row.size, row.mtime_ns = d.sha256, d.size, d.mtime_ns
        row.width, row.height, row.format, row.indexed_at = d.width, d.height, d.format[:16], now
        row.source, row.time_s = d.source, d.time_s  # video frames; None for photos
        rows.append(row)
    for path, root, size, mtime in errors:
        Store.add_error_in(s, path, root, reasons.get(path, "unknown"), size, mtime, now)
    s.flush()
    return rows, drop, now


def _names_vectors_file(store: Store, name: str, error: BaseException) -> bool:
    """Whether the database names ``name`` as its vectors file after ``error`` ended a commit: a
    commit can go through and still raise (a signal handled as the transaction closes, e.g.
    ``index --watch`` stopped by SIGTERM). A database error from SQLite means the transaction
    did not commit (a failed COMMIT is rolled back, if need be from its journal), e.g. on a full
    disk, where the file should go. Otherwise the database is asked; when unsure, True: an
    orphan file is removed by the next writer, while a file the database names must never be
    deleted (PostgreSQL: a connection lost during COMMIT leaves the outcome unknown here)."""
    if isinstance(error, SQLAlchemyError) and store.backend == "sqlite":
        return False
    try:
        return store.meta("vectors_file") == name
    except BaseException:  # noqa: BLE001 - database away, or another signal: keep the file
        return True


def _adapt_vectors(s, index):
    """The index type re-decided for the new size (flat -> IVF once there is enough to train, a
    bigger IVF after growth): a converted index and its meta, in this commit's transaction."""
    cfg = vectors.IndexConfig.from_meta(Store.get_meta(s, "vectors_index"))
    index, new_cfg = vectors.adapt(index, cfg)
    if new_cfg is not cfg:
        Store.set_meta(s, "vectors_index", new_cfg.to_meta())
    return index


def label_of(path: str, root: str) -> str:
    """A row's label: its folder's name (the root's own name for files directly in it)."""
    parent = os.path.dirname(path)
    if os.path.normpath(parent) == os.path.normpath(root):
        return os.path.basename(os.path.normpath(root))
    return os.path.basename(parent)
