"""Uploaded images: checked (bytes, pixels, format) and kept in memory; crops, previews, JPEG bytes."""

from __future__ import annotations

import io

from PIL import Image

from retrieval import ImageError, UserError, open_image

from .settings import UPLOAD_FORMATS, Settings, human_bytes


def read_upload(name: str, data: bytes, settings: Settings) -> Image.Image:
    """An uploaded file as a checked RGB image, or a UserError that says why not."""
    if len(data) > settings.max_upload_bytes:
        raise UserError(
            f"{name} is {human_bytes(len(data))}; uploads are limited to "
            f"{human_bytes(settings.max_upload_bytes)}"
        )
    try:
        im = open_image(bytes(data), max_pixels=settings.max_pixels)
    except ImageError as e:
        raise UserError(f"cannot use {name}: {e}") from None
    fmt = im.info.get("vgg_retrieval_format", "unknown")
    if fmt not in UPLOAD_FORMATS:
        raise UserError(
            f"cannot use {name}: {fmt} images are not accepted "
            f"(use JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF or JPEG XL)"
        )
    return im


def crop(im: Image.Image, box: tuple[float, float, float, float] | None) -> Image.Image:
    """``box`` = (left, top, right, bottom) as fractions of the width/height; None: the whole image."""
    if box is None:
        return im
    left, top, right, bottom = (min(1.0, max(0.0, float(v))) for v in box)
    w, h = im.size
    x0, y0 = int(round(left * w)), int(round(top * h))
    x1, y1 = int(round(right * w)), int(round(bottom * h))
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise UserError(
            f"the crop box is empty or too small ({max(0, x1 - x0)}x{max(0, y1 - y0)} pixels): "
            f"make right > left and bottom > top"
        )
    return im.crop((x0, y0, x1, y1))


def preview(im: Image.Image, px: int = 320) -> Image.Image:
    im = im.copy()
    im.thumbnail((px, px))
    return im


def jpeg_bytes(im: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()
