"""The image formats beyond Pillow's own: which one a file's bytes are, and the plugin that reads it.

Every format is recognised by its content: HEIF/HEIC and AVIF by their ``ftyp`` brands, JPEG XL by
its signature, camera RAW files by their headers (DNG by its ``DNGVersion`` tag, TIFF-based RAWs
such as NEF, ARW or CR2 also by their name). HEIF is read with ``pillow-heif``, AVIF with Pillow's
own plugin (Pillow 11.3+; older ``pillow-heif`` versions as a fallback), JPEG XL with
``pillow-jxl-plugin``, RAW with ``rawpy`` (``retrieval.raw_decode``). A missing package makes
those files an ``ImageError`` naming what to install; it never stops a run.
"""

from __future__ import annotations

import io
import os
import struct

from .errors import ImageError

HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
AVIF_BRANDS = {b"avif", b"avis"}
RAW_EXTENSIONS = {
    ".dng",
    ".cr2",
    ".cr3",
    ".crw",
    ".nef",
    ".nrw",
    ".arw",
    ".srf",
    ".sr2",
    ".raf",
    ".orf",
    ".rw2",
    ".rwl",
    ".pef",
    ".srw",
    ".kdc",
    ".dcr",
    ".mrw",
    ".x3f",
    ".3fr",
    ".erf",
    ".mef",
    ".mos",
    ".iiq",
}
EXTRA_IMAGE_EXTENSIONS = {".heic", ".heif", ".hif", ".avif", ".jxl"} | RAW_EXTENSIONS
# what to install for each format (pip names)
PACKAGES = {
    "HEIF": "pillow-heif",
    "AVIF": "pillow>=11.3 (or pillow-heif<1)",
    "JXL": "pillow-jxl-plugin",
    "RAW": "rawpy",
}
_JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
_DNG_VERSION = 50706
HEAD_BYTES = 64


def _ftyp_brands(head: bytes) -> list[bytes]:
    size = int.from_bytes(head[:4], "big")
    end = min(len(head), size if 16 <= size else 16)
    return [head[8:12]] + [head[n : n + 4] for n in range(16, end - 3, 4)]


def sniff_extra(head: bytes) -> str | None:
    """ "HEIF", "AVIF", "JXL" or "RAW" for the first bytes of such a file (not TIFF-based RAWs:
    those start like any TIFF, see ``image_kind``), else None."""
    if head[4:8] == b"ftyp":
        brands = _ftyp_brands(head)
        if brands[0] == b"crx ":
            return "RAW"  # Canon CR3
        if brands[0] in AVIF_BRANDS or (brands[0] in (b"mif1", b"msf1") and AVIF_BRANDS & set(brands[1:])):
            return "AVIF"
        if brands[0] in HEIF_BRANDS:
            return "HEIF"
        return None
    if head.startswith(b"\xff\x0a") or head.startswith(_JXL_CONTAINER):
        return "JXL"
    if head.startswith(b"FUJIFILMCCD-RAW") or head.startswith(b"FOVb") or head.startswith(b"\x00MRM"):
        return "RAW"  # Fujifilm RAF, Sigma X3F, Minolta MRW
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR", b"IIU\x00"):
        return "RAW"  # Olympus ORF, Panasonic RW2
    return None


def _tiff_has_tag(data: bytes, tag: int) -> bool:
    """Whether the first IFD of the TIFF ``data`` holds ``tag`` (a cheap look, no decoding)."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, offset)
        for n in range(min(count, 1000)):
            (t,) = struct.unpack_from(order + "H", data, offset + 2 + 12 * n)
            if t == tag:
                return True
    except struct.error:
        return False
    return False


def is_tiff(head: bytes) -> bool:
    return head[:4] in (b"II*\x00", b"MM\x00*")


def image_kind(head: bytes, name: str | None = None) -> str | None:
    """Which reader a file needs: "HEIF", "AVIF", "JXL", "RAW", or None (Pillow's own formats).
    ``head``: the file's first bytes (64 KB finds a DNG's tag); ``name``: its file name, which
    tells the TIFF-based RAWs that carry no DNG tag (NEF, ARW, ...) from plain TIFFs."""
    kind = sniff_extra(head)
    if kind is not None or not is_tiff(head):
        return kind
    ext = os.path.splitext(name or "")[1].lower()
    if ext in RAW_EXTENSIONS or head[8:11] == b"CR\x02" or _tiff_has_tag(head, _DNG_VERSION):
        return "RAW"  # Canon CR2 says so at byte 8
    return None


def read_head(source, n: int = 65536) -> bytes:
    """The first ``n`` bytes of a path or a seekable file object (put back where it was)."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read(n)
    if isinstance(source, io.BytesIO):
        return source.getbuffer()[:n].tobytes()
    pos = source.tell()
    try:
        return source.read(n)
    finally:
        source.seek(pos)


_READY: dict[str, str | None] = {}  # kind -> None when readable, else why not


def ensure_reader(kind: str) -> None:
    """Load the plugin Pillow needs for ``kind`` (once); ``ImageError`` naming the package when it
    is not installed."""
    if kind not in _READY:
        _READY[kind] = _load(kind)
    if _READY[kind] is not None:
        raise ImageError(_READY[kind])


def _missing(kind: str) -> str:
    label = {"HEIF": "a HEIC/HEIF", "AVIF": "an AVIF", "JXL": "a JPEG XL", "RAW": "a camera RAW"}[kind]
    return f"{label} photo, and the package that reads it is not installed (pip install '{PACKAGES[kind]}')"


def _load(kind: str) -> str | None:
    try:
        if kind == "HEIF":
            import pillow_heif

            pillow_heif.register_heif_opener()
        elif kind == "AVIF":
            from PIL import features

            if not features.check("avif"):
                import pillow_heif

                if not hasattr(pillow_heif, "register_avif_opener"):
                    return _missing(kind)
                pillow_heif.register_avif_opener()
        elif kind == "JXL":
            import pillow_jxl  # noqa: F401 - registers the JXL plugin with Pillow
        elif kind == "RAW":
            import rawpy  # noqa: F401
    except ImportError:
        return _missing(kind)
    return None


def register_plugins() -> None:
    """Let ``PIL.Image.open`` read HEIF, AVIF and JPEG XL where their packages are installed (for
    code that opens files with Pillow directly); missing packages are left out silently."""
    for kind in ("HEIF", "AVIF", "JXL"):
        try:
            ensure_reader(kind)
        except ImageError:
            pass
