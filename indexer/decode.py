"""Work done per file in the decode processes: read once, hash, decode, resize and pad."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from retrieval.preprocess import DEFAULT_MAX_PIXELS, ImageError, load_and_prepare


@dataclass
class Decoded:
    path: str
    root: str
    size: int = -1
    mtime_ns: int = -1
    sha256: str = ""
    width: int = 0
    height: int = 0
    format: str = ""
    array: np.ndarray | None = None
    valid: tuple[int, int] = (0, 0)
    problem: str | None = None


def decode_items(job: tuple[str, str, int, int]) -> list[Decoded]:
    """Everything one scanned file yields for the index: one image (or one problem) per file today;
    a container format (e.g. a video's keyframes) may yield several items."""
    return [decode_file(job)]


def decode_file(job: tuple[str, str, int, int]) -> Decoded:
    path, root, input_size, max_pixels = job
    out = Decoded(path, root)
    try:
        before = os.stat(path)
        with open(path, "rb") as f:
            data = f.read()
        after = os.stat(path)
    except PermissionError:  # size stays -1: retried on every run, since fixing it may not touch mtime
        out.problem = "permission denied"
        return out
    except FileNotFoundError:
        out.problem = "file disappeared while indexing"
        return out
    except OSError as e:
        out.problem = f"cannot read: {e.strerror or e}"
        return out
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
        out.problem = "file changed while being read (it will be retried next run)"
        return out  # size -1: never taken for "unchanged"
    out.size, out.mtime_ns = after.st_size, after.st_mtime_ns
    out.sha256 = hashlib.sha256(data).hexdigest()
    try:
        p = load_and_prepare(data, input_size, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    except ImageError as e:
        out.problem = str(e)
        return out
    except Exception as e:  # a decoder bug must not stop the run; report it like a bad file
        out.problem = f"cannot decode: {type(e).__name__}: {str(e)[:200]}"
        return out
    out.width, out.height, out.format = p.width, p.height, p.format
    out.array, out.valid = p.array, p.valid
    return out
