"""Videos in the index: recognise them, sample keyframes, read one frame back (PyAV / FFmpeg).

More: docs/design-notes.md (``indexer.video.keyframes``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from PIL import Image

from retrieval.preprocess import DEFAULT_MAX_PIXELS

from .frame_picking import FramePicker, SampledFrame, VideoOptions, rgb

VIDEO_EXTENSIONS = {".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".avi", ".3gp"}
# ISO media brands that are still images (HEIF/AVIF photos and image sequences), not videos
_IMAGE_BRANDS = {
    b"heic",
    b"heix",
    b"hevc",
    b"hevx",
    b"heim",
    b"heis",
    b"hevm",
    b"hevs",
    b"mif1",
    b"msf1",
    b"avif",
    b"avis",
}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
# audio in video containers: never taken for videos (no "no video stream" error for a music folder)
AUDIO_EXTENSIONS = {".m4a", ".m4b", ".m4p", ".mka", ".weba", ".opus", ".ogg", ".oga", ".mp3", ".aac", ".wav"}
FRAGMENT = "#t="


class VideoError(Exception):
    """A video that cannot be used; the message is the reason, one short line."""


def videos_enabled() -> bool:
    return os.environ.get("VGG_RETRIEVAL_VIDEO", "1").strip().lower() not in ("0", "no", "false", "off")


def sniff_video(head: bytes) -> str | None:
    """The video container that ``head`` (the first 64 bytes) starts like, or None."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _IMAGE_BRANDS or brand in _AUDIO_BRANDS:
            return None
        return "MOV" if brand == b"qt  " else "MP4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska or WebM (the DocType follows)
        return "WEBM" if b"webm" in head[:64] else "MKV"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    return None


def is_frame_path(path: str) -> bool:
    return FRAGMENT in path


def frame_path(video: str, time_s: float) -> str:
    return f"{video}{FRAGMENT}{time_s:.3f}"


def format_time(t: float | None) -> str:
    """``mm:ss.s`` (``h:mm:ss.s`` past an hour) of a time in seconds."""
    if t is None:
        return ""
    t = max(0.0, float(t))
    tenths = int(round(t * 10))
    h, rest = divmod(tenths, 36000)
    m, rest = divmod(rest, 600)
    s = rest / 10
    return f"{h}:{m:02d}:{s:04.1f}" if h else f"{m:02d}:{s:04.1f}"


@dataclass
class VideoSample:
    frames: list[SampledFrame]
    container: str
    codec: str
    width: int
    height: int
    duration_s: float | None
    decoded: int  # frames decoded
    fps: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def format(self) -> str:
        return f"{self.container}/{self.codec}"[:16]


def _open(path: str):
    import av

    try:
        return av.open(path, mode="r", metadata_errors="ignore")
    except (FileNotFoundError, PermissionError):
        raise
    except av.error.FFmpegError as e:
        raise VideoError(f"cannot read video: corrupt, truncated or unsupported ({_short(e)})") from None
    except (OSError, ValueError, MemoryError) as e:
        raise VideoError(f"cannot open video ({_short(e)})") from None


def _short(e: BaseException) -> str:
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())[:160]


def _video_stream(container):
    streams = [s for s in container.streams.video if s.codec_context is not None]
    if not streams:
        raise VideoError("no video stream (audio only, or not a video)")
    stream = streams[0]
    stream.thread_type = "AUTO"
    return stream


