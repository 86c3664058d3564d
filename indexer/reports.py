"""What the index API returns: search hits, and the reports of an update and of a check."""
from __future__ import annotations

from dataclasses import dataclass, field

from indexer.video.keyframes import format_time


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
        return (f"{self.added} added, {self.updated} updated, {self.removed} removed, {self.unchanged} unchanged, "
                f"{len(self.errors)} errors ({self.embedded} embedded in {self.seconds:.1f}s, "
                f"{self.images_per_second:.1f} img/s)"
                + (f"; {len(self.offline)} folders offline (their entries kept)" if self.offline else ""))


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    retry: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems
