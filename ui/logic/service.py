"""The UI's logic without Streamlit: queries, search with filters, thumbnails, classification and
index status (feature maps: ``ui.logic.feature_maps``; indexing in a background thread: ``ui.logic.indexing``).
Pages call this; so does benchmarks/ui_latency.py. Pages reach the index only through ``Service``.

Safety rules kept here, in one place:
- uploads are checked (bytes, pixels, format) by ``read_upload`` and stay in memory;
- files are only ever opened through an ``ImageRow`` of the index (``Service.row`` /
  ``Service.row_for_path``), never from a path a user typed or a report named;
- inference goes through one lock per process (the engines are not safe to share between threads).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from indexer import Index
from indexer.search import DEFAULT_ROTATIONS
from indexer.storage import Store, since_text
from indexer.text import TextSearcher
from indexer.video import VideoError, read_frame
from retrieval import ImageError, UserError, load_and_prepare, open_image, top_classes
from retrieval.engines import DEFAULT_ENGINE
from retrieval.text import CONFIG, has_text_model, text_dir

from .query_options import nearest
from .settings import DEFAULT_MAX_PIXELS, THUMB_PX, Settings, message
from .uploads import crop, jpeg_bytes, preview, read_upload


# --- the per-process service ------------------------------------------------------------------
@dataclass
class Query:
    kind: str  # "upload" or "indexed"
    title: str
    vector: np.ndarray
    preview: Image.Image | None = None
    image: Image.Image | None = None  # what was embedded (for classification); None: not loaded
    image_id: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    logits: np.ndarray | None = None  # class scores from the same forward pass as ``vector``
    searcher: Callable | None = None  # a text query: searches the text space (TextSearcher.search_vectors)
    turned: np.ndarray | None = None  # descriptors of the image turned by 90 and 270 (ui.logic.query_options)


@dataclass
class SearchResult:
    hits: list  # SearchHit, filtered
    fetched: int  # how many nearest neighbours were looked at
    exhausted: bool  # fetched every vector of the index
    seconds: float


class Service:
    """The opened index with a lock around inference and small caches; one per process."""

    def __init__(self, index_dir, engine: str = DEFAULT_ENGINE):

        self.index = Index.open(index_dir, engine=engine)
        self.directory = Path(index_dir)
        self.engine = engine
        self.lock = threading.RLock()
        self._net = None
        self._thumbs: OrderedDict = OrderedDict()
        self._thumbs_max = 2000

    def warm(self) -> "Service":
        """Load the model now (not on the first query)."""
        with self.lock:
            self.index.embedder
        return self

    @property
    def spec(self):
        return self.index.spec

    def net(self):
        """The torch network (feature maps, classification), loaded once."""
        with self.lock:
            if self._net is None:
                from retrieval.nets import load_net  # lazy: loads torch only when used

                self._net = load_net(self.spec)
            return self._net

    # rows: the only way to a file on disk
    def lookup_row(self, image_id: int):
        """The index row ``image_id``, or None when it is not (any more) in the index."""
        return self.index.store.rows_by_id([int(image_id)]).get(int(image_id))

    def lookup_path(self, path: str):
        """The index row of exactly ``path``, or None."""
        return self.index.store.row_by_path(path)

    def row(self, image_id: int):
        row = self.lookup_row(image_id)
        if row is None:
            raise UserError(f"image #{image_id} is not in the index (any more)")
        return row

    def row_for_path(self, text: str):
        """The indexed image a user named by path; refuses anything that is not a row of the index."""
        text = (text or "").strip().strip("'\"")
        if not text:
            raise UserError("enter the path of an indexed image")
        row = self.lookup_path(text)
        if row is None:
            row = self.lookup_path(os.path.realpath(os.path.expanduser(text)))
        if row is None:
            raise UserError(f"{text} is not an image of this index (paste a path shown in the results)")
        return row

    def open_row(
        self, row, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
    ) -> Image.Image:
        path = self.index.indexed_file(row.id)  # refuses a row whose path lies outside the index's folders
        try:
            if getattr(row, "source", None) is not None:  # a video frame: decoded from the video
                try:
                    return read_frame(path, row.time_s)
                except VideoError as e:
                    raise ImageError(str(e)) from None
            return open_image(path, max_pixels=max_pixels, draft_size=draft_size)
        except FileNotFoundError:
            raise UserError(f"{row.path} is in the index but no longer on disk (re-run indexing)") from None
        except ImageError as e:
            raise UserError(f"cannot read {row.path}: {e}") from None

    def thumbnail(self, image_id: int, px: int = THUMB_PX) -> bytes | None:
        """JPEG bytes of an indexed image scaled to fit ``px``; None when it can't be read."""
        row = self.lookup_row(image_id)
        if row is None:
            return None
        key = (row.id, row.path, row.mtime_ns, row.size, px)
        with self.lock:
            hit = self._thumbs.get(key)
            if hit is not None:
                self._thumbs.move_to_end(key)
                return hit
        try:
            im = self.open_row(row, draft_size=px)
            im.thumbnail((px, px))
            data = jpeg_bytes(im)
        except (UserError, OSError):
            return None
        with self.lock:
            self._thumbs[key] = data
            while len(self._thumbs) > self._thumbs_max:
                self._thumbs.popitem(last=False)
        return data

    def labels(self) -> list[str]:
        return self.index.store.labels()

    def roots(self) -> list[str]:
        return self.index.store.roots()

    def offline(self) -> dict[str, str]:
        """folder -> "offline since ...: reason" of the folders the last update could not list
        (``indexer.storage.offline``: their entries are kept)."""

        return {
            f: f"offline since {since_text(at)}: {why}"
            for f, (at, why) in self.index.store.offline_folders().items()
        }

    def cameras(self) -> list[str]:
        """The cameras of the indexed photos (from their EXIF), most photos first."""
        return [name for name, _ in self.index.store.capture_summary()["cameras"] if name]

    def errors(self) -> list:
        """The files that could not be indexed (``.path``, ``.reason``)."""
        return self.index.store.errors()

    # queries
    def embed_image(self, im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
        """(descriptor, class scores or None) of ``im`` from one forward pass."""
        with self.lock:
            d, logits = self.index.embed_queries([im], with_logits=True)
        return d[0], (None if logits is None else np.asarray(logits[0], dtype=np.float64))

    def query_from_upload(self, name: str, data: bytes, settings: Settings, box=None) -> Query:
        t0 = time.perf_counter()
        im = crop(read_upload(name, data, settings), box)
        t1 = time.perf_counter()
        vec, logits = self.embed_image(im)
        t2 = time.perf_counter()
        title = name + (" (cropped)" if box else "")
        return Query(
            "upload", title, vec, preview(im), im, None, {"decode": t1 - t0, "model": t2 - t1}, logits
        )

    def query_from_row(self, row, box=None, settings: Settings | None = None) -> Query:
        name = os.path.basename(row.path)
        t0 = time.perf_counter()
        if box is None:  # the stored vector: no decoding, no model
            vec = self.index.vector(row.id)
            return Query(
                "indexed",
                name,
                vec,
                None,
                None,
                row.id,
                {"decode": 0.0, "model": 0.0, "lookup": time.perf_counter() - t0},
            )
        im = crop(self.open_row(row, max_pixels=(settings or Settings(None)).max_pixels), box)
        t1 = time.perf_counter()
        vec, logits = self.embed_image(im)
        t2 = time.perf_counter()
        return Query(
            "indexed",
            name + " (cropped)",
            vec,
            preview(im),
            im,
            row.id,
            {"decode": t1 - t0, "model": t2 - t1},
            logits,
        )

    # search by words (INDEX/text from vgg-retrieval text-train)
    def has_text_search(self) -> bool:

        return has_text_model(self.directory)

    def query_from_text(self, text: str) -> Query:
        """A query by words; the text model is reloaded when text-train has replaced it."""

        t0 = time.perf_counter()
        with self.lock:
            try:
                stamp = (text_dir(self.directory) / CONFIG).stat().st_mtime_ns
            except OSError:
                stamp = None
            cached = getattr(self, "_text_searcher", None)
            if cached is None or cached[0] != stamp:
                self._text_searcher = (stamp, TextSearcher(self.index))
            searcher = self._text_searcher[1]
        vec = searcher.embed_texts([text])[0]
        return Query(
            "text",
            f"\u201c{searcher.check_query(text)}\u201d",
            vec,
            timings={"text model": time.perf_counter() - t0},
            searcher=searcher.search_vectors,
        )

    def search(
        self,
        query: Query,
        want: int = 24,
        threshold: float = -1.0,
        labels=(),
        roots=(),
        max_fetch: int = 5000,
        qe: int | None = None,
        rotations: bool = DEFAULT_ROTATIONS,
        capture=None,
    ) -> SearchResult:
        """Nearest neighbours (alpha-QE over the top ``qe``, None: the default; ``rotations``: the
        query's turns too; ``ui.logic.query_options``), then the filters (``capture``: a
        ``results.CaptureFilter``); fetches more neighbours while filters leave fewer than ``want``
        and the threshold still allows more."""

        total = self.index.count
        labels, roots = set(labels or ()), [r.rstrip(os.sep) + os.sep for r in (roots or ())]
        capture = capture if capture is not None and capture.active else None
        filtered = bool(labels or roots or capture)
        k = min(total, max(want * (8 if filtered else 2), 64))
        t0 = time.perf_counter()
        while True:
            raw = nearest(self, query, k, qe, rotations) if k else []
            hits = [
                h
                for h in raw
                if h.score >= threshold
                and (not labels or h.label in labels)
                and (not roots or any(h.path.startswith(r) for r in roots))
                and (capture is None or capture.accepts(h))
            ]
            exhausted = k >= total
            below = bool(raw) and raw[-1].score < threshold
            if len(hits) >= want or exhausted or below or k >= max_fetch:
                break
            k = min(total, max_fetch, k * 4)
        return SearchResult(hits, k, exhausted, time.perf_counter() - t0)

    # classification
    def logits(self, im: Image.Image) -> np.ndarray | None:
        """Class logits of ``im`` when the index's model carries a classifier head, else None (the
        exported model then has a ``logits`` output next to ``descriptor``)."""

        p = load_and_prepare(im, self.spec.input_geometry)
        images, sizes = p.array[None], np.array([p.valid], dtype=np.int64)
        with self.lock:
            emb = self.index.embedder
            if getattr(emb, "has_logits", False):
                return np.asarray(emb.logits_batch(images, sizes), dtype=np.float64)[0]
        return None

    def classify(self, query: Query, k: int = 5) -> tuple[list[tuple[str, float]] | None, str]:
        """(top-k (class, probability), "") or (None, a note saying why there is no classification) from
        the model's own head; the index's folder classes and the words the pages use for both:
        ``ui.logic.classes``."""
        names = tuple(self.spec.class_names)
        if not names:
            return None, (
                "This index's model has no classifier (its model lists no classes), so the query "
                "is not classified. Search works the same."
            )
        logits = query.logits  # from the search's own forward pass, when the query was embedded
        if logits is None and query.image_id is not None and query.image is None:
            logits = self.logits(self.open_row(self.row(query.image_id)))  # a stored vector: run the model
        if logits is None:
            return None, (
                f"This model names {len(names)} classes but exposes no class scores (logits), "
                f"so the query is not classified."
            )
        if len(logits) != len(names):
            return (
                None,
                f"The model gives {len(logits)} class scores for {len(names)} class names; not shown.",
            )
        return top_classes(logits, names, k)[0], ""

    # status
    def info(self) -> dict:
        store = self.index.store

        with store.session() as s:
            meta = {
                k: Store.get_meta(s, k) for k in ("updated_at", "created_at", "vectors_file", "generation")
            }
        try:
            v = self.index.vectors_info()
            kind = f"{v['type']}, {v['count']:,} vectors x {v['dim']} dims"
        except Exception as e:  # shown, not fatal
            kind = f"unreadable ({message(e)})"
        return {
            "count": self.index.count,
            "errors": len(self.errors()),
            "model": self.spec.describe(),
            "engine": self.engine,
            "index_type": kind,
            "size_on_disk": dir_size(self.directory),
            "updated_at": meta["updated_at"],
            "created_at": meta["created_at"],
            "generation": meta["generation"],
            "roots": self.roots(),
            "offline": self.offline(),
            "directory": str(self.directory),
            "classes": len(self.spec.class_names),
        }


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total
