"""Bringing an index in line with its folders: scan (``scan``), plan (``planning``), decode
(``decode``), embed locally or on Ray (``embedding``, ``ray_embedding``), commit (``commit``), run it
all (``updater``) or keep watching (``watch``); the INT8 calibration photos (``calibration``)."""

from .calibration import CALIBRATION_IMAGES, calibration_images
from .decode import Decoded
from .ray_embedding import RayOptions
from .updater import default_workers, forget, update
from .watch import DEFAULT_INTERVAL, watch

__all__ = [
    "CALIBRATION_IMAGES",
    "calibration_images",
    "Decoded",
    "RayOptions",
    "default_workers",
    "forget",
    "update",
    "DEFAULT_INTERVAL",
    "watch",
]
