"""Image decoding and the input policy, shared by every engine (numpy + Pillow only, no torch).

``prepare(image, size)`` gives a ``size x size x 3`` uint8 array with the picture in the top-left
corner (longer side resized to ``size``, aspect ratio kept) and its valid ``(height, width)``. One fixed
shape for all images keeps OpenVINO/ONNX Runtime on a single compiled shape and lets images batch.
With ``size`` an ``InputBuckets`` (``ModelSpec.input_geometry`` of the "buckets" input policy) the
array is instead the ``(H, W, 3)`` bucket whose aspect is nearest the picture's, the picture resized
(aspect kept) to fit inside it: a few fixed shapes; images batch within a shape.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from . import formats
from .errors import ImageError
from .raw_decode import open_raw
from .spec import InputBuckets

# Pillow's own guard is ~179 MP with an error past twice that; ours is explicit and configurable.
DEFAULT_MAX_PIXELS = int(os.environ.get("VGG_RETRIEVAL_MAX_PIXELS", 100_000_000))


@dataclass
class Prepared:
    array: np.ndarray  # (size, size, 3) uint8 (buckets: (H, W, 3)), zero padded at the bottom/right
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


def open_image(
    source, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None, name: str | None = None
) -> Image.Image:
    """Open, check and fully decode an image (path, bytes or file object) to RGB.

    EXIF orientation is applied; animated/multi-page files give their first frame (HEIF: its
    primary image). With ``draft_size``, JPEGs are decoded at a reduced scale (HEIF: an embedded
    thumbnail, RAW: the embedded preview) when the result stays at least that big. The format is
    read from the content (``retrieval.formats``); ``name``, the file's name, only tells the
    TIFF-based RAWs (NEF, ARW...) from TIFFs.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("empty file")
        source = io.BytesIO(source)
    if name is None and isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
    try:
        kind = formats.image_kind(formats.read_head(source), name)
    except OSError as e:
        raise ImageError(f"cannot read: {e.strerror or e}") from None
    if kind is not None:
        formats.ensure_reader(kind)
    if kind == "RAW":
        return open_raw(source, max_pixels, draft_size)
    with warnings.catch_warnings():
        # Pillow's warnings (corrupt EXIF, its own 89 MP bomb warning) are not verdicts: our
        # max_pixels check below and the decode errors decide.
        warnings.simplefilter("ignore")
        try:
            im = Image.open(source)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"image too large (decompression bomb guard): {e}") from None
        except Image.UnidentifiedImageError:
            if kind is not None:
                raise ImageError(f"corrupt or truncated {kind} file") from None
            raise ImageError("not an image Pillow can read") from None
        except (OSError, ValueError, SyntaxError, RuntimeError) as e:
            if kind is not None:
                raise ImageError(f"corrupt or truncated {kind} file ({_line(e)})") from None
            raise ImageError(f"cannot open image: {_line(e)}") from None
        w, h = im.size
        if w <= 0 or h <= 0:
            raise ImageError(f"invalid image size {w}x{h}")
        if w * h > max_pixels:
            raise ImageError(f"image too large: {w}x{h} = {w * h:,} pixels (limit {max_pixels:,})")
        return _decode(im, draft_size)


