"""The dedup undo log: data, never instructions.

More: docs/design-notes.md (``indexer.storage.undo_log``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import UserError
from retrieval.files import file_sha256

from .documents import read_json_document

LOG_FORMAT = "vgg-retrieval-dedup-undo"
LOG_VERSION = 2  # 2: signed; version 1 logs (unsigned) are refused
KEY_FILE = "dedup.key"
STATES = ("moving", "moved", "restoring", "undone")
MOVE_KEYS = {"src": str, "dst": str, "sha256": str, "size": int, "mtime_ns": int}
TOP_KEYS = {"index_dir": str, "quarantine": str, "state": str, "moves": list, "signature": str}


@dataclass
class Move:
    src: str  # where the file was, and goes back to
    dst: str  # its place in the quarantine
    sha256: str
    size: int
    mtime_ns: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class UndoLog:
    path: Path
    data: dict  # the whole document, as read (its other keys are kept when it is written again)
    moves: list[Move]

    @property
    def index_dir(self) -> str:
        return self.data["index_dir"]

    @property
    def quarantine(self) -> str:
        return self.data["quarantine"]

    def entry(self, n: int) -> str:
        return f"undo log {self.path}: entry {n + 1} ({self.moves[n].dst})"


def _bad(path, what: str) -> UserError:
    return UserError(f"undo log {path} is malformed: {what}; nothing was moved")


def _absolute(value: str) -> bool:
    return value.startswith("/") and "\x00" not in value and os.path.normpath(value) == value


def _move_of(path, n: int, m) -> Move:
    if not isinstance(m, dict):
        raise _bad(path, f'entry {n + 1} of "moves" is not an object ({type(m).__name__})')
    lacks, extra = [k for k in MOVE_KEYS if k not in m], sorted(set(m) - set(MOVE_KEYS))
    if lacks:
        raise _bad(path, f'entry {n + 1} of "moves" has no {", ".join(lacks)}')
    if extra:
        raise _bad(path, f'entry {n + 1} of "moves" has unknown keys ({", ".join(extra)[:200]})')
    for key, kind in MOVE_KEYS.items():
        if not isinstance(m[key], kind) or isinstance(m[key], bool):
            raise _bad(path, f'entry {n + 1}: "{key}" is not a {kind.__name__}')
    if not _absolute(m["src"]) or not _absolute(m["dst"]):
        raise _bad(path, f'entry {n + 1}: "src" and "dst" must be absolute, normalized paths')
    if len(m["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in m["sha256"]) or m["size"] < 0:
        raise _bad(path, f"entry {n + 1}: not a sha256 and a size")
    return Move(m["src"], m["dst"], m["sha256"], m["size"], m["mtime_ns"])


def read_log(path) -> UndoLog:
    """The undo log at ``path``, its shape checked (not yet its signature: ``verify``)."""
    path = Path(path)
    data = read_json_document(path, LOG_FORMAT, "undo log", "a dedup undo log")
    version = data.get("version")
    if version == 1:
        raise UserError(
            f"undo log {path} is not signed (written by a vgg-retrieval before signed logs); it "
            f"cannot be checked, so it is refused: move the files back by hand; nothing was moved"
        )
    if version != LOG_VERSION:
        raise _bad(path, f"unknown version {str(version)[:40]}")
    for key, kind in TOP_KEYS.items():
        if key not in data:
            raise _bad(path, f'no "{key}"')
        if not isinstance(data[key], kind):
            raise _bad(path, f'"{key}" is not a {kind.__name__}')
    if data["state"] not in STATES:
        raise _bad(path, f"unknown state {data['state'][:40]!r}")
    if not _absolute(data["index_dir"]) or not _absolute(data["quarantine"]):
        raise _bad(path, '"index_dir" and "quarantine" must be absolute, normalized paths')
    moves = [_move_of(path, n, m) for n, m in enumerate(data["moves"])]
    for key in ("src", "dst"):
        first: dict[str, int] = {}
        for n, mv in enumerate(moves):
            n0 = first.setdefault(getattr(mv, key), n)
            if n0 != n:
                raise _bad(path, f'entry {n + 1} has the "{key}" of entry {n0 + 1}')
    return UndoLog(path, data, moves)


# --- the signature ---------------------------------------------------------------------------------
def _canonical(data: dict) -> bytes:
    body = {k: v for k, v in data.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def signature(data: dict, key: bytes) -> str:
    return hmac.new(key, _canonical(data), hashlib.sha256).hexdigest()


def index_key(index_dir, create: bool = False) -> bytes | None:
    """The index's key for undo logs (made, mode 0600, when ``create`` and missing); None when none."""
    path = Path(index_dir) / KEY_FILE
    if create and not path.exists():
        tmp = path.with_name(KEY_FILE + f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise UserError(f"cannot read the index's undo-log key {path}: {e.strerror}") from None
    return key if len(key) >= 32 else None


def write_log(path: Path, data: dict, key: bytes) -> None:
    """Sign ``data`` with ``key`` and write it atomically (fsynced)."""
    data["version"] = LOG_VERSION
    data["signature"] = signature(data, key)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def verify(log: UndoLog, key: bytes | None) -> None:
    """UserError unless ``key`` (the index's) signed ``log`` as it is."""
    if key is None:
        raise UserError(
            f"undo log {log.path}: the index {log.index_dir} has no undo-log key, so it wrote no "
            f"undo log; refusing it; nothing was moved"
        )
    given = str(log.data.get("signature", "")).encode("utf-8", "replace")
    if not hmac.compare_digest(signature(log.data, key).encode(), given):
        raise UserError(
            f"undo log {log.path} was edited, or written for another index than {log.index_dir} "
            f"(its signature does not match); refusing it; nothing was moved"
        )


# --- each move ---------------------------------------------------------------------------------------
def inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(os.path.join(folder, ""))


def _real_parent(path: str) -> str:
    """The real path of the deepest existing folder above ``path`` (symbolic links resolved)."""
    parent = os.path.dirname(path)
    while parent != "/" and not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    return os.path.realpath(parent)


def check_place(log: UndoLog, n: int, roots: list[str], offline: list[str]) -> None:
    """UserError naming entry ``n`` unless its quarantined file lies inside the quarantine folder and
    its restore path inside one of ``roots`` (the index's folders), not in one of ``offline``."""
    mv, where = log.moves[n], log.entry(n)
    quarantine = os.path.realpath(log.quarantine)
    if (
        not inside(mv.dst, log.quarantine)
        or mv.dst == log.quarantine
        or not inside(_real_parent(mv.dst), quarantine)
    ):
        raise UserError(
            f"{where}: the quarantined file is not inside the quarantine folder {log.quarantine}; "
            f"nothing was moved"
        )
    if not any(
        inside(mv.src, r) and mv.src != r and inside(_real_parent(mv.src), os.path.realpath(r)) for r in roots
    ):
        raise UserError(
            f"{where}: its restore path {mv.src} is not inside the index's folders; nothing was moved"
        )
    if inside(mv.src, quarantine) or inside(mv.src, log.quarantine):
        raise UserError(f"{where}: its restore path {mv.src} is inside the quarantine; nothing was moved")
    gone = [f for f in offline if inside(mv.src, f)]
    if gone:
        raise UserError(f"{where}: its restore path is in the offline folder {gone[0]}; nothing was moved")


def check_file(log: UndoLog, n: int) -> None:
    """UserError naming entry ``n`` unless its quarantined file is a regular file of the size and
    sha256 apply recorded."""
    mv, where = log.moves[n], log.entry(n)
    try:
        st = os.lstat(mv.dst)
    except OSError as e:
        raise UserError(
            f"{where}: cannot read the quarantined file: {e.strerror}; nothing was moved"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{where}: the quarantined file is not a regular file; nothing was moved")
    try:
        same = st.st_size == mv.size and file_sha256(mv.dst) == mv.sha256
    except OSError as e:
        raise UserError(
            f"{where}: cannot read the quarantined file: {e.strerror}; nothing was moved"
        ) from None
    if not same:
        raise UserError(
            f"{where}: the quarantined file is not the one apply moved (size or sha256 differ); "
            f"nothing was moved"
        )
