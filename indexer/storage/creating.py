"""Making a new index folder in steps that a kill can interrupt at any moment.

More: docs/design-notes.md (``indexer.storage.creating``)."""

from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from indexer.faults import crash_point
from retrieval.engines.export import ONNX_FILE, SIDECAR, replace_dir
from retrieval.errors import UserError

from .layout import DB_FILE, LOCK_FILE, MODEL_DIR

MARK = ".creating"
PRECISIONS = ("int8", "fp32", "bf16")  # bf16: the FP32 files, run in bf16 by OpenVINO
# a new INT8 index calibrates on at least this many pictures; with fewer it starts in FP32 (never refused)
MIN_CALIBRATION_IMAGES = 3
# what an unfinished creation may have written (never a user's file)
_OURS = (
    MARK,
    MODEL_DIR,
    MODEL_DIR + ".tmp",
    MODEL_DIR + ".old",
    ".export-*",
    ".int8-*",
    LOCK_FILE,
    DB_FILE,
    DB_FILE + "-journal",
    DB_FILE + "-wal",
    DB_FILE + "-shm",
    "vectors-*.faiss*",
)


def unfinished(directory: Path) -> bool:
    """Whether ``directory`` holds a creation that never finished (it carries the mark)."""
    return (Path(directory) / MARK).exists()


def leftovers(directory: Path) -> list[Path] | None:
    """What an interrupted creation left in ``directory``, to clear before starting over; None when
    the folder holds anything else (then it is not ours to clear)."""
    directory = Path(directory)
    marked = unfinished(directory)
    found = []
    for entry in directory.iterdir():
        patterns = _OURS if marked else (".export-*", LOCK_FILE)
        if not any(fnmatch.fnmatchcase(entry.name, p) for p in patterns):
            return None
        found.append(entry)
    return found


def clear(paths: Iterable[Path]) -> None:
    """Remove an interrupted creation's files; the mark last, so a kill here leaves it marked."""
    paths = sorted(paths, key=lambda p: p.name == MARK)
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


class Mark:
    """The ``.creating`` mark of a folder being made, with a POSIX record lock on it for as long as
    this process creates (record locks, unlike flock, are not inherited by the processes that
    exporting a model forks, and they go with the process that holds them)."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / MARK
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise UserError(
                f"the index {directory} is being created by another process; wait for it to finish"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps({"pid": os.getpid(), "started": time.time()}).encode(), 0)
        os.fsync(self.fd)

    def release(self, done: bool) -> None:
        """Let go of the lock; ``done``: the index is complete, so the mark goes first."""
        if self.fd is None:
            return
        if done:
            self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


def mark(directory: Path) -> Mark:
    m = Mark(directory)
    crash_point("create_started")
    return m


def being_created(directory: Path) -> int | None:
    """The pid of another live process creating an index in ``directory`` (it holds the mark's
    lock), else None. Not for the creating process itself: closing a descriptor of the mark would
    drop its own record lock."""
    path = Path(directory) / MARK
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            return int(json.loads(os.pread(fd, 256, 0) or b"{}").get("pid") or 0) or -1
        except ValueError:
            return -1
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def quantize_in_place(
    model_dir: Path, images: Sequence[str], progress: Callable[[int, int], None] | None = None
) -> dict:
    """Replace the FP32 export in ``model_dir`` by its NNCF INT8 version, calibrated on ``images``.
    The folder keeps the FP32 ``model.onnx`` (ONNX Runtime and TensorRT read it); OpenVINO reads the
    INT8 IR. Atomic as a whole: the old folder is swapped out only once the new one is complete."""
    from retrieval.compress.quantize import quantize_ir  # lazy: keeps the command line's start light

    if not images:
        raise UserError("no usable photos to calibrate the INT8 model on: index with --precision fp32")
    model_dir = Path(model_dir)
    tmp = Path(tempfile.mkdtemp(prefix=".int8-", dir=model_dir.parent))
    try:
        quantize_ir(model_dir, tmp, list(images), subset_size=len(images), progress=progress)
        sidecar = json.loads((tmp / SIDECAR).read_text())
        if (model_dir / ONNX_FILE).exists():
            shutil.copy2(model_dir / ONNX_FILE, tmp / ONNX_FILE)
            sidecar["files"]["onnx"] = ONNX_FILE
            sidecar["onnx_precision"] = "fp32"
        sidecar["quantization"]["source"] = "the FP32 export of this model"
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2))
        crash_point("model_quantized")
        replace_dir(tmp, model_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sidecar["quantization"]
