"""Indexing from the UI: ``Index.update`` in a background thread, its progress read by the page.

The page starts an ``IndexingJob`` and polls ``done``/``total`` while the thread runs; ``cancel()``
makes the next progress callback raise, which stops the update with the index at its last commit
(``Index.update``'s contract). Nothing here imports Streamlit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from indexer import EngineChoice, open_or_create
from indexer.classify import after_update
from indexer.update import default_workers
from retrieval import UserError
from retrieval.engines import DEFAULT_ENGINE

from .jobs import BackgroundJob
from .service import message


class IndexingCancelled(Exception):
    """Raised from the progress callback to stop the update."""


@dataclass
class Outcome:
    ok: bool
    message: str
    note: str = ""  # the index's classifier after the update (indexer.classify.index_classes.after_update)


def checked_folder(text: str) -> str:
    """A folder a user typed (quotes and ``~`` allowed), or a UserError saying why it can't be indexed."""
    folder = os.path.expanduser((text or "").strip().strip("'\""))
    if not folder:
        raise UserError("enter a folder to index")
    if not os.path.isdir(folder):
        raise UserError(f"{'not a folder' if os.path.exists(folder) else 'folder not found'}: {folder}")
    return folder


def open_for_update(index_dir, folders=(), engine: str = DEFAULT_ENGINE, progress=None):
    """The index at ``index_dir``, created for ``folders`` with the default model (as
    ``vgg-retrieval index`` does: INT8 calibrated on the folders' photos, ``progress(done, total)``)
    when there is none yet."""

    return open_or_create(index_dir, folders, run=EngineChoice(engine), calibration_progress=progress)


class IndexingJob(BackgroundJob):
    """One update of ``folders`` (empty: every folder the index knows) in a daemon thread. Decoding
    runs in at least one process of its own (``workers`` None: ``default_workers()``, but never 0,
    which the CLI takes on 2 cores): a file that crashes the image decoder must not take the web
    server down with it."""

    def __init__(
        self, index_dir, folders: list[str], engine: str = DEFAULT_ENGINE, workers: int | None = None
    ):

        workers = max(1, default_workers()) if workers is None else workers
        self.index_dir, self.folders, self.engine, self.workers = (
            Path(index_dir),
            list(folders),
            engine,
            workers,
        )
        self.done = 0
        self.total = 0  # 0 until the scan is over and the first file completes
        self.stage = "indexing"  # "calibrating" while a new index's INT8 model is made
        self.outcome: Outcome | None = None
        super().__init__(f"indexing {self.index_dir}")

    @property
    def cancelling(self) -> bool:
        return self._cancel.is_set() and self.running

    def _progress(self, done: int, total: int, stage: str = "indexing") -> None:
        if self._cancel.is_set():
            raise IndexingCancelled()
        self.done, self.total, self.stage = done, total, stage

    def _calibrating(self, done: int, total: int) -> None:
        self._progress(done, total, "calibrating")

    def _run(self) -> None:
        try:
            with open_for_update(self.index_dir, self.folders, self.engine, self._calibrating) as idx:
                try:
                    self._progress(0, 0)
                    report = idx.update(self.folders, workers=self.workers, progress=self._progress)
                except IndexingCancelled:
                    self.outcome = Outcome(
                        False, f"Indexing stopped: the index keeps its last commit ({idx.count:,} images)."
                    )
                    return

                self.outcome = Outcome(
                    True,
                    f"{self.index_dir}: {report.summary()}; {idx.count} images in the index",
                    after_update(idx, report) or "",
                )
        except IndexingCancelled:  # while the new index's model was being made
            self.outcome = Outcome(
                False,
                "Indexing stopped before the new index was ready; starting again makes it "
                "from the beginning.",
            )
        except Exception as e:  # noqa: BLE001 - shown in the page
            self.outcome = Outcome(False, f"Indexing failed: {message(e)}")
