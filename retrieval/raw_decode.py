"""Camera RAW and DNG files with ``rawpy`` (LibRaw): the embedded preview when it is big enough for the
model, else a half-size demosaic; either way upright (the camera's orientation applied)."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError

# LibRaw's ``flip`` (sizes.flip) as Pillow transposes: 3 = 180 degrees, 5 = 90 anticlockwise,
# 6 = 90 clockwise
_FLIPS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def _preview(raw, rawpy) -> Image.Image | None:
    """The embedded preview (JPEG or bitmap) as an upright RGB image, or None when there is none."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError, rawpy.LibRawError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            im = Image.open(io.BytesIO(thumb.data))
            im.load()
        except Exception:  # noqa: BLE001 - a damaged preview: demosaic instead
            return None
        if im.getexif().get(0x0112, 1) != 1:
            return (ImageOps.exif_transpose(im) or im).convert("RGB")
    else:
        im = Image.fromarray(np.ascontiguousarray(thumb.data[..., :3]).astype(np.uint8))
    im = im.convert("RGB")
    flip = _FLIPS.get(int(raw.sizes.flip))
    return im.transpose(flip) if flip is not None else im


def _reason(e: BaseException) -> str:
    """LibRaw's message (rawpy gives it as bytes) on one line."""
    arg = e.args[0] if e.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return (text.strip().splitlines() or [type(e).__name__])[0][:150]


def _full_size(raw) -> tuple[int, int]:
    s = raw.sizes
    w, h = int(s.width), int(s.height)
    return (h, w) if int(s.flip) in (5, 6) else (w, h)


def open_raw(source, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """A RAW/DNG file (path or file object) as an upright RGB image. With ``draft_size``, the
    embedded preview is taken when its longer side is at least that; else (and without
    ``draft_size``) the sensor data is demosaiced at half size, with the camera's white balance."""
    try:
        import rawpy
    except ImportError:
        raise ImageError(
            "a camera RAW photo, and the package that reads it is not installed (pip install rawpy)"
        ) from None
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    try:
        raw = rawpy.imread(source)
    except rawpy.LibRawFileUnsupportedError:
        raise ImageError("not a RAW file LibRaw can read") from None
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise ImageError(f"corrupt or truncated RAW file ({_reason(e)})") from None
    with raw:
        w, h = _full_size(raw)
        if w <= 0 or h <= 0:
            raise ImageError(f"invalid image size {w}x{h}")
        if w * h > max_pixels:
            raise ImageError(f"image too large: {w}x{h} = {w * h:,} pixels (limit {max_pixels:,})")
        try:
            raw.unpack()  # the sensor data read whole: a truncated file fails here, even with a preview
        except (rawpy.LibRawError, MemoryError, ValueError) as e:
            raise ImageError(f"corrupt or truncated RAW file ({_reason(e)})") from None
        im = _preview(raw, rawpy) if draft_size else None
        if im is None or max(im.size) < draft_size:
            try:
                rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
            except (rawpy.LibRawError, MemoryError, ValueError) as e:
                raise ImageError(f"corrupt or truncated RAW file ({_reason(e)})") from None
            im = Image.fromarray(rgb)
            how = "demosaic"
        else:
            how = "preview"
    im.info["vgg_retrieval_format"] = "RAW"
    im.info["vgg_retrieval_full_size"] = (w, h)
    im.info["vgg_retrieval_raw"] = how
    return im
