"""Watch mode: keep an index current while files are added, changed and removed.

More: docs/design-notes.md (``indexer.update.watch``)."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from indexer.classify.index_classes import after_update
from retrieval.errors import UserError

DEFAULT_INTERVAL = 30.0
MAX_POSTPONED = 10  # passes an update may wait for the folders to stop changing
SETTLE_SECONDS = 2.0  # a file modified more recently than this may still be being written


class _Stopped(KeyboardInterrupt):
    """Raised inside an update pass by the SIGTERM/SIGINT handler."""


@dataclass
class WatchStats:
    passes: int = 0  # fingerprints taken
    updates: int = 0  # passes that ran an update (something had changed, or the first one)
    changed: int = 0  # updates that changed the index
    failed: int = 0  # updates that failed (reported, retried next pass)
    interrupted: bool = False  # a signal abandoned an update (the index kept its last committed state)
    reports: list = field(default_factory=list)  # UpdateReports of the updates that changed something


def fingerprint(roots: Iterable[str]) -> tuple[dict[str, int], int, int]:
    """({root: number of entries}, a hash of every file's path, size, mtime, ctime and mode below the
    roots, the newest mtime in ns).

    The same walk as ``scan.walk`` (links to files followed, links to folders not), so any change an
    update would act on changes the hash; ctime catches a chmod (an unreadable file that became readable).
    """
    counts: dict[str, int] = {}
    acc = newest = 0
    for root in roots:
        n = 0
        if not os.path.isdir(root):
            counts[root] = 0
            acc = (acc + hash(("missing", root))) & 0xFFFFFFFFFFFFFFFF
            continue
        errors: list[str] = []
        for dirpath, dirnames, filenames in os.walk(
            root, onerror=lambda e: errors.append(str(e)), followlinks=False
        ):
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                    key = (
                        path,
                        st.st_size,
                        st.st_mtime_ns,
                        st.st_ctime_ns,
                        stat.S_IFMT(st.st_mode),
                        st.st_mode,
                    )
                    newest = max(newest, st.st_mtime_ns)
                except OSError as e:
                    key = (path, "error", e.errno)
                acc = (acc + hash(key)) & 0xFFFFFFFFFFFFFFFF  # order-independent
                n += 1
            n += len(dirnames)
        for e in errors:
            acc = (acc + hash(("listing", e))) & 0xFFFFFFFFFFFFFFFF
        counts[root] = n + len(errors)
    return counts, acc ^ len(counts), newest


def watch(
    index,
    folders: Iterable[str | os.PathLike] = (),
    interval: float = DEFAULT_INTERVAL,
    *,
    workers: int | None = None,
    commit_every: int = 1000,
    progress: bool = False,
    out: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    handle_signals: bool = True,
    max_passes: int | None = None,
    **update_options,
) -> WatchStats:
    """Update ``index`` from ``folders`` (all its known folders when empty) now, then every ``interval``
    seconds when something changed, until ``stop`` is set, SIGINT/SIGTERM arrives (``handle_signals``,
    main thread only) or ``max_passes`` fingerprints were taken. ``out`` gets one line per update that
    changed the index, and one per failed update (the loop goes on: a database or a network share that
    is briefly away is retried next pass). The first update's errors are raised: a wrong folder is the
    user's to fix."""
    if interval <= 0:
        raise UserError(f"--interval must be a positive number of seconds (got {interval})")
    stop = stop or threading.Event()
    state = {"busy": False}
    stats = WatchStats()
    previous_handlers = _stop_on_signals(stop, state) if handle_signals else {}
    folders = [str(f) for f in folders]

    def update():
        return index.update(
            folders,
            workers=workers,
            progress=progress and stats.updates == 0,
            commit_every=commit_every,
            **update_options,
        )

    try:
        last = previous = None  # fingerprints at the last update, and of the last pass
        postponed, postponed_since = 0, 0.0
        while not stop.is_set():
            roots = [os.path.realpath(f) for f in folders] if folders else index.store.roots()
            counts, fp, newest = fingerprint(roots)
            stats.passes += 1
            quiet = fp == previous and time.time_ns() - newest >= SETTLE_SECONDS * 1e9
            waited_enough = (
                postponed >= MAX_POSTPONED and time.monotonic() - postponed_since >= 10 * SETTLE_SECONDS
            )
            settled = last is None or quiet or waited_enough
            previous = fp
            if fp != last and not settled:
                if not postponed:
                    postponed_since = time.monotonic()
                postponed += 1  # still changing: look again next pass
            elif fp != last:
                postponed = 0
                vanished = _vanished_roots(index, roots, counts)
                if vanished:
                    out(
                        f"{_now()} skipped: {', '.join(vanished)} now empty or missing but indexed (unmounted?); "
                        f"run `vgg-retrieval index` by hand to drop its images"
                    )
                    last = fp
                elif _update_pass(index, update, stats, state, out, interval):
                    last = fp
            if max_passes is not None and stats.passes >= max_passes:
                break
            stop.wait(interval)
    except _Stopped:  # a signal during an update (it is abandoned), or between it and the flag reset
        stats.interrupted = True
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
    return stats


def _stop_on_signals(stop: threading.Event, state: dict) -> dict:
    """SIGINT/SIGTERM set ``stop`` (and abandon a running update); the handlers they replaced (none off
    the main thread, where Python cannot install handlers)."""

    def on_signal(signum, _frame):
        stop.set()
        if state["busy"]:
            raise _Stopped()

    previous_handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous_handlers[sig] = signal.signal(sig, on_signal)
    return previous_handlers


def _update_pass(
    index, update: Callable, stats: WatchStats, state: dict, out: Callable[[str], None], interval: float
) -> bool:
    """Run ``update()`` and report it; True when it ran through (the folders are indexed as they
    were fingerprinted). A failure after the first update is reported and retried next pass; a signal
    (``_Stopped``) goes through to the loop."""
    state["busy"] = True
    try:
        report = update()
        done = True
    except UserError as e:
        if stats.updates == 0:
            raise
        stats.failed += 1
        out(f"{_now()} update failed, retrying in {interval:g}s: {e}")
        report, done = None, False
    finally:
        state["busy"] = False
    stats.updates += 1
    if report is not None and (
        report.added or report.updated or report.removed or report.errors or stats.updates == 1
    ):
        stats.changed += 1
        stats.reports.append(report)
        out(f"{_now()} {report.summary()}; {index.count} images in the index")
        for path, reason in report.errors:
            out(f"  skipped {path}: {reason}")
        for path, reason in report.offline:
            out(f"  offline {path}: {reason}; its entries are kept")
        note = after_update(index, report)
        if note:
            out(f"{_now()} {note}")
    return done


def _vanished_roots(index, roots: list[str], counts: dict[str, int]) -> list[str]:
    """Roots that are now missing or empty while the index still holds images below them: a mount that
    went away looks exactly like that, and dropping every image of it would be the wrong answer."""
    gone = [r for r in roots if counts.get(r, 0) == 0]
    if not gone:
        return []
    return [r if Path(r).is_dir() else f"{r} (missing)" for r in gone if index.store.count_under(r)]


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