def _line(e: BaseException) -> str:
    """An exception's message as one short line (decoders' messages can span several)."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    return lines[0][:200] if lines else type(e).__name__


def _decode(im: Image.Image, draft_size: int | None) -> Image.Image:
    """The opened ``im`` decoded, upright and RGB (``open_image``'s second half)."""
    w, h = im.size
    try:
        fmt = im.format or "unknown"
        full = (w, h)
        try:
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF rotation by 90/270 degrees
                full = (h, w)  # (HEIF comes upright from pillow-heif, its orientation set to 1)
        except Exception:
            pass
        if draft_size and im.format in ("JPEG", "HEIF"):
            tw, th = target_size(w, h, draft_size)
            im.draft("RGB", (tw, th))
        im.load()
        im = ImageOps.exif_transpose(im) or im
        im = _to_rgb(im)
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image too large (decompression bomb guard): {e}") from None
    except (
        OSError,
        ValueError,
        SyntaxError,
        EOFError,
        MemoryError,
        IndexError,
        TypeError,
        ZeroDivisionError,
        RuntimeError,
    ) as e:
        msg = _line(e)
        if "truncated" in msg.lower() or "end of file" in msg.lower():
            raise ImageError(f"truncated image ({msg})") from None
        raise ImageError(f"corrupt image ({msg})") from None
    im.info["vgg_retrieval_format"] = fmt
    im.info["vgg_retrieval_full_size"] = full
    return im


# Border trimming (ModelSpec.trim_borders): near-uniform bands at the picture's edges - solid padding,
# letterboxing, a screenshot's canvas and window bars - are cut off and the rest is resized back to
# the full model input, so that they neither dilute the global pooling nor shrink the picture. It
# runs on the prepared input (``trim_prepared``), inside ``Embedder.embed_batch``, so every engine,
# indexing and queries do exactly the same. (Trimming the full-resolution image before the
# resize measured slightly better on screenshots, but needs the spec in every decode call.)
# A line (row or column) is "uniform" when at least TRIM_COVERAGE of its pixels are within
# TRIM_TOLERANCE (per channel, 0-255) of the line's median colour; bands are peeled from each side
# as long as lines stay uniform and their brightness stays within TRIM_DRIFT of the band's first line
# (several solid bands, e.g. a title bar then a canvas, are all peeled; a sky's slow gradient is
# not). Guards against trimming real content: at most TRIM_MAX_SIDE of a side's length is cut from
# each side (a longer uniform run - a large overexposed sky - is kept whole on that side), a band
# must be at least TRIM_MIN_BAND of the side to be cut, and the picture is left untouched when less
# than TRIM_MIN_KEEP of a side would remain.
TRIM_TOLERANCE = 8
TRIM_DRIFT = 4
TRIM_JUMP = 16
TRIM_COVERAGE = 0.98
TRIM_MAX_SIDE = 0.30
TRIM_MIN_KEEP = 0.35
TRIM_MIN_BAND = 0.03
TRIM_WORK_SIDE = 512  # detection runs on a copy at most this big (box-reduced); cuts are mapped back


def _line_stats(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For ``a`` (lines, length, 3) int16: (which lines are near-uniform, each line's median colour)."""
    med = np.median(a, axis=1)
    if a.shape[1] == 0:
        return np.ones(a.shape[0], dtype=bool), med
    close = (np.abs(a - med[:, None, :]) <= TRIM_TOLERANCE).all(axis=2)
    return close.mean(axis=1) >= TRIM_COVERAGE, med


def _band_length(uniform: np.ndarray, med: np.ndarray) -> int:
    """How many lines from the start form solid bands: uniform lines whose brightness stays within
    TRIM_DRIFT (and colour within TRIM_JUMP) of their band's first line. A new band starts only on a
    jump in colour (a title bar above a canvas), never by a slow drift: a sky's gradient ends the
    run. Brightness, not colour, measures the drift: JPEG's chroma noise on a flat area is larger."""
    luma = med @ np.array([0.299, 0.587, 0.114])
    n = 0
    start = None
    for k in range(len(uniform)):
        if not uniform[k]:
            break
        if start is not None and (
            abs(luma[k] - luma[start]) > TRIM_DRIFT or np.abs(med[k] - med[start]).max() > TRIM_JUMP
        ):
            if np.abs(med[k] - med[k - 1]).max() <= TRIM_JUMP:
                break  # drifting colour: a gradient, not a solid band
            start = None
        if start is None:
            start = k
        n += 1
    return n


def _edge_band(lines: np.ndarray, longest: int) -> int:
    """``_band_length`` of ``lines`` (lines, length, 3), reading only the lines its scan needs: a
    growing prefix, up to ``longest + 1`` lines (a longer band is not trimmed anyway). Most photos
    end the scan on their first line, so this costs a few lines instead of the whole image."""
    limit = min(len(lines), longest + 1)
    n = min(limit, 8)
    while True:
        band = _band_length(*_line_stats(lines[:n]))
        if band < n or n >= limit:
            return band
        n = min(limit, n * 4)


def border_box(im: Image.Image) -> tuple[int, int, int, int] | None:
    """The (left, top, right, bottom) box left after trimming uniform border bands, or None when
    nothing is trimmed (see TRIM_* above)."""
    w, h = im.size
    if w < 16 or h < 16:
        return None
    factor = -(-max(w, h) // TRIM_WORK_SIDE)  # ceil
    small = im if factor <= 1 else im.reduce(factor)
    a = np.asarray(small.convert("RGB"), dtype=np.int16)
    sh, sw = a.shape[:2]
    max_h, max_w = int(TRIM_MAX_SIDE * sh), int(TRIM_MAX_SIDE * sw)
    # rows, then columns between the remaining rows: a screenshot's side margins are only uniform
    # columns once its title and status bars are gone. One pass: peeling again would walk down a
    # sky's gradient a few lines at a time.
    t, bt = _edge_band(a, max_h), _edge_band(a[::-1], max_h)
    top = t if t <= max_h else 0
    bottom = sh - (bt if bt <= max_h else 0)
    if bottom - top < TRIM_MIN_KEEP * sh:
        return None
    cols = a[top:bottom].transpose(1, 0, 2)
    l_, r_ = _edge_band(cols, max_w), _edge_band(cols[::-1], max_w)
    left = l_ if l_ <= max_w else 0
    right = sw - (r_ if r_ <= max_w else 0)
    min_h, min_w = max(1, round(TRIM_MIN_BAND * sh)), max(1, round(TRIM_MIN_BAND * sw))
    top = top if top >= min_h else 0
    bottom = bottom if sh - bottom >= min_h else sh
    left = left if left >= min_w else 0
    right = right if sw - right >= min_w else sw
    if (top, bottom, left, right) == (0, sh, 0, sw):
        return None
    if bottom - top < TRIM_MIN_KEEP * sh or right - left < TRIM_MIN_KEEP * sw:
        return None
    fx, fy = w / sw, h / sh  # back to full resolution, rounding towards keeping more
    box = (
        int(np.floor(left * fx)),
        int(np.floor(top * fy)),
        int(np.ceil(right * fx)),
        int(np.ceil(bottom * fy)),
    )
    return (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))


def trim_borders(im: Image.Image) -> Image.Image:
    """``im`` without its uniform border bands (the same image when there are none)."""
    box = border_box(im)
    if box is None:
        return im
    out = im.crop(box)
    out.info.update(im.info)
    return out


def trim_prepared(array: np.ndarray, valid, size=None) -> tuple[np.ndarray, tuple[int, int]]:
    """Border trimming on an already prepared input (``array`` ``(S, S, 3)`` uint8 with the picture
    top-left, ``valid`` its (height, width)): the trimmed picture is resized back to the full input
    (longer side ``S``; with ``size`` an ``InputBuckets``, into the bucket of its new aspect) and
    padded again. Returns (array, valid); the same objects when nothing is trimmed."""
    h, w = int(valid[0]), int(valid[1])
    im = Image.fromarray(np.ascontiguousarray(array[:h, :w]))
    box = border_box(im)
    if box is None:
        return array, (h, w)
    return fit_input(im.crop(box), size or int(array.shape[0]))


def fit_input(im: Image.Image, size) -> tuple[np.ndarray, tuple[int, int]]:
    """(array, valid (h, w)) of RGB ``im`` resized into the model input ``size`` (an int: longer side
    ``size``, padded to a square; an ``InputBuckets``: fitted inside its nearest-aspect bucket)."""
    if isinstance(size, InputBuckets):
        bh, bw = size.shape_for(im.width, im.height)
        scale = min(bw / im.width, bh / im.height)
        tw, th = max(1, min(bw, round(im.width * scale))), max(1, min(bh, round(im.height * scale)))
    else:
        bh = bw = int(size)
        tw, th = target_size(im.width, im.height, bh)
    if (tw, th) != im.size:
        im = im.resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=None)
    out = np.zeros((bh, bw, 3), dtype=np.uint8)
    out[:th, :tw] = np.asarray(im, dtype=np.uint8)
    return out, (th, tw)


def into_bucket(array: np.ndarray, valid, buckets: InputBuckets) -> tuple[np.ndarray, tuple[int, int]]:
    """(array, valid) as they are when ``array`` is the bucket of its picture (the picture fills one
    side, and its aspect, up to the rounding of the resize, is nearest that bucket's); otherwise
    the picture cut out and fitted into its bucket. A safety net for inputs prepared for another
    policy (a square ``prepare(im, spec.input_size)``): those lose resolution on the way, so
    prepare with ``spec.input_geometry``."""
    h, w = int(valid[0]), int(valid[1])
    shape = tuple(array.shape[:2])
    if (h == shape[0] or w == shape[1]) and shape in (
        buckets.shape_for(w - 0.5, h + 0.5),
        buckets.shape_for(w + 0.5, h - 0.5),
    ):
        return array, (h, w)
    return fit_input(Image.fromarray(np.ascontiguousarray(array[:h, :w])), buckets)


def shape_groups(arrays) -> list[list[int]]:
    """Positions of ``arrays`` grouped by shape, groups in first-seen order: one forward pass each
    (the engines' batches, distillation's)."""
    groups: dict[tuple, list[int]] = {}
    for n, a in enumerate(arrays):
        groups.setdefault(tuple(a.shape), []).append(n)
    return list(groups.values())


def draft_side(size) -> int:
    """The longer side a JPEG may be draft-decoded down to for the model input ``size``."""
    if isinstance(size, InputBuckets):
        return max(max(shape) for shape in size.shapes)
    return int(size)


def prepare(im: Image.Image, size, trim: bool = False) -> Prepared:
    """Resize (longer side = ``size``) and pad an RGB image into the fixed model input; ``size`` an
    ``InputBuckets``: into its bucket (see the module doc).

    ``trim``: cut uniform border bands off first (``trim_borders``). Not needed before an
    ``Embedder``, which applies its spec's ``trim_borders`` itself (``trim_prepared``); for code that
    feeds a network directly. ``width``/``height`` stay the image's own."""
    if im.mode != "RGB":
        im = _to_rgb(im)
    fmt = im.info.get("vgg_retrieval_format", im.format or "unknown")
    width, height = im.size
    if trim:
        im = trim_borders(im)
    out, valid = fit_input(im, size)
    return Prepared(out, valid, width, height, fmt)


def load_and_prepare(source, size, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None) -> Prepared:
    """``open_image`` + ``prepare``, with draft decoding. ``width``/``height`` are of the file.
    ``size``: an int or an ``InputBuckets`` (pass ``spec.input_geometry``); ``name``: the file's
    name when ``source`` is its bytes (see ``open_image``)."""
    if (
        isinstance(source, (str, os.PathLike))
        or isinstance(source, (bytes, bytearray, memoryview))
        or hasattr(source, "read")
    ):
        im = open_image(source, max_pixels=max_pixels, draft_size=draft_side(size), name=name)
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
