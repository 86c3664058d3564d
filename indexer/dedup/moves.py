"""Moving files for apply and undo: never overwriting, crash points between the two names, and
what a run moved (``Outcome``)."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field

from indexer.faults import crash_point
from indexer.storage.undo_log import Move
from retrieval.errors import UserError


@dataclass
class Outcome:
    moves: list[Move]
    executed: bool
    log: str | None = None
    index_summary: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(m.size for m in self.moves)


def _move(src: str, dst: str, half: str = "") -> None:
    """Move a file without ever overwriting; across file systems copy, fsync, then unlink. ``half``:
    the crash point between the new name's arrival and the old one's removal."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.lexists(dst):
        raise UserError(f"refusing to overwrite {dst}")
    try:
        os.link(src, dst)  # atomic, fails if dst exists; then drop the old name
        crash_point(half)
        os.unlink(src)
        return
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EACCES):
            raise
    tmp = dst + ".partial"
    shutil.copy2(src, tmp)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.rename(tmp, dst)
    crash_point(half)
    os.unlink(src)
