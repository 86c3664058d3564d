"""Planning an update: compare the files under the roots with what the store knows, and say what
to embed, what to record as a problem, which rows to delete and which error rows to clear."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from indexer.reports import UpdateReport
from indexer.storage import offline
from indexer.storage.store import Store

from .scan import Entry, classify, walk


@dataclass
class Plan:
    todo: list[Entry] = field(default_factory=list)  # new or changed files to decode and embed
    problems: list[Entry] = field(default_factory=list)  # files found unusable while scanning
    delete_paths: list[str] = field(default_factory=list)  # rows whose files are gone or replaced
    clear_errors: list[str] = field(default_factory=list)  # error rows whose files changed or went
    offline: dict[str, tuple[str, str]] = field(default_factory=dict)  # folder -> (root, reason): not listed
    online: list[str] = field(
        default_factory=list
    )  # folders marked offline before, listed (or forgotten) now
    gone_roots: list[str] = field(default_factory=list)  # missing roots to forget (--forget-missing)
    forgotten: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason): not listed, let go


@dataclass
class _Known:
    """What the store holds under the roots, as the scan compares it."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (size, mtime_ns); a video once
    errors: dict[str, tuple[int, int]] = field(default_factory=dict)
    frames: dict[str, list[str]] = field(default_factory=dict)  # video file -> its frame rows
    images: dict[str, None] = field(default_factory=dict)  # photo rows (ordered)


def _known(store: Store, roots: list[str]) -> _Known:
    known = _Known()
    for root in roots:
        for path, size, mtime, source in store.images_under(root):
            if source is None:
                known.images[path] = None
            else:
                known.frames.setdefault(source, []).append(path)
                path = source
            known.files[path] = (size, mtime)
        for path, size, mtime in store.errors_under(root):
            known.errors[path] = (size, mtime)
    return known


def plan_update(
    store: Store,
    roots: list[str],
    report: UpdateReport,
    forget_missing: bool = False,
    skip: str | None = None,
) -> Plan:
    """Scan ``roots`` (leaving out the folder ``skip``); unchanged files are counted in
    ``report.unchanged`` and left alone. A folder that cannot be listed keeps its entries, marked
    offline (``indexer.storage.offline``), unless ``forget_missing``."""
    known = _known(store, roots)
    plan = Plan()
    keep: set[str] = set()
    seen: set[str] = set()
    for root in roots:
        if not os.path.isdir(root):
            plan.offline[root] = (root, offline.MISSING)
            continue
        for e in walk(root, skip):
            if e.unlisted:
                plan.offline[e.path] = (root, e.problem)
                continue
            if e.path in seen:
                continue  # nested roots
            seen.add(e.path)
            if e.problem is None and known.files.get(e.path) == (e.size, e.mtime_ns):
                keep.add(e.path)
                report.unchanged += len(known.frames.get(e.path, ())) or 1
                continue
            if e.problem is None and known.errors.get(e.path) == (e.size, e.mtime_ns):
                keep.add(e.path)  # same bad file as last time: its error row stays
                continue
            if e.problem is None:
                c = classify(e)
                if c is None:
                    continue
                e = c
            if e.problem:
                plan.problems.append(e)
            else:
                plan.todo.append(e)
    offline.settle(plan, store.offline_folders(), roots, known, keep, forget_missing)
    todo_paths = {e.path for e in plan.todo if e.kind == "image"}
    # gone or unusable files; a changed video's old frames too (re-sampled frames at the same time
    # reuse their row); a file that changed kind (image <-> video) loses its old rows
    plan.delete_paths = [p for p in known.images if p not in keep and p not in todo_paths]
    plan.delete_paths += [f for v, paths in known.frames.items() if v not in keep for f in paths]
    plan.clear_errors = [p for p in known.errors if p not in keep]
    return plan
