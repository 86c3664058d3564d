"""Small labelled clips made from real photos: camera pans and zooms over a still photo.

Classes (each photo can give one clip of every class, so classes differ only by the motion):
``pan-right`` (a square window slides left -> right across the photo), ``pan-left`` (right -> left,
the same frames in reverse order), ``zoom-in`` (the window shrinks towards the centre, from the
whole short side to ``zoom`` of it) and ``zoom-out`` (the reverse). Written as folders of JPEG frames
or as video files (PyAV: H.264 .mp4, or MPEG-4 Part 2 in .avi).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MOTIONS = ("pan-left", "pan-right", "zoom-in", "zoom-out")


def motion_frames(
    im,
    motion: str,
    frames: int = 16,
    size: int = 112,
    window: float = 0.6,
    zoom: float = 0.45,
    source: int | None = None,
):
    """``frames`` uint8 arrays [size, size, 3] of ``motion`` over the PIL image ``im``. ``source``
    first resizes the photo to that short side: a camera of limited resolution, so a digital zoom-in
    gets softer as it goes (None: the photo as it is)."""
    from PIL import Image

    im = im.convert("RGB")
    if source:
        k = source / min(im.size)
        im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.LANCZOS)
    w, h = im.size
    short = min(w, h)
    out = []
    for i in range(frames):
        t = i / max(1, frames - 1)
        if motion in ("pan-left", "pan-right"):
            side = window * short
            tx = t if motion == "pan-right" else 1.0 - t
            left, top = (w - side) * tx, (h - side) / 2
        elif motion in ("zoom-in", "zoom-out"):
            tz = t if motion == "zoom-in" else 1.0 - t
            side = short * (1.0 - (1.0 - zoom) * tz)
            left, top = (w - side) / 2, (h - side) / 2
        else:
            raise ValueError(f"unknown motion {motion!r}; choose one of {', '.join(MOTIONS)}")
        box = (left, top, left + side, top + side)
        out.append(
            np.asarray(im.resize((size, size), Image.BILINEAR, box=box, reducing_gap=2.0), dtype=np.uint8)
        )
    return out


def write_frames(arrays, folder: Path, quality: int = 92) -> Path:
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(folder / f"frame{i + 1}.jpg", quality=quality)
    return folder


def write_video(arrays, path: Path, fps: int = 8) -> Path:
    """H.264 for .mp4/.mkv/.mov, MPEG-4 Part 2 otherwise (yuv420p, so even sizes)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if path.suffix.lower() in (".mp4", ".mkv", ".mov") else "mpeg4"
    h, w = arrays[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "veryfast"}
        else:
            stream.bit_rate = 2_000_000
        for a in arrays:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def make_motion_dataset(
    photos,
    root,
    motions=MOTIONS,
    frames: int = 16,
    size: int = 112,
    video: str | None = None,
    window: float = 0.6,
    zoom: float = 0.45,
    source: int | None = None,
) -> dict:
    """One clip per (photo, motion) under ``root/<motion>/<photo stem>`` (a frame folder, or a
    ``.<video>`` file such as ``video="mp4"``). Returns {motion: [clip paths]}."""
    from PIL import Image

    root = Path(root)
    made: dict = {m: [] for m in motions}
    for p in photos:
        with Image.open(p) as im:
            im = im.convert("RGB")
            for m in motions:
                arrays = motion_frames(im, m, frames, size, window, zoom, source)
                stem = root / m / Path(p).stem
                made[m].append(
                    write_video(arrays, stem.with_suffix("." + video))
                    if video
                    else write_frames(arrays, stem)
                )
    return made
