"""Is one file a re-save of the other at a lower JPEG quality (the same pixels, coarser blocks)?

For a pair of the same orientation where one file is a JPEG at least ``GAP`` quality levels below
the other (a file in another format counts as ``LOSSLESS``), of the same size or smaller with the
same aspect: the other file's own pixels (made that size) are saved with that JPEG's quantization
tables and chroma subsampling, and the two are compared block by block at the lower file's own
resolution. A re-save reproduces the copy to a few grey
levels in almost every block (``changed``: the share of 16 px blocks whose mean difference exceeds
``BLOCK_LEVELS``); another capture - a re-take from a tripod, leaves moved by the wind, toys moved
by a few pixels - differs in a fifth of its blocks or more, at any quality.

The pair's quality is evidence by itself (``rule.LOW_QUALITY``): the copy tests compare fine
detail, and a file re-saved at quality 50 or below has lost the detail that tells two captures apart.

More: docs/design-notes.md (``indexer.dedup.resave``)."""

from __future__ import annotations

import io
import os
from functools import lru_cache

import numpy as np

from .quality import jpeg_quality
from .rule import LOW_QUALITY

GAP = 10  # the copy is at least this many JPEG quality levels below the other file
LOSSLESS = 100  # the quality a PNG, TIFF or WebP file counts as
BLOCK = 16  # px at the files' own resolution
BLOCK_LEVELS = 8.0  # a block changed: mean absolute grey difference above this


@lru_cache(maxsize=1 << 16)
def _facts(path: str, stamp: tuple) -> tuple | None:
    """(format, estimated JPEG quality or LOSSLESS, (width, height), EXIF orientation) of the file
    as stored, read from its header once per ``stamp`` (size, mtime); None when Pillow cannot open it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            quality = jpeg_quality(getattr(im, "quantization", None)) if im.format == "JPEG" else None
            return im.format, quality or LOSSLESS, im.size, int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 - no re-save evidence; the verification reports the file
        return None


def facts(path: str) -> tuple | None:
    """``_facts`` of ``path`` as it is now (each pair of a photo asks again)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _facts(path, (st.st_size, st.st_mtime_ns))


def lower(path_a: str, path_b: str) -> tuple[str, str, int, bool] | None:
    """(the other file, the lower one, its JPEG quality, whether the two can be compared block by
    block: the same orientation, the lower one the other's size or smaller with its aspect) when
    one file is a JPEG at least ``GAP`` quality levels below the other; None when neither is (or a
    file cannot be read)."""
    fa, fb = facts(path_a), facts(path_b)
    if fa is None or fb is None:
        return None
    (source, fs), (copy, fc) = (
        ((path_a, fa), (path_b, fb)) if fa[1] >= fb[1] else ((path_b, fb), (path_a, fa))
    )
    if fc[0] != "JPEG" or fc[1] > fs[1] - GAP:
        return None
    return source, copy, fc[1], fs[3] == fc[3] and _resized(fs[2], fc[2])


def only_resave(path_a: str, path_b: str) -> bool:
    """Is the pair one that only the re-save test can prove (one file a JPEG at ``rule.LOW_QUALITY``
    or below, ``GAP`` below the other, comparable block by block)? Such a heavy re-encode can break
    its descriptor, so ``rotated.rotated_pairs`` offers these pairs by layout too."""
    found = lower(path_a, path_b)
    return found is not None and found[2] <= LOW_QUALITY and found[3]


def measure(path_a: str, path_b: str) -> tuple[int, float] | None:
    """(the lower file's JPEG quality, ``changed``; 1.0 when the two cannot be compared block by
    block) for a pair that ``lower`` finds; None otherwise. (``verify.Verifier.compare`` calls the
    two parts itself: it skips the block comparison where the copy tests already decide.)"""
    found = lower(path_a, path_b)
    if found is None:
        return None
    source, copy, quality, comparable = found
    return quality, changed_files(source, copy) if comparable else 1.0


def changed_files(source: str, copy: str) -> float:
    """``changed`` of two files (1.0 when Pillow cannot decode or re-save one)."""
    from PIL import Image

    try:
        with Image.open(source) as s, Image.open(copy) as c:
            return changed(s, c)
    except Exception:  # noqa: BLE001 - no re-save proven
        return 1.0


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
