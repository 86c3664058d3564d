"""Capture evidence from EXIF: were two files taken in one exposure?

More: docs/design-notes.md (``indexer.dedup.capture``)."""

from __future__ import annotations

from dataclasses import dataclass

EXIF_IFD = 0x8769
MAKE, MODEL = 0x010F, 0x0110
DATETIME_ORIGINAL, OFFSET_ORIGINAL, SUBSEC_ORIGINAL = 0x9003, 0x9011, 0x9291
UNIQUE_ID, BODY_SERIAL = 0xA420, 0xA431
SAME, DIFFERS = "same", "differs"


@dataclass(frozen=True)
class Capture:
    """What a file says about its exposure (None: not recorded)."""

    time: str | None = None  # DateTimeOriginal, "YYYY:MM:DD HH:MM:SS"
    subsec: str | None = None  # SubSecTimeOriginal
    offset: str | None = None  # OffsetTimeOriginal, e.g. "+02:00"
    camera: tuple | None = None  # (make, model, body serial or None)
    unique_id: str | None = None  # ImageUniqueID

    @property
    def empty(self) -> bool:
        return self.time is None and self.camera is None and self.unique_id is None


def _text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("ascii", "replace")
    v = str(v).strip().strip("\x00").strip()
    return v or None


def from_exif(exif) -> Capture | None:
    """The Capture in a Pillow ``Image.Exif`` (None when it records none of it)."""
    try:
        sub = exif.get_ifd(EXIF_IFD)
    except Exception:  # noqa: BLE001 - a broken Exif IFD records nothing we can trust
        sub = {}
    make, model, serial = (_text(x) for x in (exif.get(MAKE), exif.get(MODEL), sub.get(BODY_SERIAL)))
    cap = Capture(
        time=_text(sub.get(DATETIME_ORIGINAL)),
        subsec=_text(sub.get(SUBSEC_ORIGINAL)),
        offset=_text(sub.get(OFFSET_ORIGINAL)),
        camera=(make, model, serial) if (make or model) else None,
        unique_id=_text(sub.get(UNIQUE_ID)),
    )
    return None if cap.empty else cap


def read_capture(path: str) -> Capture | None:
    """The Capture of the file at ``path`` (None: none recorded, or unreadable)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return from_exif(im.getexif())
    except Exception:  # noqa: BLE001 - no metadata is no evidence; the pixels decide
        return None


def from_stored(c) -> Capture | None:
    """The Capture of what the index stored for a photo (``indexer.reports.Capture`` with
    ``evidence``: read when it was indexed, ``update.capture``): the same fields ``from_exif`` reads."""
    make, model = (_text(x) for x in (c.make, c.model))
    cap = Capture(
        time=_text(c.time_original),
        subsec=_text(c.subsec),
        offset=_text(c.time_offset),
        camera=(make, model, _text(c.body_serial)) if (make or model) else None,
        unique_id=_text(c.unique_id),
    )
    return None if cap.empty else cap


def _both(x, y) -> bool:
    return x is not None and y is not None


def compare(a: Capture | None, b: Capture | None) -> str | None:
    """DIFFERS (two captures), SAME (one capture, to the sub-second or by ImageUniqueID) or None
    (not enough on both sides to tell)."""
    if a is None or b is None:
        return None
    if _both(a.unique_id, b.unique_id) and a.unique_id != b.unique_id:
        return DIFFERS
    if _both(a.camera, b.camera) and any(_both(x, y) and x != y for x, y in zip(a.camera, b.camera)):
        return DIFFERS
    if _both(a.time, b.time) and (
        a.time != b.time
        or (_both(a.subsec, b.subsec) and a.subsec != b.subsec)
        or (_both(a.offset, b.offset) and a.offset != b.offset)
    ):
        return DIFFERS
    if _both(a.unique_id, b.unique_id):
        return SAME
    if _both(a.time, b.time) and _both(a.subsec, b.subsec):
        return SAME
    return None