def sample_video(
    path: str, size: int, options: VideoOptions | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> VideoSample:
    """Pick the frames of a video to index (see ``indexer.video.frame_picking``), each prepared at ``size`` like
    a photo (the embedder applies the model's border trimming, as for photos)."""
    import av

    o = options or VideoOptions.from_env()
    container = _open(path)
    try:
        stream = _video_stream(container)
        cc = stream.codec_context
        width, height = int(cc.width or 0), int(cc.height or 0)
        if width * height > max_pixels:
            raise VideoError(f"video frames too large: {width}x{height} (limit {max_pixels:,} pixels)")
        tb = stream.time_base
        start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
        duration = _duration(container, stream)
        fps = float(stream.average_rate) if stream.average_rate else None
        interval = o.interval_s
        if duration and duration / interval > max(1, o.max_frames // 2):
            interval = duration / max(1, o.max_frames // 2)
        picker = FramePicker(o, size, interval)
        frames = _DecodedFrames(container, stream)
        last_time = None
        try:
            for frame in frames:
                if frame.pts is not None and tb:
                    t = float(frame.pts * tb) - start
                elif fps:
                    t = (frames.decoded - 1) / fps
                else:
                    t = float(frames.decoded - 1)
                t = max(0.0, t)
                if last_time is not None and t < last_time:
                    t = last_time  # non-monotonic timestamps: keep times ordered
                last_time = t
                picker.offer(frame, t)
        except VideoError:
            raise
        except av.error.FFmpegError as e:
            at = f" at {format_time(last_time)}" if last_time is not None else ""
            raise VideoError(f"corrupt video{at} ({_short(e)})") from None
        except MemoryError:
            raise VideoError("video needs too much memory to decode") from None
        decoded, errors = frames.decoded, frames.errors
        if not decoded:
            raise VideoError(
                "no video frames could be decoded" + (f" ({errors} damaged packets)" if errors else "")
            )
        if duration and last_time is not None and fps:
            end = last_time + 1 / fps
            if end < duration * 0.9 - 1.0:
                raise VideoError(
                    f"truncated video: frames end at {format_time(end)} of {format_time(duration)}"
                )
        codec = cc.name or "?"
        kind = _container_kind(path, container)
        return VideoSample(
            picker.picked,
            kind,
            codec,
            width,
            height,
            duration,
            decoded,
            fps,
            [f"{errors} damaged packets skipped"] if errors else [],
        )
    finally:
        container.close()


def _duration(container, stream) -> float | None:
    """The video's length in seconds (the stream's, else the container's), None when unknown."""
    tb = stream.time_base
    duration = None
    if stream.duration is not None and tb:
        duration = float(stream.duration * tb)
    elif container.duration:
        duration = container.duration / 1_000_000
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        duration = None
    return duration


class _DecodedFrames:
    """The frames of ``stream`` in decoding order, counted (``decoded``); damaged packets are skipped
    and counted (``errors``), as FFmpeg conceals them, until there are more of them than frames."""

    def __init__(self, container, stream):
        self.container, self.stream = container, stream
        self.decoded = self.errors = 0

    def __iter__(self):
        import av

        try:
            for packet in self.container.demux(self.stream):
                try:
                    frames = list(packet.decode())
                except av.error.InvalidDataError:
                    self.errors += 1
                    if self.errors > 50 and self.errors > self.decoded:
                        raise VideoError(f"corrupt video ({self.errors} undecodable packets)") from None
                    continue
                for frame in frames:
                    self.decoded += 1
                    yield frame
        except av.error.EOFError:
            return


def _container_kind(path: str, container) -> str:
    try:
        with open(path, "rb") as f:
            kind = sniff_video(f.read(64))
    except OSError:
        kind = None
    return kind or (container.format.name or "").split(",")[0].upper()[:8] or "VIDEO"


def read_frame(path, time_s: float) -> Image.Image:
    """The frame shown at ``time_s`` seconds (the one with the greatest time <= time_s + 1 ms), as RGB:
    the same pixels the indexer sampled."""
    import av

    container = _open(str(path))
    try:
        stream = _video_stream(container)
        tb = stream.time_base
        start = float(stream.start_time * tb) if stream.start_time is not None and tb else 0.0
        target = float(time_s) + 0.0005
        try:
            if time_s > 0 and tb:
                container.seek(int((time_s + start) / tb), stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            container.seek(0)
        best = None
        fps = float(stream.average_rate) if stream.average_rate else None
        n = 0
        try:
            for packet in container.demux(stream):
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    continue
                for frame in decoded:
                    n += 1
                    t = (
                        float(frame.pts * tb) - start
                        if frame.pts is not None and tb
                        else (n - 1) / (fps or 1)
                    )
                    if t > target and best is not None:
                        return rgb(best)
                    best = frame
        except av.error.EOFError:
            pass
        except av.error.FFmpegError as e:
            if best is None:
                raise VideoError(f"cannot read frame at {format_time(time_s)} ({_short(e)})") from None
        if best is None:
            raise VideoError(f"no frame at {format_time(time_s)}")
        return rgb(best)
    finally:
        container.close()
