"""The UI's settings (from the environment the launcher sets) and its one-line messages."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from retrieval import ImageError, UserError, one_line
from retrieval.engines import DEFAULT_ENGINE

ROOT = Path(__file__).resolve().parents[2]  # the repository (or site-packages) folder that holds ui/
ENV_INDEX = "VGG_RETRIEVAL_INDEX"  # the same variable as the CLI's --index
ENV_ENGINE = "VGG_RETRIEVAL_UI_ENGINE"
ENV_READ_ONLY = "VGG_RETRIEVAL_UI_READ_ONLY"
ENV_MAX_UPLOAD_MB = "VGG_RETRIEVAL_UI_MAX_UPLOAD_MB"
ENV_MAX_PIXELS = "VGG_RETRIEVAL_UI_MAX_PIXELS"
ENV_QUARANTINE = (
    "VGG_RETRIEVAL_UI_QUARANTINE"  # the Duplicates page's quarantine folder (default: next to the index)
)

DEFAULT_MAX_UPLOAD_MB = 20
DEFAULT_MAX_PIXELS = 40_000_000
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif", "avif", "jxl"]
UPLOAD_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF", "JXL"}
THUMB_PX = 192
LARGE_PX = 720


@dataclass
class Settings:
    index_dir: Path | None
    engine: str = DEFAULT_ENGINE
    read_only: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    max_pixels: int = DEFAULT_MAX_PIXELS
    quarantine: str | None = None

    @classmethod
    def from_env(cls) -> "Settings":
        d = os.environ.get(ENV_INDEX)
        return cls(
            index_dir=Path(d) if d else None,
            engine=os.environ.get(ENV_ENGINE) or DEFAULT_ENGINE,
            read_only=os.environ.get(ENV_READ_ONLY, "") not in ("", "0", "false"),
            max_upload_bytes=int(
                float(os.environ.get(ENV_MAX_UPLOAD_MB, DEFAULT_MAX_UPLOAD_MB)) * 1024 * 1024
            ),
            max_pixels=int(os.environ.get(ENV_MAX_PIXELS, DEFAULT_MAX_PIXELS)),
            quarantine=os.environ.get(ENV_QUARANTINE) or None,
        )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def message(e: BaseException) -> str:
    """A one-line, readable message for an error shown in the page."""
    if isinstance(e, (UserError, ImageError)):
        return str(e)
    return f"{type(e).__name__}: {one_line(e)}" if str(e).strip() else type(e).__name__
