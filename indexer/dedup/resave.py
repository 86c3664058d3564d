"""Is one file a re-save of the other at a lower JPEG quality (the same pixels, coarser blocks)?

For a pair of the same orientation where one file is a JPEG at least ``GAP`` quality levels below
the other (a file in another format counts as ``LOSSLESS``), of the same size or smaller with the
same aspect: the other file's own pixels (made that size) are saved with that JPEG's quantization
tables and chroma subsampling, and the two are
compared block by block at the files' own resolution. A re-save reproduces the copy to a few grey
levels in almost every block (``changed``: the share of 16 px blocks whose mean difference exceeds
``BLOCK_LEVELS``); another capture - a re-take from a tripod, leaves moved by the wind, toys moved
by a few pixels - differs in a fifth of its blocks or more, at any quality.

The pair's quality is evidence by itself (``rule.LOW_QUALITY``): the copy tests compare fine
detail, and a file re-saved at quality 50 or below has lost the detail that tells two captures apart.

More: docs/design-notes.md (``indexer.dedup.resave``)."""

from __future__ import annotations

import io

import numpy as np

from .quality import jpeg_quality

GAP = 10  # the copy is at least this many JPEG quality levels below the other file
LOSSLESS = 100  # the quality a PNG, TIFF or WebP file counts as
BLOCK = 16  # px at the files' own resolution
BLOCK_LEVELS = 8.0  # a block changed: mean absolute grey difference above this


def _header(path: str):
    """(PIL image opened lazily, its estimated JPEG quality or LOSSLESS, its EXIF orientation),
    or None when Pillow cannot open it."""
    from PIL import Image

    try:
        im = Image.open(path)
    except Exception:  # noqa: BLE001 - no re-save evidence; the verification reports the file
        return None
    try:
        quality = jpeg_quality(getattr(im, "quantization", None)) if im.format == "JPEG" else LOSSLESS
        return im, quality or LOSSLESS, int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001
        im.close()
        return None


def measure(path_a: str, path_b: str) -> tuple[int, float] | None:
    """(the lower file's JPEG quality, ``changed``) when one file is a JPEG at least ``GAP`` quality
    levels below the other; ``changed`` is 1.0 when the two differ in size or orientation (a re-save
    keeps both). None when neither is (or a file cannot be read)."""
    a, b = _header(path_a), _header(path_b)
    try:
        if a is None or b is None:
            return None
        (source, qs, os_), (copy, qc, oc) = (a, b) if a[1] >= b[1] else (b, a)
        if copy.format != "JPEG" or qc > qs - GAP:
            return None
        if os_ != oc or not getattr(copy, "quantization", None) or not _resized(source.size, copy.size):
            return qc, 1.0
        return qc, changed(source, copy)
    except Exception:  # noqa: BLE001 - a file Pillow cannot decode or re-save: no re-save proven
        return (qc, 1.0) if "qc" in locals() else None
    finally:
        for h in (a, b):
            if h is not None:
                h[0].close()


def _resized(source: tuple[int, int], copy: tuple[int, int]) -> bool:
    """Is ``copy`` (width, height) ``source`` at the same size, or made smaller keeping its aspect
    (each side the other's times one factor, rounded)?"""
    if copy == source:
        return True
    if copy[0] > source[0] or copy[1] > source[1]:
        return False
    # one factor that gives each side within a pixel (rounded or cut off)
    low = max((copy[0] - 1) / source[0], (copy[1] - 1) / source[1])
    high = min((copy[0] + 1) / source[0], (copy[1] + 1) / source[1])
    return low <= high


def resaved_like(source, copy) -> bytes:
    """``source``'s pixels (a PIL image; made ``copy``'s size if smaller) saved as JPEG with
    ``copy``'s tables and subsampling."""
    from PIL import Image, JpegImagePlugin

    mode = "L" if copy.mode == "L" else "RGB"
    buf = io.BytesIO()
    pixels = source.convert(mode)
    if pixels.size != copy.size:
        pixels = pixels.resize(copy.size, Image.BICUBIC, reducing_gap=None)
    pixels.save(
        buf,
        "JPEG",
        qtables=copy.quantization,
        subsampling=JpegImagePlugin.get_sampling(copy) if mode == "RGB" else -1,
    )
    return buf.getvalue()


def changed(source, copy) -> float:
    """The share of ``BLOCK`` px blocks whose mean grey difference between ``copy`` and ``source``
    re-saved like it exceeds ``BLOCK_LEVELS`` (both PIL images of one size, as stored: the JPEG
    blocks of the two line up)."""
    from PIL import Image

    x = np.asarray(Image.open(io.BytesIO(resaved_like(source, copy))).convert("L"), np.float32)
    y = np.asarray(copy.convert("L"), np.float32)
    h, w = (x.shape[0] // BLOCK) * BLOCK, (x.shape[1] // BLOCK) * BLOCK
    if h == 0 or w == 0:
        return 1.0
    d = np.abs(x[:h, :w] - y[:h, :w]).reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(1, 3))
    return float((d > BLOCK_LEVELS).mean())
