"""Walking folders: which files are images or videos (by content), and what changed since the last run.

Symbolic links to files are followed; links to folders are not (no loops). Only the first bytes of
new or changed files are read here; unchanged files cost one ``stat``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Iterator

from indexer.video.keyframes import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, sniff_video, videos_enabled
from retrieval.formats import EXTRA_IMAGE_EXTENSIONS, sniff_extra

IMAGE_EXTENSIONS = {
    ".jpg",
    ".jpeg",
    ".jpe",
    ".jfif",
    ".png",
    ".gif",
    ".bmp",
    ".dib",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
    ".pnm",
} | EXTRA_IMAGE_EXTENSIONS


@dataclass
class Entry:
    path: str
    root: str
    size: int = -1
    mtime_ns: int = -1
    problem: str | None = None  # set when the file cannot be used (reason, one line)
    kind: str = "image"  # or "video" (its sampled frames become the index entries)
    unlisted: bool = False  # a folder that cannot be listed (``problem`` says why): offline, not deleted


def sniff(head: bytes) -> str | None:
    """The image format that ``head`` (the first 16+ bytes) starts like, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM"):
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if len(head) > 2 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n":
        return "PPM"
    return sniff_extra(head)  # HEIF, AVIF, JPEG XL, camera RAW (retrieval.formats)


def describe_content(head: bytes) -> str:
    if not head:
        return "empty file"
    h = head.lstrip().lower()
    if h.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if h.startswith(b"<?xml") or h.startswith(b"<svg"):
        return "XML/SVG"
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head[4:8] == b"ftyp":
        return "an ISO media file (video/HEIC)"
    if not head.strip(b"\x00"):
        return "zero bytes"
    if b"\x00" not in head:
        try:
            head.decode("utf-8")
            return "text"
        except UnicodeDecodeError:
            pass
    return "unknown binary data"


def printable(path: str) -> str:
    """A path safe to store and print (undecodable bytes shown as \\xNN)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def walk(root: str, skip: str | None = None) -> Iterator[Entry]:
    """Every regular file below ``root`` (sorted), with its stat, or the reason it can't be used; a
    folder that cannot be listed as an ``unlisted`` entry. ``skip``: a folder left out (the index's own)."""

    def onerror(e: OSError) -> None:
        errors.append(
            Entry(
                printable(e.filename or root),
                root,
                problem=f"cannot list folder: {e.strerror}",
                unlisted=True,
            )
        )

    errors: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror, followlinks=False):
        dirnames.sort()
        if skip:
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != skip]
        yield from errors
        errors.clear()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            shown = printable(path)
            if shown != path:
                yield Entry(shown, root, problem="file name is not valid UTF-8 (rename the file)")
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                if os.path.islink(path):
                    yield Entry(path, root, problem="broken symbolic link")
                continue  # deleted while scanning
            except OSError as e:
                yield Entry(path, root, problem=f"cannot stat: {e.strerror}")
                continue
            if not stat.S_ISREG(st.st_mode):
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
                    yield Entry(path, root, problem="not a regular file")
                continue
            yield Entry(path, root, st.st_size, st.st_mtime_ns)
    yield from errors


def classify(entry: Entry) -> Entry | None:
    """Read the head of a new/changed file: keep images and videos, flag files named as images or
    videos that aren't (HEIC, AVIF, JPEG XL and camera RAW are
    images: ``retrieval.formats``).

    Returns the entry (``kind`` "image" or "video"; ``problem`` set when it is a bad image/video file)
    or None for files that are simply neither (text, audio, sidecars...), which are skipped silently.
    """
    ext = os.path.splitext(entry.path)[1].lower()
    videos = videos_enabled()
    named_video = videos and ext in VIDEO_EXTENSIONS
    named_image = ext in IMAGE_EXTENSIONS or named_video
    if entry.size == 0:
        if named_image:
            entry.problem = "empty file (0 bytes)"
            return entry
        return None
    try:
        with open(entry.path, "rb") as f:
            head = f.read(64)
    except PermissionError:
        entry.problem = "permission denied"
        entry.size = -1  # retried on every run: a chmod does not change the mtime
        return entry if named_image else None
    except OSError as e:
        entry.problem = f"cannot read: {e.strerror or e}"
        return entry if named_image else None
    if sniff(head):
        return entry
    if videos and sniff_video(head) and ext not in AUDIO_EXTENSIONS:
        entry.kind = "video"
        return entry
    if named_image:
        what = "a video" if named_video else "an image"
        entry.problem = f"not {what}: content is {describe_content(head)}"
        return entry
    return None
