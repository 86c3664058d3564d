"""Work done per file in the decode processes: read once, hash, decode, resize and pad."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass

import numpy as np

from indexer.faults import DECODE_POINT, crash_point
from indexer.reports import Capture
from indexer.vectors import file_sha256
from indexer.video.keyframes import VideoError, frame_path, sample_video, sniff_video, videos_enabled
from retrieval.formats import sniff_extra
from retrieval.preprocess import DEFAULT_MAX_PIXELS, ImageError, load_and_prepare

from .capture import read_capture


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
    source: str | None = None  # video frames: the video file (``path`` is then VIDEO#t=SECONDS)
    time_s: float | None = None  # video frames: the frame's time in the video, seconds
    more: bool = False  # more items of the same file follow (a video's frames commit together)
    capture: Capture | None = None  # photos: their capture metadata (EXIF), read with the pixels


class DecodeJournal:
    """The files this process is decoding, named in ``<index folder>/.decoding`` while they are
    decoded (NUL-separated; written, not synced: a hint, not a record), for decoding in the indexing
    process itself. A run that dies inside a decoder (no process pool to catch the crash there)
    leaves the names behind; the next run decodes each of those files in a process of its own
    (``indexer.update.embedding``), so a file that crashes the decoder is reported instead of
    stopping every run at the same place. A run killed for another reason names files that are then
    just decoded once more, in a subprocess. Safe to use from several decoding threads."""

    NAME = ".decoding"
    SEP = "\0"  # a path never holds NUL

    def __init__(self, directory):
        self.path = os.path.join(os.fspath(directory), self.NAME)
        self._flight: list[str] = []
        self._lock = threading.Lock()

    def suspects(self) -> set[str]:
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                return {p for p in f.read().split(self.SEP) if p}
        except OSError:
            return set()

    def mark(self, path: str) -> None:
        with self._lock:
            self._flight.append(path)
            self._write()

    def done(self, path: str) -> None:
        with self._lock:
            self._flight.remove(path)
            self._write()

    def _write(self) -> None:  # whole or not at all: a thread's crash never finds it half written
        with open(self.path + ".tmp", "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(self.SEP.join(self._flight))
        os.replace(self.path + ".tmp", self.path)

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def decode_items(job: tuple[str, str, int, int]) -> list[Decoded]:
    """Everything one scanned file yields for the index: one image (or one problem) per file today;
    a video yields its sampled frames (see ``indexer.video.keyframes``), or one problem."""
    if _is_video(job[0]):
        return decode_video(job)
    return [decode_file(job)]


def _is_video(path: str) -> bool:

    try:
        with open(path, "rb") as f:
            head = f.read(64)
        return sniff_extra(head) is None and sniff_video(head) is not None and videos_enabled()
    except OSError:
        return False  # decode_file reports why


def decode_video(job: tuple[str, str, int, int]) -> list[Decoded]:
    """The sampled frames of a video, one item each (same size/padding as a photo), or one problem."""

    path, root, input_size, max_pixels = job
    bad = Decoded(path, root)
    try:
        before = os.stat(path)
        sha256 = file_sha256(path)
        sample = sample_video(path, input_size, max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
        after = os.stat(path)
    except PermissionError:
        bad.problem = "permission denied"
        return [bad]
    except FileNotFoundError:
        bad.problem = "file disappeared while indexing"
        return [bad]
    except VideoError as e:
        bad.problem = str(e)
    except OSError as e:
        bad.problem = f"cannot read: {e.strerror or e}"
        return [bad]
    except Exception as e:  # a decoder bug must not stop the run; report it like a bad file
        bad.problem = f"cannot decode video: {type(e).__name__}: {str(e)[:200]}"
    if bad.problem is None and (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        bad.problem = "file changed while being read (it will be retried next run)"
        return [bad]  # size -1: never taken for "unchanged"
    if bad.problem is not None:
        bad.size, bad.mtime_ns = before.st_size, before.st_mtime_ns  # same bad file next run: skipped
        return [bad]
    out = []
    for n, f in enumerate(sample.frames):
        p = f.prepared
        out.append(
            Decoded(
                frame_path(path, f.time_s),
                root,
                after.st_size,
                after.st_mtime_ns,
                sha256,
                p.width,
                p.height,
                sample.format,
                p.array,
                p.valid,
                source=path,
                time_s=f.time_s,
                more=n < len(sample.frames) - 1,
            )
        )
    return out


def decode_file(job: tuple[str, str, int, int]) -> Decoded:
    path, root, input_size, max_pixels = job
    crash_point(DECODE_POINT + os.path.basename(path))  # a decoder crash, for the tests
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
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(
        data
    ) != after.st_size:
        out.problem = "file changed while being read (it will be retried next run)"
        return out  # size -1: never taken for "unchanged"
    out.size, out.mtime_ns = after.st_size, after.st_mtime_ns
    out.sha256 = hashlib.sha256(data).hexdigest()
    try:
        p = load_and_prepare(data, input_size, max_pixels=max_pixels or DEFAULT_MAX_PIXELS, name=path)
    except ImageError as e:
        out.problem = str(e)
        return out
    except Exception as e:  # a decoder bug must not stop the run; report it like a bad file
        out.problem = f"cannot decode: {type(e).__name__}: {str(e)[:200]}"
        return out
    out.width, out.height, out.format = p.width, p.height, p.format
    out.array, out.valid = p.array, p.valid
    out.capture = read_capture(data, path)
    return out
