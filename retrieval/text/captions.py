"""Training captions from what users already have: folder labels, file names and sidecar caption
files (``IMAGE.txt``, ``IMAGE.caption``, ``IMAGE.jpg.txt``, ``IMAGE.jpg.caption`` next to the image).

    >>> filename_words("IMG_2041_red-rose.jpg")
    'red rose'
    >>> filename_words("airplane01.jpg")
    'airplane'
    >>> filename_words("100080576_f52e8ee070_n.jpg")   # camera / Flickr ids carry no words
    ''
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Phrasings of a label or file-name caption used for training (queries may be phrased otherwise).
TEMPLATES = ("a photo of a {}", "{}", "a picture of the {}", "an image showing a {}")
SIDECAR_EXTS = (".txt", ".caption")
MAX_SIDECAR_CHARS = 1000

# camera and export prefixes, format words: not what a photo shows
_NOISE = {
    "img",
    "dsc",
    "dscn",
    "dscf",
    "pict",
    "pic",
    "image",
    "photo",
    "photos",
    "picture",
    "screenshot",
    "scan",
    "copy",
    "edit",
    "edited",
    "final",
    "small",
    "large",
    "thumb",
    "thumbnail",
    "jpg",
    "jpeg",
    "png",
    "gif",
    "tif",
    "tiff",
    "webp",
    "heic",
    "raw",
    "n",
    "m",
    "s",
    "t",
    "z",
    "b",
    "o",
    "px",
    "hdr",
    "pano",
    "burst",
    "cover",
    "wa",
    "pxl",
    "mvimg",
    "vid",
    "new",
    "old",
    "untitled",
    "file",
}
_SPLIT = re.compile(r"[\s_\-.+,;()\[\]{}]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_TRAILING_DIGITS = re.compile(r"^([A-Za-z]{2,})\d{1,4}$")
_HEXLIKE = re.compile(r"^(?=.*\d)[0-9a-fA-F]{8,}$")  # hashes, ids: f52e8ee070, eddfffa380


def clean_words(text: str) -> str:
    """Lower-case words of a name: separators and camelCase split, trailing counters dropped
    (``airplane01`` -> ``airplane``), tokens with digits inside (ids, dates, hashes) and camera
    prefixes (IMG, DSC...) removed."""
    words = []
    for part in _SPLIT.split(text):
        if _HEXLIKE.match(part):
            continue
        for tok in _CAMEL.split(part):
            m = _TRAILING_DIGITS.match(tok)
            if m:
                tok = m.group(1)
            if not tok.isalpha():
                continue
            tok = tok.lower()
            if tok in _NOISE or len(tok) < 2:
                continue
            words.append(tok)
    return " ".join(words)


def filename_words(path: str | os.PathLike) -> str:
    return clean_words(Path(path).stem)


def sidecar_caption(path: str | os.PathLike) -> str:
    """The text of a caption file next to the image, '' when there is none (or it can't be read)."""
    p = Path(path)
    for cand in [p.with_suffix(ext) for ext in SIDECAR_EXTS] + [
        p.with_name(p.name + ext) for ext in SIDECAR_EXTS
    ]:
        if cand == p:
            continue
        try:
            if not cand.is_file():
                continue
            with open(cand, encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_SIDECAR_CHARS)
        except OSError:
            continue
        text = " ".join(text.split())
        if text:
            return text
    return ""


def image_captions(path: str, label: str = "", root: str | None = None) -> list[str]:
    """Every training caption of one indexed image: the sidecar text as written, and the folder label
    and file-name words through ``TEMPLATES``. An image lying directly in an indexed root gets the
    root's name as its label (that is what the index stores); it is used only when the file name has
    no words, since a root is often a generic name (``photos``, ``Downloads``)."""
    caps: list[str] = []
    side = sidecar_caption(path)
    if side:
        caps.append(side)
    lab = clean_words(label or "")
    name = filename_words(path)
    in_root = root is not None and os.path.normpath(os.path.dirname(path)) == os.path.normpath(root)
    if in_root and name:
        lab = ""
    subjects = []
    for s in (lab, name, f"{name} {lab}".strip() if name and lab and name != lab else ""):
        if s and s not in subjects:
            subjects.append(s)
    for s in subjects:
        caps.extend(t.format(s) for t in TEMPLATES)
    out, seen = [], set()
    for c in caps:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def index_captions(rows, exclude: set[str] | None = None) -> dict[int, list[str]]:
    """image id -> captions for rows with ``id``, ``path``, ``label``, ``root`` (ImageRow); images
    whose path is in ``exclude`` or that have no caption are left out."""
    exclude = exclude or set()
    out = {}
    for r in rows:
        if r.path in exclude:
            continue
        source = getattr(r, "source", None)  # a video frame: the video file names it
        caps = image_captions(source or r.path, r.label or "", getattr(r, "root", None))
        if caps:
            out[int(r.id)] = caps
    return out
