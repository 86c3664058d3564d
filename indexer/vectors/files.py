"""Vectors files: one crash-safe generation file per save (``vectors-<n>.faiss``), its sha256, and
removing the files of crashed or superseded saves."""

from __future__ import annotations

import os
from pathlib import Path

import faiss

from indexer.faults import crash_point
from retrieval.files import file_sha256


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(index: faiss.Index, directory: Path, generation: int, prefix: str = "vectors") -> tuple[str, str]:
    """Write ``index`` as generation ``generation`` (``<prefix>-<generation>.faiss``); returns (file name, sha256)."""
    name = f"{prefix}-{generation:06d}.faiss"
    final = directory / name
    tmp = directory / (name + ".tmp")
    try:
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        digest = file_sha256(tmp)
        crash_point("vectors_tmp_written")
        os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, RuntimeError):  # FAISS reports failed writes (disk full...) as RuntimeError
            raise OSError(f"cannot write {final}: {str(e).strip().splitlines()[-1][:200]}") from None
        raise
    crash_point("vectors_renamed")
    return name, digest


def load(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def remove_stale_files(directory: Path, keep: str | None) -> None:
    """Delete generation files other than ``keep`` (orphans of crashed or superseded saves)."""
    for p in directory.glob("vectors-*.faiss*"):
        if p.name != keep:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
