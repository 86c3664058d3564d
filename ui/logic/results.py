"""Search results as the page shows them (no Streamlit here): the query's own file taken out of the
list (shown as "this image" next to the query instead of as its own first result), exact copies
(same sha256) collapsed into one card with a count, and one page of cards."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from indexer.search import DEFAULT_ROTATIONS

SAME_IMAGE_SCORE = 0.9999  # an upload that scores this high with the same pixel size is that image
MAX_WANT = 5000


@dataclass(frozen=True)
class Identity:
    """What makes a result "the query itself": its index row, its bytes' sha256, its pixel size."""

    image_id: int | None = None
    sha256: str = ""
    pixels: tuple[int, int] | None = None  # an upload's width x height (the re-encoded-copy rule)


def upload_identity(data: bytes, pixels: tuple[int, int], cropped: bool) -> Identity | None:
    """An uploaded file's identity; None for a crop (a region is not the same image)."""
    return None if cropped else Identity(sha256=hashlib.sha256(bytes(data)).hexdigest(), pixels=tuple(pixels))


def row_identity(row, cropped: bool) -> Identity | None:
    """An indexed image used as the query (by id or path)."""
    return None if cropped or row is None else Identity(image_id=int(row.id), sha256=row.sha256 or "")


def is_query(hit, ident: Identity | None) -> bool:
    if ident is None:
        return False
    if ident.image_id is not None and hit.id == ident.image_id:
        return True
    if ident.sha256 and hit.sha256 == ident.sha256 and hit.source is None:
        return True
    return (
        ident.pixels is not None and hit.score >= SAME_IMAGE_SCORE and (hit.width, hit.height) == ident.pixels
    )


@dataclass(frozen=True)
class CaptureFilter:
    """The Search page's capture filters: a date range (``YYYY-MM-DD``, both ends included; either
    may be open) and cameras (as ``Capture.camera`` names them). A photo without a capture date or
    camera is left out by the filter that needs it."""

    first: str | None = None
    last: str | None = None
    cameras: tuple = ()

    @property
    def active(self) -> bool:
        return bool(self.first or self.last or self.cameras)

    def accepts(self, hit) -> bool:
        c = getattr(hit, "capture", None)
        if self.cameras and (c is None or c.camera not in self.cameras):
            return False
        if self.first or self.last:
            day = (c.captured or "")[:10] if c is not None else ""
            if not day or (self.first and day < self.first) or (self.last and day > self.last):
                return False
        return True


@dataclass
class Card:
    hit: object  # the best-scoring SearchHit of its group
    copies: list = field(default_factory=list)  # the other hits with the same bytes (exact copies)

    @property
    def ids(self) -> list[int]:
        return [self.hit.id] + [c.id for c in self.copies]

    @property
    def copies_note(self) -> str:
        n = len(self.copies)
        return f"+{n} cop{'y' if n == 1 else 'ies'}" if n else ""


def copy_key(hit):
    """Hits with the same key are byte copies; video frames (one file, many moments) never are."""
    return ("sha", hit.sha256) if hit.sha256 and hit.source is None else ("id", hit.id)


def arrange(hits, ident: Identity | None = None) -> tuple[Card | None, list[Card]]:
    """(the query's own file with its copies, or None; the other results, exact copies collapsed
    into the best-scoring one), in score order."""
    own: Card | None = None
    cards: list[Card] = []
    by_key: dict = {}
    for hit in hits:
        if is_query(hit, ident) or (own is not None and copy_key(hit) == copy_key(own.hit)):
            if own is None:
                own = Card(hit)
            else:
                own.copies.append(hit)
            continue
        key = copy_key(hit)
        if key in by_key:
            by_key[key].copies.append(hit)
        else:
            by_key[key] = Card(hit)
            cards.append(by_key[key])
    return own, cards


@dataclass
class Page:
    own: Card | None
    cards: list[Card]  # this page's cards
    page: int
    has_next: bool
    fetched: int
    seconds: float


def page_of_results(
    svc,
    query,
    ident: Identity | None,
    page: int,
    per: int,
    threshold: float = -1.0,
    labels=(),
    roots=(),
    qe: int | None = None,
    rotations: bool = DEFAULT_ROTATIONS,
    capture: CaptureFilter | None = None,
) -> Page:
    """Page ``page`` (1-based) of ``per`` cards; asks the index for more neighbours while collapsed
    copies and the query's own file leave too few cards and the index has more. ``qe``/``rotations``:
    the query options, ``capture`` the date/camera filter (``Service.search``)."""
    page, per = max(1, int(page)), max(1, int(per))
    need = page * per + 1  # one more than the page: is there a next page?
    want, seconds = need + 1, 0.0
    while True:
        result = svc.search(
            query,
            want=want,
            threshold=threshold,
            labels=labels,
            roots=roots,
            qe=qe,
            rotations=rotations,
            capture=capture,
        )
        seconds += result.seconds
        own, cards = arrange(result.hits, ident)
        if len(cards) >= need or result.exhausted or len(result.hits) < want or want >= MAX_WANT:
            break
        want = min(MAX_WANT, want * 2)
    start = (page - 1) * per
    return Page(own, cards[start : start + per], page, len(cards) > start + per, result.fetched, seconds)
