""" "Find duplicates now" from the UI: ``find_duplicates`` in a background thread, its progress (stage,
photos/s, time left) read by the page, and a cancel that makes the next progress callback raise
(``find_duplicates`` stops there; nothing is written). Nothing here imports Streamlit."""

from __future__ import annotations

import time

from indexer import Index
from indexer.dedup import find_duplicates

from .jobs import BackgroundJob
from .service import message

STAGES = {
    "search": "similarity search",
    "layouts": "turned copies (layouts)",
    "qualities": "keeper order (file qualities)",
    "features": "photo features",
    "verify": "verifying pairs",
    "similar": "similar shots",
}


class DedupCancelled(Exception):
    """Raised from the progress callback to stop the run."""


class DedupJob(BackgroundJob):
    """One ``find_duplicates`` run over the index at ``index_dir`` (its own connection to it) with
    ``options`` (those of ``find_duplicates``)."""

    def __init__(self, index_dir, **options):
        self.index_dir, self.options = index_dir, options
        self.stage, self.done, self.total = "starting", 0, 0
        self.started = self.stage_started = time.monotonic()
        self.report = None
        self.error: str | None = None
        self.seconds = 0.0
        super().__init__(f"dedup {index_dir}")

    def _progress(self, stage: str, done: int, total: int) -> None:
        if self._cancel.is_set():
            raise DedupCancelled()
        if stage != self.stage:
            self.stage, self.stage_started = stage, time.monotonic()
        self.done, self.total = done, total

    def rate(self) -> float:
        """Photos per second in the current stage (0 until measurable)."""
        secs = time.monotonic() - self.stage_started
        return self.done / secs if self.done and secs > 0.2 else 0.0

    def text(self) -> str:
        """The progress line: stage, photos done, photos/s and the time left."""
        if self.cancelled:
            return "cancelling (nothing is written)..."
        if not self.total:
            return "reading the index..."
        rate = self.rate()
        if self.done >= self.total:  # the stage is over; the next has not reported yet
            return (
                f"{STAGES.get(self.stage, self.stage)}: all {self.total:,} photos"
                + (f" · {rate:,.0f} photos/s" if rate else "")
                + " · going on..."
            )
        left = (self.total - self.done) / rate if rate else None
        return (
            f"{STAGES.get(self.stage, self.stage)}: {self.done:,} / {self.total:,} photos"
            + (f" · {rate:,.0f} photos/s" if rate else "")
            + (f" · about {_duration(left)} left" if left is not None else "")
        )

    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0

    def _run(self) -> None:
        try:
            self._progress("starting", 0, 0)
            with Index.open(self.index_dir) as idx:
                self.report = find_duplicates(idx, progress=self._progress, **self.options)
        except DedupCancelled:
            self.error = None
        except Exception as e:  # noqa: BLE001 - shown in the page
            self.error = message(e)
        finally:
            self.seconds = time.monotonic() - self.started


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
