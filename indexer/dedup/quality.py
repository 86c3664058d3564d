"""Which file of a group is the original: what a file says about itself, read cheaply.

For the files that are candidates for some group only (not the whole collection): colour or grey
(a grey copy is never kept over its colour original), how much of it is picture (a copy with a
frame, border or screenshot canvas has more pixels, not more picture), the JPEG quality estimated from the
quantisation tables (a re-compressed copy has coarser tables), and whether the camera's metadata
(EXIF date or camera model) survived (copies made by apps and web pages usually lose it), and
whether it is a camera's own format (RAW, HEIC) rather than a JPEG exported from it. Pixels,
size and modification time come from the index. ``keeper_reason`` says in words why the keeper won.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from retrieval.formats import image_kind, read_head, register_plugins
from retrieval.preprocess import border_box

# the IJG (libjpeg) base luminance table, in natural order: quality Q scales it by 5000/Q (Q < 50)
# or 200 - 2Q (Q >= 50) percent, which is how almost every encoder (PIL, cameras, phones) writes it
_IJG_LUMA = np.array(
    [
        16,
        11,
        10,
        16,
        24,
        40,
        51,
        61,
        12,
        12,
        14,
        19,
        26,
        58,
        60,
        55,
        14,
        13,
        16,
        24,
        40,
        57,
        69,
        56,
        14,
        17,
        22,
        29,
        51,
        87,
        80,
        62,
        18,
        22,
        37,
        56,
        68,
        109,
        103,
        77,
        24,
        35,
        55,
        64,
        81,
        104,
        113,
        92,
        49,
        64,
        78,
        87,
        103,
        121,
        120,
        101,
        72,
        92,
        95,
        98,
        112,
        100,
        103,
        99,
    ],
    dtype=np.float64,
)
LOSSLESS = 100  # what a PNG, TIFF... counts as
_EXIF_DATE, _EXIF_MAKE, _EXIF_MODEL, _EXIF_IFD, _EXIF_DATE_ORIGINAL = 0x0132, 0x010F, 0x0110, 0x8769, 0x9003
GREY_SPREAD = 3.0  # mean |R-G| + |G-B| (0-255 levels) under which a picture counts as greyscale


@dataclass(frozen=True)
class FileQuality:
    colour: bool = True
    jpeg_quality: int = LOSSLESS  # estimated; LOSSLESS for formats without lossy compression
    metadata: bool = False  # EXIF capture date or camera make/model present
    readable: bool = True
    content: float = 1.0  # share of the pixels that are picture, not a uniform border/frame/canvas
    original: bool = False  # a camera's own format (RAW, HEIC/HEIF), not a JPEG made from it


def jpeg_quality(quantization: dict | None) -> int | None:
    """Estimated IJG quality (1-100) from PIL's ``im.quantization`` (table 0, luminance)."""
    if not quantization or 0 not in quantization:
        return None
    table = np.asarray(list(quantization[0]), dtype=np.float64)[:64]
    if len(table) != 64:
        return None
    # Pillow lists the table in natural (row-major) order, like _IJG_LUMA; entries clip at 255
    # (quality < ~10 reads a little high), which keeps the order of qualities
    ratio = float(np.mean(table / _IJG_LUMA)) * 100
    q = (200 - ratio) / 2 if ratio <= 100 else 5000 / ratio
    return int(min(100, max(1, round(q))))


def read_quality(path: str) -> FileQuality:
    """The file's colour, estimated JPEG quality and metadata (a small decode; header for the rest)."""
    from PIL import Image

    try:
        register_plugins()  # HEIF, AVIF, JPEG XL open with Pillow like the rest
        original = image_kind(read_head(path), path) in ("RAW", "HEIF")
    except OSError:
        return FileQuality(readable=False)
    try:
        with Image.open(path) as im:
            q = jpeg_quality(getattr(im, "quantization", None)) if im.format == "JPEG" else None
            exif = im.getexif()
            meta = bool(
                exif.get(_EXIF_MAKE)
                or exif.get(_EXIF_MODEL)
                or exif.get(_EXIF_DATE)
                or exif.get_ifd(_EXIF_IFD).get(_EXIF_DATE_ORIGINAL)
            )
            colour = False if im.mode in ("1", "L", "LA", "I", "I;16", "F") else None
            im.draft("RGB", (256, 256))
            small = im.convert("RGB")
            small.thumbnail((256, 256))
            box = border_box(small)
            content = _content_share(small, box)
            if colour is None:
                colour = chroma_spread(small.crop(_inset(box or (0, 0, *small.size)))) >= GREY_SPREAD
    except Exception:  # noqa: BLE001 - unreadable now: ranks last among its equals, apply will refuse it anyway
        return FileQuality(readable=False, original=original)  # a RAW Pillow can't open: still the original
    return FileQuality(
        colour=colour,
        jpeg_quality=LOSSLESS if q is None else q,
        metadata=meta,
        content=content,
        original=original,
    )


def chroma_spread(im) -> float:
    """How far ``im`` (RGB) is from one tone curve: the mean |R-G| + |G-B| (0-255 levels) left
    after taking out what the brightness explains. A grey picture has none, and neither has a
    toned one (sepia, duotone: its colour follows its brightness); a colour photo has plenty.
    Measured on the picture only (the caller trims a frame or canvas, whose colour says nothing)."""
    a = np.asarray(im.convert("RGB").resize((64, 64)), dtype=np.float32).reshape(-1, 3)
    chroma = np.stack([a[:, 0] - a[:, 1], a[:, 1] - a[:, 2]], axis=1)
    level = np.minimum((a.mean(axis=1) / 16).astype(np.int64), 15)  # 16 brightness bins
    left = 0.0
    for b in np.unique(level):
        c = chroma[level == b]
        left += float(np.abs(c - np.median(c, axis=0)).sum())
    return left / len(a)


def _inset(box: tuple) -> tuple:
    """``box`` less 4% of its side on each edge (+1 px): trimming leaves a line of a frame's colour."""
    left, top, right, bottom = box
    dx, dy = 1 + (right - left) // 25, 1 + (bottom - top) // 25
    return (left + dx, top + dy, max(left + dx + 1, right - dx), max(top + dy + 1, bottom - dy))


def _content_share(im, box=None) -> float:
    """Share of ``im`` left after cutting uniform border bands (``box``: ``border_box(im)``)."""
    if box is None:
        return 1.0
    return (box[2] - box[0]) * (box[3] - box[1]) / float(im.width * im.height)


def read_qualities(
    paths: list[str], workers: int = 4, cache=None, progress=None
) -> tuple[list[FileQuality], dict]:
    """read_quality for each path (threads; ``cache``: a ``factcache.FactCache`` holding them for
    files unchanged since a run before; ``progress(done, total)`` over the files read), and stats:
    ``quality_seconds``, ``quality_cached``."""
    from .factcache import cached_map

    return cached_map(read_quality, paths, cache, "quality", _CODEC, workers, progress)


def _version() -> str:
    """The code a stored quality was made by: this module, the format sniffing and border trimming
    it uses, and Pillow's version (its decoder)."""
    import PIL

    import retrieval.formats as formats
    import retrieval.preprocess as preprocess

    from .factcache import code_version

    return code_version(__file__, preprocess.__file__, formats.__file__) + "-" + PIL.__version__


def _encode(q: FileQuality) -> bytes | None:
    return json.dumps(asdict(q)).encode() if q.readable else None  # unreadable now: read again next time


def _decode(data: bytes) -> FileQuality:
    return FileQuality(**json.loads(data))


_CODEC = (_version, _encode, _decode)


ALIKE = "first indexed (the files are alike)"  # keeper_reason when no criterion decided


def keeper_reason(
    keeper, keeper_q: FileQuality, others: list, others_q: list[FileQuality], policy: str
) -> str:
    """Why ``keeper`` (a report Member) is kept rather than ``others``: the first criterion of the
    keeper order on which it beats each of them, in words."""
    reasons = []
    for m, q in zip(others, others_q):
        reasons.append(_why(keeper, keeper_q, m, q, policy))
    seen = list(dict.fromkeys(r for r in reasons if r))
    return "; ".join(seen) if seen else ALIKE


PICTURE_TOLERANCE = 1.30  # picture areas within 30% count as equal (border trimming is not exact)


def _picture(m, q: FileQuality) -> float:
    return float(m.pixels) * q.content


def compare(k, kq: FileQuality, m, mq: FileQuality, policy: str = "resolution") -> tuple[int, str]:
    """(-1 when ``k`` is the better keeper, 1 when ``m`` is, 0 for a tie; the deciding criterion in
    words, for the keeper side). ``k``, ``m``: anything with width, height, pixels, size, mtime_ns."""
    pk, pm = _picture(k, kq), _picture(m, mq)
    less_compressed = (kq.jpeg_quality > mq.jpeg_quality + 2) - (mq.jpeg_quality > kq.jpeg_quality + 2)
    compression = f"less compression (JPEG quality ~{kq.jpeg_quality} against ~{mq.jpeg_quality})"
    steps = {
        "colour": (int(kq.colour) - int(mq.colour), "colour (the copy is greyscale)"),
        "pixels": (
            (pk > PICTURE_TOLERANCE * pm) - (pm > PICTURE_TOLERANCE * pk),
            f"more picture pixels ({_size(k, kq)} against {_size(m, mq)})",
        ),
        "original": (
            int(kq.original) - int(mq.original),
            "the original format (RAW or HEIC, not a JPEG made from it)",
        ),
        "content": (
            (kq.content > mq.content + 0.1) - (mq.content > kq.content + 0.1),
            f"no border or frame added (the copy is {mq.content:.0%} picture)",
        ),
        "quality": (less_compressed, compression),
        # the same between two JPEGs only (a lossless file can be made from a JPEG)
        "jpeg": ((max(kq.jpeg_quality, mq.jpeg_quality) < LOSSLESS) * less_compressed, compression),
        "metadata": (int(kq.metadata) - int(mq.metadata), "camera metadata present (EXIF date/camera)"),
        "size": ((k.size > m.size) - (m.size > k.size), "larger file"),
        "oldest": ((k.mtime_ns < m.mtime_ns) - (m.mtime_ns < k.mtime_ns), "older file"),
        "newest": ((k.mtime_ns > m.mtime_ns) - (m.mtime_ns > k.mtime_ns), "newer file"),
    }
    for step in ORDER.get(policy, ()):
        won, text = steps[step]
        if won:
            return -won, text
    return 0, ""


