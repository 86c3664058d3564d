"""What the index API returns: search hits, and the reports of an update and of a check."""

from __future__ import annotations

from dataclasses import dataclass, field

from indexer.video.keyframes import format_time


@dataclass(frozen=True)
class Capture:
    """A photo's capture metadata as read from its EXIF when it was indexed (None: not known).
    ``captured``: ISO 8601 local time, with sub-seconds and UTC offset when the file has them."""

    captured: str | None = None
    make: str | None = None
    model: str | None = None
    lens: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    width: int = 0  # pixel size of the picture (upright), from the index's row
    height: int = 0
    # what tells one exposure from another (``indexer.dedup.capture``), as the file writes it:
    # DateTimeOriginal, SubSecTimeOriginal, OffsetTimeOriginal, BodySerialNumber, ImageUniqueID and
    # XMP's xmpMM:DocumentID / OriginalDocumentID; ``evidence``: they were read (False: an index
    # made before they were kept, whose files dedup reads again)
    time_original: str | None = None
    subsec: str | None = None
    time_offset: str | None = None
    body_serial: str | None = None
    unique_id: str | None = None
    document_id: str | None = None
    original_document_id: str | None = None
    evidence: bool = False

    @property
    def camera(self) -> str | None:
        """ "Apple iPhone 6": make and model, the make once (models often repeat it)."""
        make, model = self.make or "", self.model or ""
        if make and model.lower().startswith(make.split()[0].lower()):
            make = ""
        return " ".join(x for x in (make, model) if x) or None

    @property
    def empty(self) -> bool:
        return not any((self.captured, self.make, self.model, self.lens, self.gps_lat is not None))

    def as_json(self) -> dict:
        """The known fields only: captured, camera, make, model, lens, gps ([lat, lon]), pixels ([w, h])."""
        out = {
            "captured": self.captured,
            "camera": self.camera,
            "make": self.make,
            "model": self.model,
            "lens": self.lens,
        }
        out = {k: v for k, v in out.items() if v}
        if self.gps_lat is not None and self.gps_lon is not None:
            out["gps"] = [self.gps_lat, self.gps_lon]
        if self.width and self.height:
            out["pixels"] = [self.width, self.height]
        return out


@dataclass
class SearchHit:
    id: int
    path: str
    score: float
    label: str = ""
    width: int = 0
    height: int = 0
    size: int = 0
    format: str = ""
    sha256: str = ""
    time_s: float | None = None  # a video frame: its time in ``source``, seconds (None for photos)
    source: str | None = None  # a video frame: the video file (``path`` is then VIDEO#t=SECONDS)
    offline: bool = False  # in a folder the last update could not list (indexer.storage.offline)
    capture: Capture | None = None  # a photo's capture metadata, when the index has it

    @property
    def where(self) -> str:
        """What to show: the photo's path, or ``video.mp4 @ 01:12.5`` for a video frame."""
        if self.source is None:
            return self.path

        return f"{self.source} @ {format_time(self.time_s)}"

    def as_json(self) -> dict:
        out = {"path": self.path, "score": round(float(self.score), 6), "id": int(self.id)}
        if self.source is not None:  # a video frame: the video and the moment (photos keep 3 keys)
            out.update(time_s=self.time_s, source=self.source)
        if self.offline:
            out["offline"] = True
        if self.capture is not None:  # "captured" and "camera" when the photo's EXIF has them
            out.update({k: v for k, v in self.capture.as_json().items() if k in ("captured", "camera")})
        return out


@dataclass
class UpdateReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) found in this run
    embedded: int = 0
    seconds: float = 0.0
    offline: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason): not listed, entries kept
    notes: list[str] = field(default_factory=list)  # e.g. an interrupted dedup apply finished first

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (
            f"{self.added} added, {self.updated} updated, {self.removed} removed, {self.unchanged} unchanged, "
            f"{len(self.errors)} errors ({self.embedded} embedded in {self.seconds:.1f}s, "
            f"{self.images_per_second:.1f} img/s)"
            + (f"; {len(self.offline)} folders offline (their entries kept)" if self.offline else "")
        )


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    retry: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems
