"""The FAISS side of an index: vectors keyed by the metadata rows' ids, saved crash-safely.

Each save writes a new generation file (``vectors-<n>.faiss``: written to a temporary name, fsynced,
renamed, directory fsynced). The metadata transaction that commits the rows names that file and its
sha256, so the database always points at a complete file that matches it; a crash before the commit
leaves an orphan file that the next writer removes.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import faiss
import numpy as np

from .faults import crash_point


def new_index(dim: int) -> faiss.Index:
    """Exact inner-product search over L2-normalised vectors (= cosine), with our own ids."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(index: faiss.Index, directory: Path, generation: int) -> tuple[str, str]:
    """Write ``index`` as generation ``generation``; returns (file name, sha256)."""
    name = f"vectors-{generation:06d}.faiss"
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


def ids_of(index: faiss.Index) -> np.ndarray:
    if index.ntotal == 0:
        return np.zeros(0, dtype=np.int64)
    return faiss.vector_to_array(faiss.downcast_index(index).id_map).astype(np.int64)


def all_vectors(index: faiss.Index) -> np.ndarray:
    inner = faiss.downcast_index(faiss.downcast_index(index).index)
    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    return faiss.rev_swig_ptr(inner.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d).copy()


def remove(index: faiss.Index, ids) -> int:
    ids = np.asarray(list(ids), dtype=np.int64)
    if len(ids) == 0:
        return 0
    return index.remove_ids(faiss.IDSelectorBatch(ids))


def remove_stale_files(directory: Path, keep: str | None) -> None:
    """Delete generation files other than ``keep`` (orphans of crashed or superseded saves)."""
    for p in directory.glob("vectors-*.faiss*"):
        if p.name != keep:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
