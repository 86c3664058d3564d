"""Offline folders: a folder of the index that an update cannot list is not a deleted folder.

More: docs/design-notes.md (``indexer.storage.offline``)."""

from __future__ import annotations

import os
import time
from itertools import chain

MISSING = "folder not found (an unplugged disk or an unmounted share?)"


def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(os.path.join(folder, ""))


def in_any(path: str, folders) -> str | None:
    """The first of ``folders`` holding ``path``, or None."""
    return next((f for f in folders if inside(path, f)), None)


def since_text(since: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(since))


def describe(path: str, since: float, reason: str) -> str:
    return f"{path}: offline since {since_text(since)} ({reason})"


def settle(plan, before: dict, roots: list[str], known, keep: set, forget_missing: bool) -> None:
    """After the scan: keep what ``plan.offline`` folders hold (or, ``forget_missing``, let it go
    and name the missing roots to forget); the earlier marks of folders listed again go."""
    ours = [f for f in before if in_any(f, roots)]
    if forget_missing:
        plan.gone_roots = [f for f, (root, _) in plan.offline.items() if f == root and not os.path.exists(f)]
        plan.forgotten = [(f, reason) for f, (_, reason) in plan.offline.items()]
        plan.online = ours
        plan.offline = {}
        return
    folders = list(plan.offline)
    for path in chain(known.files, known.errors):
        if in_any(path, folders):
            keep.add(path)
    plan.online = [f for f in ours if f not in plan.offline]
