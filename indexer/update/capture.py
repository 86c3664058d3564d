"""A photo's capture metadata, read once when it is indexed: the EXIF capture time (DateTimeOriginal
with SubSecTimeOriginal and OffsetTimeOriginal), camera make and model, lens and GPS position.

Read from the file's bytes with Pillow's header parsing (no pixels decoded): JPEG, TIFF and the
TIFF-based RAWs (DNG, NEF, CR2, ARW...), HEIF, AVIF, JPEG XL, WebP and PNG. Other RAWs (CR3, RAF,
ORF, RW2) give what their embedded preview's EXIF says. Nothing here ever fails an image: a photo
without readable metadata just has none.
"""

from __future__ import annotations

import io
import re
import warnings

from indexer.reports import Capture
from indexer.storage.store import Store
from retrieval.formats import image_kind, register_plugins

_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_MAKE, _MODEL = 0x010F, 0x0110
_DATE_ORIGINAL, _DATE_DIGITIZED, _SUBSEC_ORIGINAL, _OFFSET_ORIGINAL = 0x9003, 0x9004, 0x9291, 0x9011
_LENS_MAKE, _LENS_MODEL = 0xA433, 0xA434
_UNIQUE_ID, _BODY_SERIAL = 0xA420, 0xA431
_DATE = re.compile(r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value[:100] or None


def capture_time(date, subsec=None, offset=None) -> str | None:
    """ISO 8601 local time of an EXIF date ("2019:04:14 13:46:10"), with its sub-seconds and UTC
    offset when given ("2019-04-14T13:46:10.830+02:00"); None for an empty or zero date."""
    m = _DATE.match(_text(date) or "")
    if not m or m.group(1) == "0000" or m.group(2) == "00":
        return None
    y, mo, d, h, mi, s = m.groups()
    out = f"{y}-{mo}-{d}T{h}:{mi}:{s}"
    sub = re.sub(r"\D", "", _text(subsec) or "")
    if sub:
        out += "." + sub[:6]
    off = _OFFSET.match(_text(offset) or "")
    if off:
        out += f"{off.group(1)}{off.group(2)}:{off.group(3)}"
    return out


def _degrees(value, ref) -> float | None:
    try:
        d, m, s = (float(x) for x in value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    deg = d + m / 60 + s / 3600
    return round(-deg if (_text(ref) or "").upper() in ("S", "W") else deg, 7)


def _raw(value) -> str | None:
    """An EXIF text as ``indexer.dedup.capture`` compares it (ASCII, padding stripped)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    value = str(value).strip().strip("\x00").strip()
    return value or None


def xmp_ids(xmp) -> tuple[str | None, str | None]:
    """(xmpMM:DocumentID, xmpMM:OriginalDocumentID) of an XMP packet (bytes or text), as attributes
    or elements; None where absent."""
    if not xmp:
        return None, None
    if isinstance(xmp, bytes):
        xmp = xmp.decode("utf-8", "replace")
    out = []
    for name in ("DocumentID", "OriginalDocumentID"):
        m = re.search(rf'xmpMM:{name}\s*=\s*["\']([^"\']*)["\']', xmp) or re.search(
            rf"<xmpMM:{name}>\s*([^<]*?)\s*</xmpMM:{name}>", xmp
        )
        out.append(_raw(m.group(1)) if m else None)
    return out[0], out[1]


def _xmp_of(im):
    """The XMP packet a Pillow image carries (JPEG APP1, PNG iTXt, WebP, TIFF tag 700), or None."""
    for key in ("xmp", "XML:com.adobe.xmp"):
        if im.info.get(key):
            return im.info[key]
    tag = getattr(im, "tag_v2", None)
    return tag.get(700) if tag is not None else None


def from_exif(exif, xmp=None) -> Capture:
    """The capture metadata in a Pillow ``Image.Exif`` (and ``xmp``, the file's XMP packet)."""
    sub = exif.get_ifd(_EXIF_IFD)
    date = sub.get(_DATE_ORIGINAL) or exif.get(_DATE_ORIGINAL) or sub.get(_DATE_DIGITIZED)
    captured = capture_time(date, sub.get(_SUBSEC_ORIGINAL), sub.get(_OFFSET_ORIGINAL))
    lens = _text(sub.get(_LENS_MODEL))
    lens_make = _text(sub.get(_LENS_MAKE))
    if lens and lens_make and not lens.lower().startswith(lens_make.lower()):
        lens = f"{lens_make} {lens}"
    gps = exif.get_ifd(_GPS_IFD)
    lat, lon = _degrees(gps.get(2), gps.get(1)), _degrees(gps.get(4), gps.get(3))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180) or lat == lon == 0.0:
        lat = lon = None
    doc, original = xmp_ids(xmp)
    return Capture(
        captured,
        _text(exif.get(_MAKE)),
        _text(exif.get(_MODEL)),
        lens,
        lat,
        lon,
        time_original=_raw(sub.get(_DATE_ORIGINAL)),
        subsec=_raw(sub.get(_SUBSEC_ORIGINAL)),
        time_offset=_raw(sub.get(_OFFSET_ORIGINAL)),
        body_serial=_raw(sub.get(_BODY_SERIAL)),
        unique_id=_raw(sub.get(_UNIQUE_ID)),
        document_id=doc,
        original_document_id=original,
        evidence=True,
    )


def _raw_preview_exif(data: bytes):
    """The EXIF of a RAW file's embedded JPEG preview, or None."""
    import rawpy
    from PIL import Image

    with rawpy.imread(io.BytesIO(data)) as raw:
        thumb = raw.extract_thumb()
        if thumb.format != rawpy.ThumbFormat.JPEG:
            return None
        return Image.open(io.BytesIO(thumb.data)).getexif()


def read_capture(data: bytes, name: str | None = None) -> Capture:
    """The capture metadata of a photo file's bytes (an empty ``Capture`` when it has none)."""
    from PIL import Image

    register_plugins()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            kind = image_kind(bytes(data[:65536]), name)
            xmp = None
            try:
                with Image.open(io.BytesIO(data)) as im:
                    exif = im.getexif()
                    xmp = _xmp_of(im)
            except Exception:  # noqa: BLE001 - not something Pillow opens (most RAWs): their preview
                exif = _raw_preview_exif(data) if kind == "RAW" else None
            return from_exif(exif, xmp) if exif is not None else Capture(evidence=True)
        except Exception:  # noqa: BLE001 - unreadable metadata is no metadata, never a failed photo
            return Capture(evidence=True)


def fill_missing(store: Store, batch: int = 200) -> int:
    """Read the capture metadata of the photos indexed before it was kept (an older index), once:
    each file's bytes, no decoding; a file that cannot be read now is tried again next time. How
    many photos got theirs."""
    todo, done = store.photos_without_capture(), 0
    for i in range(0, len(todo), batch):
        pairs = []
        for image_id, path in todo[i : i + batch]:
            try:
                with open(path, "rb") as f:
                    pairs.append((image_id, read_capture(f.read(), path)))
            except OSError:
                continue
        with store.session.begin() as s:
            Store.write_captures_in(s, pairs)
        done += len(pairs)
    return done
