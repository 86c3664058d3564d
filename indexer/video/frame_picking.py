"""Which frames of a video the index keeps: the picking policy of one pass over its decoded frames.

More: docs/design-notes.md (``indexer.video.frame_picking``)."""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image

from retrieval.preprocess import Prepared, prepare


@dataclass
class VideoOptions:
    interval_s: float = 10.0
    scene: float = 0.15
    min_gap_s: float = 2.0
    max_frames: int = 200

    @classmethod
    def from_env(cls) -> "VideoOptions":
        def num(name, default, kind=float):
            raw = os.environ.get(name)
            if raw is None or not raw.strip():
                return default
            try:
                value = kind(raw)
            except ValueError:
                return default
            return value if value >= 0 else default

        o = cls(
            num("VGG_RETRIEVAL_VIDEO_INTERVAL", cls.interval_s),
            num("VGG_RETRIEVAL_VIDEO_SCENE", cls.scene),
            num("VGG_RETRIEVAL_VIDEO_MIN_GAP", cls.min_gap_s),
            num("VGG_RETRIEVAL_VIDEO_MAX_FRAMES", cls.max_frames, int),
        )
        o.interval_s = o.interval_s or cls.interval_s
        o.max_frames = max(1, o.max_frames)
        return o


THUMB = 32
CUT_GAP_S = 0.5  # no two scene cuts closer than this (flashes, strobes)
SCENE_FPS = 5  # frames looked at per second for scene changes (a cut is found within 0.2 s)


@dataclass
class SampledFrame:
    time_s: float
    prepared: Prepared
    reason: str  # "first", "scene", "interval"
    score: float = 0.0  # thumbnail difference from the previous pick


def rgb(frame) -> Image.Image:
    """The frame as an RGB picture, turned upright as its display matrix asks (phone videos)."""
    im = frame.to_image()
    try:
        rot = int(round(frame.rotation or 0)) % 360
    except Exception:
        rot = 0
    if rot == 90:
        im = im.transpose(Image.Transpose.ROTATE_90)
    elif rot == 180:
        im = im.transpose(Image.Transpose.ROTATE_180)
    elif rot == 270:
        im = im.transpose(Image.Transpose.ROTATE_270)
    return im


def thumbnail(frame) -> np.ndarray:
    """A THUMB x THUMB greyscale float thumbnail in 0..1, for change detection: block means of the
    luma plane read in place (no conversion), else a converted copy."""
    fmt = frame.format
    name = fmt.name or ""
    if (
        name.startswith(("yuv", "yuvj", "nv12", "nv21", "gray"))
        and fmt.components
        and fmt.components[0].bits == 8
    ):
        plane = frame.planes[0]
        h, w = frame.height, frame.width
        if h >= THUMB and w >= THUMB:
            a = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:h, :w]
            a = a[:: max(1, h // (4 * THUMB)), :: max(1, w // (4 * THUMB))]  # at most ~4x4 samples per cell
            hh, ww = a.shape[0] // THUMB * THUMB, a.shape[1] // THUMB * THUMB
            a = (
                a[:hh, :ww]
                .reshape(THUMB, hh // THUMB, THUMB, ww // THUMB)
                .mean(axis=(1, 3), dtype=np.float32)
            )
            return a / 255.0
    a = frame.reformat(width=THUMB, height=THUMB, format="gray", interpolation="AREA").to_ndarray()
    return a[:THUMB, :THUMB].astype(np.float32) / 255.0


class FramePicker:
    """The picking state of one pass over a video's frames (see the module docstring): ``offer``
    each decoded frame with its time, in order; ``picked`` holds the frames kept."""

    def __init__(self, options: VideoOptions, size: int, interval: float):
        self.o, self.size, self.interval = options, size, interval
        self.picked: list[SampledFrame] = []
        self.scene_heap: list[tuple[float, int, SampledFrame]] = []  # (score, seq, pick) of scene picks
        self.seq = 0
        self.last_thumb = self.prev_thumb = None  # thumbnails of the last pick and of the last look
        self.last_t = self.last_look = -math.inf

    def offer(self, frame, t: float) -> None:
        o = self.o
        since = t - self.last_t + 1e-6
        look = o.scene > 0 and t - self.last_look >= 1 / SCENE_FPS - 1e-6
        if not look and self.picked and since < self.interval:
            return  # nothing to decide on this frame
        th = thumbnail(frame) if look or not self.picked else None
        if th is not None:
            self.last_look = t
        if not self.picked:
            self._add(frame, t, "first", 1.0)
            self.prev_thumb = self.last_thumb = th
            self.last_t = t
            return
        cut = drift = 0.0
        if th is not None:
            cut = float(np.abs(th - self.prev_thumb).mean())  # from the previous look: a cut
            drift = float(np.abs(th - self.last_thumb).mean())  # from the last pick: new content
            self.prev_thumb = th
        elif since < self.interval:
            return
        if o.scene > 0 and (
            (cut >= o.scene and since >= CUT_GAP_S) or (drift >= 2 * o.scene and since >= o.min_gap_s)
        ):
            self._add(frame, t, "scene", max(cut, drift / 2))
        elif since >= self.interval:
            self._add(frame, t, "interval", drift)
        else:
            return
        if th is None and o.scene > 0:
            th = thumbnail(frame)
        self.last_thumb, self.last_t = th, t

    def _add(self, frame, t: float, reason: str, score: float) -> None:
        sf = SampledFrame(round(t, 3), prepare(rgb(frame), self.size), reason, score)
        self.picked.append(sf)
        if reason == "scene":
            heapq.heappush(self.scene_heap, (score, self.seq, sf))
        self.seq += 1
        if len(self.picked) > self.o.max_frames and _shrink(self.picked, self.scene_heap):
            self.interval *= 2  # interval picks were thinned to every other one: keep that pace


def _shrink(picked: list[SampledFrame], scene_heap: list) -> bool:
    """Drop one pick to stay within the cap: the weakest scene change (False), else every other
    interval pick (True)."""
    while scene_heap:
        _, _, weakest = heapq.heappop(scene_heap)
        if any(f is weakest for f in picked):
            picked[:] = [f for f in picked if f is not weakest]
            return False
    picked[:] = picked[:1] + [f for i, f in enumerate(picked[1:]) if i % 2 == 1]
    return True
