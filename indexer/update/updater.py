"""Running an update: under the write lock, plan it, stream the embedded items from the index's
embedding strategy, and commit them in steps (every ``commit_every`` items or ``commit_seconds``),
never splitting a video's frames across commits; report progress as files complete.

A commit rewrites the whole vectors file, so its cost grows with the index (0.2 s at 20,000 vectors,
0.8 s at 100,000, 2.3 s at 400,000 on our 2-core machines). Slow commits are spaced so that they
take at most ``COMMIT_SHARE`` of the run: after a commit of s >= ``SLOW_COMMIT`` seconds, the next
waits at least s * (1 / COMMIT_SHARE - 1) seconds, however many items are pending. Faster commits
are not spaced: every 1,000 photos they cost under 3% of an update even at 120 img/s."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from indexer import vectors
from indexer.faults import crash_point
from indexer.reports import UpdateReport
from indexer.storage.folder import check_writable, write_lock
from indexer.storage.move_journal import recover
from retrieval.errors import UserError
from retrieval.preprocess import DEFAULT_MAX_PIXELS

from .capture import fill_missing
from .decode import Decoded
from .embedding import embedding_strategy
from .planning import Plan, plan_update
from .scan import printable

Progress = Callable[[int, int], object]
COMMIT_SHARE = 0.05  # slow commits take at most this share of an update's time
SLOW_COMMIT = 0.25  # seconds: a commit this slow (about 30,000 vectors and up) spaces the next


def update(
    index,
    folders: Iterable = (),
    workers: int | None = None,
    progress: bool | Progress = True,
    commit_every: int = 1000,
    commit_seconds: float = 120.0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    forget_missing: bool = False,
) -> UpdateReport:
    """``Index.update``: bring ``index`` in line with ``folders`` (all known roots when empty);
    ``forget_missing``: drop the entries of folders that cannot be listed (``indexer.storage.offline``)."""
    roots = _roots(index, folders, forget_missing)
    check_writable(index.directory)
    if workers is None:
        workers = default_workers()
    t0 = time.perf_counter()
    with write_lock(index.directory):
        # files of saves that never committed (a crash): the database does not name them
        vectors.remove_stale_files(index.directory, keep=index.store.meta("vectors_file"))
        report = UpdateReport()
        recover(index, report.notes.append)  # a dedup apply/undo a kill interrupted
        index.store.add_roots(roots)
        plan = plan_update(index.store, roots, report, forget_missing, skip=os.path.realpath(index.directory))
        index.store.mark_folders(plan.offline, plan.online)
        report.offline = sorted((f, reason) for f, (_, reason) in plan.offline.items())
        report.notes.extend(f"forgetting the entries of {f} ({reason})" for f, reason in plan.forgotten)
        crash_point("after_scan")
        index.committed.load(force=True)
        jobs = [(e.path, e.root, index.spec.input_geometry, max_pixels) for e in plan.todo]
        run = UpdateRun(
            index._commit, plan, report, progress_bar(progress, len(jobs)), commit_every, commit_seconds
        )
        run.run(embedding_strategy(index.distributor, index, workers).embedded(jobs))
        if plan.gone_roots:  # after the commits that dropped their rows
            index.store.remove_roots(plan.gone_roots)
            report.notes.extend(f"forgot the missing folder {r}" for r in plan.gone_roots)
        fill_missing(index.store)  # photos of an index made before capture metadata was kept
    report.seconds = time.perf_counter() - t0
    return report


def default_workers(cores: int | None = None) -> int:
    """Decode processes for a local update on a machine with ``cores`` CPUs (default: this one's).
    None with 2 cores or fewer: the engine's inference already uses every core, and one decoding
    process beside it made indexing 15-40% slower on 2 cores, for small and 12-megapixel JPEGs alike
    (benchmarks/decode_workers.py, benchmarks/model_variants.py: the two fight for the cores). Else half the
    cores, at most 4: not measured here beyond 2 cores, so the rule from before stays."""
    cores = cores or os.cpu_count() or 2
    return 0 if cores <= 2 else min(4, cores // 2)


def forget(index, paths: Iterable[str]) -> UpdateReport:
    """``Index.forget``: drop these files' rows and vectors in one commit, scanning nothing."""
    t0 = time.perf_counter()
    report = UpdateReport()
    with write_lock(index.directory):
        vectors.remove_stale_files(index.directory, keep=index.store.meta("vectors_file"))
        known = index.store.indexed_paths(paths)
        if known:
            index.committed.load(force=True)
            index._commit([], [], {}, known, [], report)
    report.seconds = time.perf_counter() - t0
    return report


def check_root(folder, index_dir) -> str:
    """The real path of ``folder``, to index into the index at ``index_dir``; UserError when its
    name is not valid UTF-8 (the database stores text) or it is the index folder or inside it."""
    real = os.path.realpath(folder)
    if printable(real) != real:
        raise UserError(f"folder name is not valid UTF-8: {printable(real)} (rename the folder)")
    ix = os.path.realpath(index_dir)
    if real == ix or real.startswith(os.path.join(ix, "")):
        raise UserError(f"{real} is the index folder {ix} or inside it: name the photo folders to index")
    return real


def _roots(index, folders: Iterable, forget_missing: bool = False) -> list[str]:
    roots = []
    for f in folders:
        p = Path(f)
        if not p.exists() and forget_missing and os.path.abspath(p) in index.store.roots():
            roots.append(os.path.abspath(p))  # a known folder that is gone: forgotten
            continue
        if not p.exists():
            raise UserError(f"folder not found: {printable(str(f))}")
        if not p.is_dir():
            raise UserError(f"not a folder: {printable(str(f))}")
        roots.append(check_root(p, index.directory))
    if not roots:
        roots = index.store.roots()
        if not roots:
            raise UserError(f"index {index.directory} has no folders yet: name at least one FOLDER")
    return roots


class UpdateRun:
    """One update's pipeline state: what waits for the next commit, and when that is due.
    ``commit``: ``(added, errors, reasons, delete_paths, clear_errors, report)`` (``Index._commit``)."""

    def __init__(
        self,
        commit: Callable,
        plan: Plan,
        report: UpdateReport,
        bar,
        commit_every: int,
        commit_seconds: float,
    ):
        self._commit = commit
        self.report = report
        self.bar = bar
        self.commit_every = commit_every
        self.commit_seconds = commit_seconds
        self.pending: list[tuple[Decoded, np.ndarray]] = []
        self.pending_errors = [(e.path, e.root, e.size, e.mtime_ns) for e in plan.problems]
        self.reasons = {e.path: e.problem for e in plan.problems}
        report.errors.extend((e.path, e.problem) for e in plan.problems)
        self.deletes = list(plan.delete_paths)
        self.clear_errors = list(plan.clear_errors)
        self.last_commit = time.monotonic()
        self.last_commit_seconds = 0.0

    def run(self, stream: Iterator[tuple[Decoded, np.ndarray | None]]) -> None:
        """Take every item of ``stream``, committing as due; then commit what is left. An exception
        (from the stream or the progress callback) leaves the index at its last commit."""
        try:
            for d, vec in stream:
                self.take(d, vec)
                # items come in job order: after a file's last item no video is half in ``pending``
                if not d.more and self.commit_due():
                    self.commit()
        finally:
            self.bar.close()
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # a stop mid-way: decoding processes or Ray end now, not when collected
        if self.pending or self.pending_errors or self.deletes or self.clear_errors:
            self.commit()

    def take(self, d: Decoded, vec: np.ndarray | None) -> None:
        if d.problem:
            self.pending_errors.append((d.path, d.root, d.size, d.mtime_ns))
            self.reasons[d.path] = d.problem
            self.report.errors.append((d.path, d.problem))
            self.bar.update(1)
        else:
            self.pending.append((d, vec))
            self.report.embedded += 1
            self.bar.update(0 if d.more else 1)  # files: a video's frames count once

    def commit_due(self) -> bool:
        if not self.pending:
            return False
        since = time.monotonic() - self.last_commit
        slow = self.last_commit_seconds >= SLOW_COMMIT
        if slow and since < self.last_commit_seconds * (1 / COMMIT_SHARE - 1):
            return False  # the last commit was slow (a large index): the engine goes on for longer
        return len(self.pending) >= self.commit_every or since > self.commit_seconds

    def commit(self) -> None:
        t0 = time.monotonic()
        self._commit(
            self.pending, self.pending_errors, self.reasons, self.deletes, self.clear_errors, self.report
        )
        self.pending, self.pending_errors, self.deletes, self.clear_errors = [], [], [], []
        self.last_commit = time.monotonic()
        self.last_commit_seconds = self.last_commit - t0


class CallbackProgress:
    """tqdm's ``update``/``close`` over a ``progress(done, total)`` callable."""

    def __init__(self, callback: Progress, total: int):
        self.callback, self.total, self.done = callback, total, 0

    def update(self, n: int = 1) -> None:
        if n:
            self.done += n
            self.callback(self.done, self.total)

    def close(self) -> None:
        pass


def progress_bar(progress: bool | Progress, total: int):
    """A tqdm bar (``progress`` True; disabled when False or nothing to do), or the callable's adapter."""
    if callable(progress):
        return CallbackProgress(progress, total)
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="img",
        desc="indexing",
        disable=not progress or not total,
        dynamic_ncols=True,
        smoothing=0.1,
    )
