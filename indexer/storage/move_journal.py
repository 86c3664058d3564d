"""The journal of a dedup apply or undo (``INDEX/dedup.journal``, naming its signed undo log), and
finishing one a kill interrupted: the next update or dedup run calls ``recover`` under the write lock.
The steps and their crash points: ``indexer.dedup.journal``."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from retrieval.errors import UserError
from retrieval.files import file_sha256

from .undo_log import UndoLog, index_key, read_log, verify, write_log

JOURNAL = "dedup.journal"


def begin(index, op: str, log: Path) -> None:
    """Write the journal: an ``op`` ("apply" or "undo") of ``log`` is under way."""
    path = Path(index.directory) / JOURNAL
    tmp = path.with_name(JOURNAL + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"op": op, "log": str(Path(log).resolve()), "pid": os.getpid(), "at": time.time()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def end(index) -> None:
    try:
        os.unlink(Path(index.directory) / JOURNAL)
    except FileNotFoundError:
        pass


def recover(index, echo=print) -> list[str]:
    """Finish an apply or undo a kill interrupted (the caller holds the write lock); the paths of
    restored files the caller should index again (an undo's), else []."""
    path = Path(index.directory) / JOURNAL
    if not path.exists():
        return []
    try:
        j = json.loads(path.read_text(encoding="utf-8"))
        op, log = j["op"], read_log(j["log"])
        verify(log, index_key(index.directory))
    except (OSError, ValueError, KeyError, TypeError, UserError) as e:
        end(index)  # the files stay where they are; an index update drops those moved away
        echo(
            f"note: an interrupted dedup apply/undo left a journal whose undo log cannot be used ({e}); "
            f"removed it"
        )
        return []
    if op == "apply":
        _finish_apply(index, log, echo)
        return []
    return _finish_undo(index, log, echo)


def _settle(old: str, new: str, sha256: str, size: int) -> None:
    """A move from ``old`` to ``new`` cut short: when ``new`` holds the file, ``old`` goes."""
    partial = new + ".partial"
    if os.path.lexists(partial) and os.path.lexists(old):
        os.unlink(partial)  # a copy across file systems that never finished
    if not (os.path.lexists(old) and os.path.lexists(new)):
        return
    a, b = os.lstat(old), os.lstat(new)
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) or (
        b.st_size == size and os.path.isfile(new) and file_sha256(new) == sha256
    ):
        os.unlink(old)


def _finish_apply(index, log: UndoLog, echo) -> None:
    for mv in log.moves:
        _settle(mv.src, mv.dst, mv.sha256, mv.size)
    moved = [mv.src for mv in log.moves if os.path.lexists(mv.dst) and not os.path.lexists(mv.src)]
    if moved:
        index.forget(moved)
    log.data["state"] = "moved"
    log.data["moved_at"] = time.time()
    write_log(log.path, log.data, index_key(index.directory))
    end(index)
    echo(
        f"note: finished an interrupted dedup apply: {len(moved)} of {len(log.moves)} files are in the "
        f"quarantine (undo log {log.path}), the index forgot them"
    )


def _finish_undo(index, log: UndoLog, echo) -> list[str]:
    for mv in log.moves:
        _settle(mv.dst, mv.src, mv.sha256, mv.size)
    back = [mv.src for mv in log.moves if os.path.lexists(mv.src) and not os.path.lexists(mv.dst)]
    left = sum(1 for mv in log.moves if os.path.lexists(mv.dst))
    if not left:
        log.data["state"] = "undone"
        log.data["undone_at"] = time.time()
        write_log(log.path, log.data, index_key(index.directory))
    end(index)
    echo(
        f"note: an interrupted dedup undo of {log.path}: {len(back)} files are back, {left} still in the "
        f"quarantine" + (f"; run `vgg-retrieval dedup undo {log.path} --yes` again for them" if left else "")
    )
    return back
