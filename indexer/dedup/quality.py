"""Which file of a group is the original: what a file says about itself, read cheaply.

For the files that are candidates for some group only (not the whole collection): colour or grey
(a grey copy is never kept over its colour original), the JPEG quality estimated from the
quantisation tables (a re-compressed copy has coarser tables), and whether the camera's metadata
(EXIF date or camera model) survived (copies made by apps and web pages usually lose it). Pixels,
size and modification time come from the index. ``keeper_reason`` says in words why the keeper won.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

# the IJG (libjpeg) base luminance table, in natural order: quality Q scales it by 5000/Q (Q < 50)
# or 200 - 2Q (Q >= 50) percent, which is how almost every encoder (PIL, cameras, phones) writes it
_IJG_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
LOSSLESS = 100  # what a PNG, TIFF... counts as
_EXIF_DATE, _EXIF_MAKE, _EXIF_MODEL, _EXIF_IFD, _EXIF_DATE_ORIGINAL = 0x0132, 0x010F, 0x0110, 0x8769, 0x9003
GREY_SPREAD = 3.0  # mean |R-G| + |G-B| (0-255 levels) under which a picture counts as greyscale


@dataclass(frozen=True)
class FileQuality:
    colour: bool = True
    jpeg_quality: int = LOSSLESS  # estimated; LOSSLESS for formats without lossy compression
    metadata: bool = False        # EXIF capture date or camera make/model present
    readable: bool = True


def jpeg_quality(quantization: dict | None) -> int | None:
    """Estimated IJG quality (1-100) from PIL's ``im.quantization`` (table 0, luminance)."""
    if not quantization or 0 not in quantization:
        return None
    table = np.asarray(list(quantization[0]), dtype=np.float64)[:64]
    if len(table) != 64:
        return None
    # Pillow lists the table in natural (row-major) order, like _IJG_LUMA; entries clip at 255
    # (quality < ~10 reads a little high), which keeps the order of qualities
    ratio = float(np.mean(table / _IJG_LUMA)) * 100
    q = (200 - ratio) / 2 if ratio <= 100 else 5000 / ratio
    return int(min(100, max(1, round(q))))


def read_quality(path: str) -> FileQuality:
    """The file's colour, estimated JPEG quality and metadata (a small decode; header for the rest)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            q = jpeg_quality(getattr(im, "quantization", None)) if im.format == "JPEG" else None
            exif = im.getexif()
            meta = bool(exif.get(_EXIF_MAKE) or exif.get(_EXIF_MODEL) or exif.get(_EXIF_DATE)
                        or exif.get_ifd(_EXIF_IFD).get(_EXIF_DATE_ORIGINAL))
            if im.mode in ("1", "L", "LA", "I", "I;16", "F"):
                colour = False
            else:
                im.draft("RGB", (64, 64))
                small = im.convert("RGB")
                small.thumbnail((64, 64))
                a = np.asarray(small, dtype=np.float32)
                spread = float(np.abs(a[..., 0] - a[..., 1]).mean() + np.abs(a[..., 1] - a[..., 2]).mean())
                colour = spread >= GREY_SPREAD
    except Exception:  # noqa: BLE001 - unreadable now: ranks last among its equals, apply will refuse it anyway
        return FileQuality(readable=False)
    return FileQuality(colour=colour, jpeg_quality=LOSSLESS if q is None else q, metadata=meta)


def read_qualities(paths: list[str], workers: int = 4) -> tuple[list[FileQuality], float]:
    """read_quality for each path (threads), and the seconds it took."""
    t0 = time.perf_counter()
    if not paths:
        return [], 0.0
    with ThreadPoolExecutor(workers) as pool:
        out = list(pool.map(read_quality, paths))
    return out, time.perf_counter() - t0


def keeper_reason(keeper, keeper_q: FileQuality, others: list, others_q: list[FileQuality], policy: str) -> str:
    """Why ``keeper`` (a report Member) is kept rather than ``others``: the first criterion of the
    keeper order on which it beats each of them, in words."""
    reasons = []
    for m, q in zip(others, others_q):
        reasons.append(_why(keeper, keeper_q, m, q, policy))
    seen = list(dict.fromkeys(r for r in reasons if r))
    return "; ".join(seen) if seen else "first indexed (the files are alike)"


def _why(k, kq: FileQuality, m, mq: FileQuality, policy: str) -> str:
    steps = {
        "colour": (kq.colour and not mq.colour, "colour (the copy is greyscale)"),
        "pixels": (k.pixels > m.pixels, f"more pixels ({k.width}x{k.height} against {m.width}x{m.height})"),
        "quality": (kq.jpeg_quality > mq.jpeg_quality + 2,
                    f"less compression (JPEG quality ~{kq.jpeg_quality} against ~{mq.jpeg_quality})"),
        "metadata": (kq.metadata and not mq.metadata, "camera metadata present (EXIF date/camera)"),
        "size": (k.size > m.size, "larger file"),
        "oldest": (k.mtime_ns < m.mtime_ns, "older file"),
        "newest": (k.mtime_ns > m.mtime_ns, "newer file"),
    }
    order = {"resolution": ("colour", "pixels", "quality", "metadata", "size", "oldest"),
             "size": ("size", "pixels", "oldest"), "oldest": ("oldest", "pixels", "size"),
             "newest": ("newest", "pixels", "size")}.get(policy, ())
    for step in order:
        won, text = steps[step]
        if won:
            return text
        lost = {"colour": mq.colour and not kq.colour, "pixels": m.pixels > k.pixels,
                "quality": mq.jpeg_quality > kq.jpeg_quality + 2, "metadata": mq.metadata and not kq.metadata,
                "size": m.size > k.size, "oldest": m.mtime_ns < k.mtime_ns, "newest": m.mtime_ns > k.mtime_ns}[step]
        if lost:
            return ""  # the keeper lost on this step: it was preferred for another reason (e.g. --prefer)
    return ""
