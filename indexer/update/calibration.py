"""What a new index's INT8 model is calibrated on: a spread of what the index will embed under its
folders: photos of every readable format, and video keyframes when there are too few photos."""

from __future__ import annotations

import os
from typing import Sequence

from PIL import Image

from indexer.video.keyframes import VideoError, sample_video
from retrieval.preprocess import ImageError, load_and_prepare

from .scan import classify, walk

# calibration photos of a new INT8 index: 128 kept paris5 and holidays150 mAP within 0.001 of 300 and the
# worst descriptor cosine to FP32 at 0.961 (300: 0.964), for a quarter of the time (benchmarks/calibration_size.py)
CALIBRATION_IMAGES = 128
# ...but a new index of few photos calibrates on one in CALIBRATION_SHARE of them (at least
# CALIBRATION_FLOOR): calibration runs the FP32 model once per photo, so on a small folder it would cost
# more than INT8 saves. 16 photos kept paris5 and holidays150 mAP within 0.003 of 300 (calibration_size.py)
CALIBRATION_SHARE = 8
CALIBRATION_FLOOR = 16
CALIBRATION_SCAN_LIMIT = 3000  # files looked at to pick them (spread over the folders), not the whole tree


def _found(folders: Sequence, scan_limit: int) -> tuple[list[str], list[str]]:
    """(photos, videos) under ``folders``: the first ``scan_limit`` usable files of a sorted walk."""
    photos: list[str] = []
    videos: list[str] = []
    for root in folders:
        for entry in walk(os.path.realpath(root)):
            if len(photos) + len(videos) >= scan_limit:
                break
            e = classify(entry) if entry.problem is None else None
            if e is not None and e.problem is None:
                (photos if e.kind == "image" else videos).append(e.path)
    return photos, videos


def _spread(items: list, n: int) -> list:
    step = max(1, len(items) / max(1, n))
    return [items[int(i * step)] for i in range(min(n, len(items)))]


def calibration_count(found: int) -> int:
    """How many pictures a new index calibrates on when ``found`` are under its folders."""
    return min(CALIBRATION_IMAGES, max(CALIBRATION_FLOOR, found // CALIBRATION_SHARE))


def calibration_images(
    folders: Sequence, n: int | None = None, scan_limit: int = CALIBRATION_SCAN_LIMIT, size: int = 224
) -> list:
    """Up to ``n`` pictures from ``folders`` (None: ``calibration_count`` of the files found):
    photo paths spread evenly over the first ``scan_limit`` files found (sorted walk), each checked
    to decode; when they are fewer than ``n``, the keyframes of the videos found (as PIL images) fill
    up the rest."""
    photos, videos = _found(folders, scan_limit)
    if n is None:
        n = calibration_count(len(photos) + len(videos))
    picked: list = []
    for path in _spread(photos, n):
        try:
            load_and_prepare(path, size)
        except (ImageError, OSError):
            continue  # a truncated or odd file: not for calibration (the update reports it)
        picked.append(path)
    for path in _spread(videos, n - len(picked)) if len(picked) < n else []:
        try:
            frames = sample_video(path, size).frames
        except (VideoError, OSError):
            continue
        for f in frames[: max(1, n - len(picked))]:
            h, w = f.prepared.valid
            picked.append(Image.fromarray(f.prepared.array[:h, :w]))
        if len(picked) >= n:
            break
    return picked[:n]
