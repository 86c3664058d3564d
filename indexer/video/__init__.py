"""Videos in an index: which frames it keeps (``frame_picking``) and reading them (``keyframes``)."""

from .frame_picking import VideoOptions
from .keyframes import (
    AUDIO_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoError,
    format_time,
    frame_path,
    read_frame,
    sample_video,
    sniff_video,
    videos_enabled,
)

__all__ = [
    "VideoOptions",
    "AUDIO_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoError",
    "format_time",
    "frame_path",
    "read_frame",
    "sample_video",
    "sniff_video",
    "videos_enabled",
]
