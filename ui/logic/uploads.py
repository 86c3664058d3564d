"""Uploaded images: checked (bytes, pixels, format); kept by content hash in the index's cache folder
(so a search by upload has a URL); crops, previews, JPEG bytes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path

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


# --- uploads kept by content hash, so that a search by upload has a URL (?upload=<sha256>) -------------
UPLOADS_DIR = ("cache", "uploads")  # under the index folder
MAX_KEPT_UPLOADS = 500  # the oldest go first beyond this
_SHA = re.compile(r"^[0-9a-f]{64}$")


def uploads_dir(index_dir) -> Path:
    return Path(index_dir).joinpath(*UPLOADS_DIR)


def keep_upload(index_dir, name: str, data: bytes) -> str | None:
    """Keep a checked upload's bytes as ``INDEX/cache/uploads/<sha256>`` (and its file name beside
    it); its sha256, or None when the folder cannot be written (a read-only index: no URL then)."""
    sha = hashlib.sha256(bytes(data)).hexdigest()
    folder = uploads_dir(index_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / sha
        if not target.is_file():
            tmp = folder / f".{sha}.tmp"
            tmp.write_bytes(bytes(data))
            os.replace(tmp, target)
        (folder / f"{sha}.json").write_text(json.dumps({"name": os.path.basename(str(name))[:200]}))
        os.utime(target)
        _prune(folder)
    except OSError:
        return None
    return sha


def kept_upload(index_dir, sha: str) -> tuple[str, bytes]:
    """(file name, bytes) of a kept upload; UserError when ``sha`` is not one (a hand-edited or old link)."""
    sha = (sha or "").strip().lower()
    if not _SHA.match(sha):
        raise UserError("this link's upload= is not the sha256 of an uploaded image: upload the image again")
    folder = uploads_dir(index_dir)
    try:
        data = (folder / sha).read_bytes()
    except OSError:
        raise UserError(
            f"the uploaded image {sha[:12]}... of this link is no longer kept here: upload it again"
        ) from None
    if hashlib.sha256(data).hexdigest() != sha:
        raise UserError(f"the kept upload {sha[:12]}... is damaged: upload the image again")
    try:
        name = str(json.loads((folder / f"{sha}.json").read_text()).get("name") or "")
    except (OSError, ValueError, AttributeError):
        name = ""
    return name or f"upload-{sha[:12]}", data


def _prune(folder: Path, keep: int = MAX_KEPT_UPLOADS) -> None:
    kept = sorted((p for p in folder.iterdir() if _SHA.match(p.name)), key=lambda p: p.stat().st_mtime)
    for old in kept[: max(0, len(kept) - keep)]:
        for p in (old, folder / f"{old.name}.json"):
            p.unlink(missing_ok=True)
