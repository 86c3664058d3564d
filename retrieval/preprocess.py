"""Image decoding and the input policy, shared by every engine (numpy + Pillow only, no torch).

``prepare(image, size)`` gives a ``size x size x 3`` uint8 array with the picture in the top-left
corner (longer side resized to ``size``, aspect ratio kept) and its valid ``(height, width)``. One fixed
shape for all images keeps OpenVINO/ONNX Runtime on a single compiled shape and lets images batch.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

# Pillow's own guard is ~179 MP with an error past twice that; ours is explicit and configurable.
DEFAULT_MAX_PIXELS = int(os.environ.get("VGG_RETRIEVAL_MAX_PIXELS", 100_000_000))


class ImageError(Exception):
    """An image that cannot be used; the message is the reason, short enough for one line."""


@dataclass
class Prepared:
    array: np.ndarray  # (size, size, 3) uint8, zero padded at the bottom/right
    valid: tuple[int, int]  # (height, width) of the picture inside ``array``
    width: int  # of the original image, after EXIF orientation
    height: int
    format: str


def target_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) with the longer side equal to ``size``, aspect ratio kept, each side at least 1."""
    scale = size / max(width, height)
    return max(1, min(size, round(width * scale))), max(1, min(size, round(height * scale)))


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") else max(float(a.max()), 1.0)
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a).convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV...


def open_image(source, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Open, check and fully decode an image (path, bytes or file object) to RGB.

    EXIF orientation is applied; animated/multi-page files give their first frame. With
    ``draft_size``, JPEGs are decoded at a reduced scale when the result stays at least that big.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty file")
        source = io.BytesIO(source)
    with warnings.catch_warnings():
        # Pillow's warnings (corrupt EXIF, its own 89 MP bomb warning) are not verdicts: our
        # max_pixels check below and the decode errors decide.
        warnings.simplefilter("ignore")
        try:
            im = Image.open(source)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"image too large (decompression bomb guard): {e}") from None
        except Image.UnidentifiedImageError:
            raise ImageError("not an image Pillow can read") from None
        except (OSError, ValueError, SyntaxError) as e:
            raise ImageError(f"cannot open image: {e}") from None
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageError(f"invalid image size {w}x{h}")
        if w * h > max_pixels:
            raise ImageError(f"image too large: {w}x{h} = {w * h:,} pixels (limit {max_pixels:,})")
        try:
            fmt = im.format or "unknown"
            full = (w, h)
            try:
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF rotation by 90/270 degrees
                    full = (h, w)
            except Exception:
                pass
            if draft_size and im.format == "JPEG":
                tw, th = target_size(w, h, draft_size)
                im.draft("RGB", (tw, th))
            im.load()
            im = ImageOps.exif_transpose(im) or im
            im = _to_rgb(im)
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"image too large (decompression bomb guard): {e}") from None
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError, IndexError, TypeError, ZeroDivisionError) as e:
            msg = str(e) or type(e).__name__
            if "truncated" in msg.lower():
                raise ImageError(f"truncated image ({msg})") from None
            raise ImageError(f"corrupt image ({msg})") from None
    im.info["vgg_retrieval_format"] = fmt
    im.info["vgg_retrieval_full_size"] = full
    return im


def prepare(im: Image.Image, size: int) -> Prepared:
    """Resize (longer side = ``size``) and pad an RGB image into the fixed model input."""
    if im.mode != "RGB":
        im = _to_rgb(im)
    fmt = im.info.get("vgg_retrieval_format", im.format or "unknown")
    width, height = im.size
    tw, th = target_size(width, height, size)
    if (tw, th) != im.size:
        im = im.resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=None)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    out[:th, :tw] = np.asarray(im, dtype=np.uint8)
    return Prepared(out, (th, tw), width, height, fmt)


def load_and_prepare(source, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Prepared:
    """``open_image`` + ``prepare``, with JPEG draft decoding. ``width``/``height`` are of the file."""
    if isinstance(source, (str, os.PathLike)) or isinstance(source, (bytes, bytearray, memoryview)) or hasattr(source, "read"):
        im = open_image(source, max_pixels=max_pixels, draft_size=size)
        full = _full_size(im)
        p = prepare(im, size)
        p.width, p.height = full
        return p
    if isinstance(source, Image.Image):
        return prepare(_to_rgb(ImageOps.exif_transpose(source) or source), size)
    raise TypeError(f"cannot read an image from {type(source).__name__}")


def _full_size(im: Image.Image) -> tuple[int, int]:
    """The image's size before any draft reduction, after EXIF orientation."""
    w, h = im.info.get("vgg_retrieval_full_size", im.size)
    return w, h