ORDER = {
    # between files alike on everything above, the older one: a copy is made after its original,
    # while a larger file at the same pixels and JPEG quality is as often added noise or grain
    # (dedup_eval's generated set, 50 originals: a blur + noise copy and turned and mirrored copies
    # re-encoded at the original's quality were kept over their originals on file size)
    "resolution": ("colour", "pixels", "original", "content", "quality", "metadata", "oldest", "size"),
    "size": ("size", "pixels", "oldest"),
    "oldest": ("oldest", "pixels", "size"),
    "newest": ("newest", "pixels", "size"),
    # which of two files is the other's source, by what they say of themselves, pixels aside (a
    # grey file is no colour file's source; a re-encoded copy is rarely less compressed; the camera
    # format and metadata survive in the original): ``is_source``
    "source": ("colour", "original", "jpeg", "metadata", "oldest"),
}


def is_source(rows, qualities: list, a: int, b: int) -> bool:
    """Do the files at rows ``a`` and ``b`` (index rows, ``qualities`` as for ``best_of``) say
    that ``a`` is ``b``'s source (``ORDER["source"]``)? ``keeper.rekeep`` asks it where the
    pixels cannot tell (a soft photo and its own downscale hold the same detail)."""
    qa, qb = qualities[a] or FileQuality(), qualities[b] or FileQuality()
    return compare(_File(rows[a]), qa, _File(rows[b]), qb, "source")[0] < 0


class _File:
    def __init__(self, row):
        self.width, self.height, self.size, self.mtime_ns = int(row[3]), int(row[4]), int(row[5]), int(row[6])
        self.pixels = self.width * self.height


def best_of(nodes: list, rank, rows, qualities: list, policy: str, preferred=None) -> int:
    """The best keeper among ``nodes`` (row numbers), each compared with the best so far (``compare``;
    ties by ``rank``): the keeper order's tolerances are not transitive, so a sorted order can put
    a file after one it beats."""
    best = nodes[0]
    for n in nodes[1:]:
        c = 0
        if preferred is not None and preferred[n] != preferred[best]:
            c = -1 if preferred[n] else 1
        elif policy == "resolution":
            c = compare(
                _File(rows[n]),
                qualities[n] or FileQuality(),
                _File(rows[best]),
                qualities[best] or FileQuality(),
            )[0]
        if c < 0 or (c == 0 and rank[n] < rank[best]):
            best = n
    return best


def refine_rank(rank: np.ndarray, rows, qualities: list, policy: str, preferred=None) -> np.ndarray:
    """``rank`` with the files that have a FileQuality re-ordered among their own positions by
    ``compare`` (preferred folders first; then ties keep their order). ``rows``: the index rows
    (id, path, sha256, width, height, size, mtime_ns)."""
    import functools

    nodes = [n for n, q in enumerate(qualities) if q is not None]
    if policy != "resolution" or len(nodes) < 2:
        return rank
    files = {n: _File(rows[n]) for n in nodes}

    def cmp(a, b):
        if preferred is not None and preferred[a] != preferred[b]:
            return -1 if preferred[a] else 1
        c = compare(files[a], qualities[a], files[b], qualities[b], policy)[0]
        return c if c else (-1 if rank[a] < rank[b] else 1)

    slots = sorted(rank[nodes].tolist())
    out = rank.copy()
    for slot, n in zip(slots, sorted(nodes, key=functools.cmp_to_key(cmp))):
        out[n] = slot
    return out


def _size(m, q: FileQuality) -> str:
    return f"{m.width}x{m.height}" + (f", {q.content:.0%} of it picture" if q.content < 0.98 else "")


def _why(k, kq: FileQuality, m, mq: FileQuality, policy: str) -> str:
    better, text = compare(k, kq, m, mq, policy)
    return text if better < 0 else ""  # "" when the keeper won for another reason (e.g. --prefer)
