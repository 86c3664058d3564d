"""The photos a new index's INT8 model is calibrated on: a spread of the usable images under its folders."""
from __future__ import annotations

import os
from typing import Sequence

from retrieval.preprocess import ImageError, load_and_prepare

from .scan import classify, walk

CALIBRATION_IMAGES = 300  # NNCF's default subset size
CALIBRATION_SCAN_LIMIT = 3000  # files looked at to pick them (spread over the folders), not the whole tree


def calibration_images(folders: Sequence, n: int = CALIBRATION_IMAGES, scan_limit: int = CALIBRATION_SCAN_LIMIT,
                       size: int = 224) -> list[str]:
    """Up to ``n`` usable images from ``folders``, spread evenly over the first ``scan_limit``
    images found (sorted walk), each checked to decode."""
    found: list[str] = []
    for root in folders:
        for entry in walk(os.path.realpath(root)):
            if len(found) >= scan_limit:
                break
            e = classify(entry) if entry.problem is None else None
            if e is not None and e.problem is None and e.kind == "image":
                found.append(e.path)
    step = max(1, len(found) / max(1, n))
    picked = []
    for i in range(min(n, len(found))):
        path = found[int(i * step)]
        try:
            load_and_prepare(path, size)
        except (ImageError, OSError):
            continue  # a truncated or odd file: not for calibration (the update reports it)
        picked.append(path)
    return picked
