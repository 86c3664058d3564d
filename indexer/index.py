"""An image index: a folder holding the metadata database, the FAISS vectors and the model.

    DIR/index.sqlite          metadata (images, errors, roots, meta) - or any SQLAlchemy URL
    DIR/vectors-<gen>.faiss   the vectors of the committed generation, ids = images.id
    DIR/model/                the exported model that made them (ONNX, OpenVINO IR, model.json)
    DIR/index.lock            held by the one process allowed to update the index

Python API::

    from indexer import Index
    index = Index.open("my-index")
    for hit in index.search("query.jpg", k=5):
        print(hit.score, hit.path)
"""
from __future__ import annotations

import fcntl
import os
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError

from retrieval.engines import DEFAULT_ENGINE, load_embedder
from retrieval.errors import ModelMismatchError, UserError
from retrieval.export import SIDECAR, export_model, read_sidecar
from retrieval.preprocess import DEFAULT_MAX_PIXELS, ImageError, load_and_prepare
from retrieval.spec import ModelSpec

from . import vectors
from .decode import Decoded, decode_items
from .faults import crash_point
from .scan import Entry, classify, walk
from .store import ErrorRow, ImageRow, Store, new_index_id, public_url, read_link, write_link

DB_FILE = "index.sqlite"
MODEL_DIR = "model"
LOCK_FILE = "index.lock"
FORMAT = "vgg-retrieval-index"
FORMAT_VERSION = 1


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

    @property
    def where(self) -> str:
        """What to show: the photo's path, or ``video.mp4 @ 01:12.5`` for a video frame."""
        if self.source is None:
            return self.path
        from .video import format_time

        return f"{self.source} @ {format_time(self.time_s)}"

    def as_json(self) -> dict:
        out = {"path": self.path, "score": round(float(self.score), 6), "id": int(self.id)}
        if self.source is not None:  # a video frame: the video and the moment (photos keep 3 keys)
            out.update(time_s=self.time_s, source=self.source)
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

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.added} added, {self.updated} updated, {self.removed} removed, {self.unchanged} unchanged, "
                f"{len(self.errors)} errors ({self.embedded} embedded in {self.seconds:.1f}s, "
                f"{self.images_per_second:.1f} img/s)")


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    retry: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def _db_url(directory: Path, db_url: str | None) -> str:
    """The metadata database: ``db_url``, else the one ``DIR/database.json`` remembers, else DIR/index.sqlite."""
    if db_url:
        return db_url
    link = read_link(directory)
    return link["url"] if link else f"sqlite:///{directory / DB_FILE}"


class Index:
    def __init__(self, directory: Path, store: Store, spec: ModelSpec, engine: str = DEFAULT_ENGINE,
                 batch_size: int = 8, threads: int | None = None, net=None, ray=None):
        if engine == "ray" or ray is not None:  # decode + embed on Ray (indexer.ray_engine.RayOptions)
            from .ray_engine import RayOptions

            ray = (ray or RayOptions()).validated()
            engine = ray.model_engine if engine == "ray" else engine
        self.ray = ray
        self.directory = directory
        self.store = store
        self.spec = spec
        self.engine_name = engine
        self.batch_size = batch_size
        self.threads = threads
        self._net = net
        self._embedder = None
        self._vectors = None
        self._vectors_file: str | None = None

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def exists(cls, directory, db_url: str | None = None) -> bool:
        directory = Path(directory)
        if read_link(directory) is not None:
            return True  # the folder names its database (unreachable or not: open() says which)
        if db_url:
            store = Store(db_url, create=False)  # UserError when unreachable
            try:
                if store.meta("format") != FORMAT:
                    return False
                name = store.meta("vectors_file")
                if name and (directory / name).is_file() and not (directory / DB_FILE).exists():
                    return True  # this folder's index, made before folders remembered their database
                made_for = store.meta("directory")
                raise UserError(f"the database {store.shown} already holds another index"
                                f"{f' (made for {made_for})' if made_for else ''}: give each index its own "
                                f"database, or its own schema with ?schema=NAME in the URL")
            finally:
                store.close()
        return (directory / DB_FILE).is_file()

    @classmethod
    def check_can_create(cls, directory, db_url: str | None = None) -> None:
        """UserError unless a new index may be made at ``directory`` (a new or empty folder)."""
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise UserError(f"index path exists and is not a folder: {directory}")
        if cls.exists(directory, db_url):
            raise UserError(f"an index already exists at {directory}")
        if directory.is_dir() and any(directory.iterdir()):
            raise UserError(f"{directory} is not empty and is not an index: choose a new or empty --index folder")

    @classmethod
    def create(cls, directory, spec: ModelSpec, net=None, db_url: str | None = None, model_dir=None,
               index_type: str = "auto", index_options: dict | None = None, **options) -> "Index":
        """A new, empty index for ``spec``. The model goes into DIR/model: copied from ``model_dir``
        (an export of the same model), else exported from ``net`` (else built from the weights).
        ``index_type``: auto, flat, hnsw, ivf, ivfpq or a FAISS factory string (docs/index-types.md);
        ``index_options``: flat_limit, pq_limit, train_min, nprobe, ef_search overrides."""
        directory = Path(directory)
        cls.check_can_create(directory, db_url)
        vector_config = vectors.make_config(index_type, spec.descriptor_dim, **(index_options or {}))
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK):
            raise UserError(f"index folder is not writable: {directory}")
        # a database elsewhere: its problems (tables in the way, permissions) before anything is written here
        store = Store(db_url) if db_url else None
        try:
            if model_dir is not None:
                copy_model(model_dir, directory / MODEL_DIR, spec)
            else:
                if net is None:
                    from retrieval.builder import load_net

                    net = load_net(spec)
                export_model(spec, net, directory / MODEL_DIR)
        except BaseException:
            if store is not None:
                store.close()
            raise
        store = store or Store(_db_url(directory, db_url))
        index_id = new_index_id()
        with store.session.begin() as s:
            Store.set_meta(s, "format", FORMAT)
            Store.set_meta(s, "index_id", index_id)
            Store.set_meta(s, "directory", str(directory.resolve()))
            Store.set_meta(s, "format_version", FORMAT_VERSION)
            Store.set_meta(s, "spec", spec.to_dict())
            Store.set_meta(s, "model_id", spec.model_id)
            Store.set_meta(s, "generation", 0)
            name, digest = vectors.save(vectors.empty_index(vector_config, spec.descriptor_dim), directory, 0)
            Store.set_meta(s, "vectors_index", vector_config.to_meta())
            Store.set_meta(s, "vectors_file", name)
            Store.set_meta(s, "vectors_sha256", digest)
            Store.set_meta(s, "count", 0)
            Store.set_meta(s, "created_at", time.time())
            Store.set_meta(s, "updated_at", time.time())
        if db_url:  # after the commit: a folder never names a database that does not hold its index
            write_link(directory, db_url, index_id)
        return cls(directory, store, spec, net=net, **options)

    @classmethod
    def open(cls, directory, engine: str = DEFAULT_ENGINE, db_url: str | None = None, batch_size: int = 8,
             threads: int | None = None, ray=None, net=None) -> "Index":
        """The index at ``directory``. ``net``: an already-built torch net of the index's model, used by
        the torch engine and to re-export a missing model/ (else it is built from the weights)."""
        directory = Path(directory)
        if not directory.is_dir() or not cls.exists(directory, db_url):
            raise UserError(f"no index at {directory} (create one with: vgg-retrieval index FOLDER --index {directory})")
        link = read_link(directory)
        store = Store(_db_url(directory, db_url), create=False)  # UserError when unreachable
        try:
            fmt = store.meta("format")
            spec_dict = store.meta("spec")
            index_id = store.meta("index_id")
        except Exception as e:
            store.close()
            raise UserError(f"cannot read the index database of {directory}: {str(e).splitlines()[0]}") from None
        if fmt != FORMAT or not spec_dict:
            store.close()
            if link is not None:
                raise UserError(f"the database {store.shown} named by {directory} holds no vgg-retrieval index")
            raise UserError(f"{directory} is not a vgg-retrieval index")
        if link is not None and link.get("index_id") and link["index_id"] != index_id:
            store.close()
            raise UserError(f"the database {store.shown} holds another index than {directory} "
                            f"(made for {store.meta('directory') or '?'})")
        if db_url and (link is None or link.get("url") != public_url(db_url)):
            try:  # remember it (an index made before folders did, or a database that moved)
                write_link(directory, db_url, index_id)
            except OSError:
                pass  # a read-only index folder: --db must be given each time
        return cls(directory, store, ModelSpec.from_dict(spec_dict), engine=engine, batch_size=batch_size,
                   threads=threads, net=net, ray=ray)

    def close(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
        self.store.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def require_model(self, spec: ModelSpec) -> None:
        """Refuse to mix descriptors: ``spec`` must be the model this index was built with."""
        if spec.model_id != self.spec.model_id:
            raise ModelMismatchError(
                f"index {self.directory} was built with {self.spec.describe()}; refusing to mix in descriptors "
                f"of {spec.describe()} (use another --index folder, or the same model options)")

    # --- model and vectors --------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.directory / MODEL_DIR

    @property
    def embedder(self):
        if self._embedder is None:
            if self.engine_name != "torch":
                self._ensure_exported_model()
            self._embedder = load_embedder(self.engine_name, self.spec, self.model_dir, net=self._net,
                                           batch_size=self.batch_size, threads=self.threads)
        return self._embedder

    def _ensure_exported_model(self) -> None:
        ok = (self.model_dir / SIDECAR).is_file()
        if ok:
            try:
                ok = read_sidecar(self.model_dir)[0].model_id == self.spec.model_id
            except Exception:
                ok = False
        if not ok:  # missing or damaged: rebuild it from the weights the spec names
            from retrieval.builder import load_net

            self._net = self._net or load_net(self.spec)
            export_model(self.spec, self._net, self.model_dir)

    def _load_vectors(self, force: bool = False):
        for _ in range(5):
            name = self.store.meta("vectors_file")
            if not force and self._vectors is not None and name == self._vectors_file:
                return self._vectors
            path = self.directory / name
            try:
                self._vectors = vectors.load(path)
                self._vectors_file = name
                return self._vectors
            except RuntimeError:
                if path.exists():
                    raise UserError(f"the vectors file {path} cannot be read (run vgg-retrieval check)") from None
                time.sleep(0.2)  # an update replaced it between reading the meta and the file
        raise UserError(f"the vectors file named by the index is missing: {self.directory / name}")

    @property
    def count(self) -> int:
        return self.store.count()

    def vectors_info(self) -> dict:
        """What the committed vectors file is: FAISS type, vector count, dimensions, file and size."""
        import faiss

        v = self._load_vectors()
        inner = faiss.downcast_index(v.index) if hasattr(v, "index") else v
        kind = f"{type(v).__name__}({type(inner).__name__})" if inner is not v else type(v).__name__
        path = self.directory / self._vectors_file
        cfg = vectors.IndexConfig.from_meta(self.store.meta("vectors_index"))
        return {"type": kind, "count": int(v.ntotal), "dim": int(v.d), "file": self._vectors_file,
                "bytes": path.stat().st_size if path.exists() else 0, "index_type": cfg.type,
                "factory": cfg.factory, "exact": vectors.is_exact(v), "nprobe": cfg.nprobe,
                "ef_search": cfg.ef_search}

    # --- search -------------------------------------------------------------------------------
    def embed_queries(self, queries: Iterable, with_logits: bool = False):
        """Descriptors of query images (paths, bytes or PIL images); with ``with_logits``, also the
        class scores from the same forward pass (None when the model has no classifier)."""
        prepared = []
        for q in queries:
            name = q if isinstance(q, (str, os.PathLike)) else "query image"
            if isinstance(q, (str, os.PathLike)):
                p = Path(q)
                if not p.exists():
                    raise UserError(f"query image not found: {q}")
                if not p.is_file():
                    raise UserError(f"query is not a file: {q}")
            try:
                prepared.append(load_and_prepare(q, self.spec.input_size))
            except ImageError as e:
                raise UserError(f"cannot use {name}: {e}") from None
        if not prepared:
            empty = np.zeros((0, self.spec.descriptor_dim), np.float32)
            return (empty, None) if with_logits else empty
        images = np.stack([p.array for p in prepared])
        sizes = np.array([p.valid for p in prepared], dtype=np.int64)
        if with_logits:
            return self.embedder.embed_with_logits(images, sizes)
        return self.embedder.embed_batch(images, sizes)

    def search(self, query, k: int = 10) -> list[SearchHit]:
        """The ``k`` indexed images most similar to ``query`` (a path, bytes or a PIL image)."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: Iterable, k: int = 10) -> list[list[SearchHit]]:
        return self.search_vectors(self.embed_queries(queries), k)

    def search_and_classify(self, queries: Iterable, k: int = 10, top: int = 5, nprobe: int | None = None,
                            ef_search: int | None = None):
        """(hits per query, top classes per query or None): one forward pass gives both."""
        d, logits = self.embed_queries(queries, with_logits=True)
        classes = None
        if logits is not None and self.spec.class_names:
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            names = self.spec.class_names
            classes = [[(names[j], float(row[j])) for j in np.argsort(-row)[:top]] for row in p]
        return self.search_vectors(d, k, nprobe=nprobe, ef_search=ef_search), classes

    def search_vectors(self, queries: np.ndarray, k: int = 10, nprobe: int | None = None,
                       ef_search: int | None = None) -> list[list[SearchHit]]:
        """Hits for descriptor rows; ``nprobe`` (IVF lists visited) and ``ef_search`` (HNSW breadth)
        override the index's stored defaults for this call: higher = better recall, slower."""
        if k < 1:
            raise UserError(f"top-k must be at least 1 (got {k})")
        for name, value in (("nprobe", nprobe), ("ef-search", ef_search)):
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1 (got {value})")
        index = self._load_vectors()
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.spec.descriptor_dim)
        k = min(k, index.ntotal)
        if k == 0:
            return [[] for _ in range(len(queries))]
        cfg = vectors.IndexConfig.from_meta(self.store.meta("vectors_index"))
        scores, ids = vectors.search(index, queries, k, nprobe or cfg.nprobe, ef_search or cfg.ef_search,
                                     gpu_index=self._gpu_index(index))
        return self.hits(scores, ids)

    def hits(self, scores: np.ndarray, ids: np.ndarray) -> list[list[SearchHit]]:
        """FAISS results ([Q, k] scores and image ids) as SearchHits, one database read for all."""
        rows = self.store.rows_by_id({int(i) for i in ids.ravel() if i >= 0})
        results = []
        for qs, qi in zip(scores, ids):
            hits = []
            for score, i in zip(qs, qi):
                row = rows.get(int(i))
                if row is None:
                    continue  # removed by an update since these vectors were loaded
                hits.append(SearchHit(row.id, row.path, float(score), row.label, row.width, row.height,
                                      row.size, row.format, row.sha256, row.time_s, row.source))
            results.append(hits)
        return results

    def indexed_file(self, image: int | str) -> Path:
        """The path of an indexed image (by id or path), only if the images table has it and it lies
        inside one of the index's folders: what the UI and the dedup actions may read or move. A path
        planted in the database that points elsewhere (``/etc/passwd``, ``root/../..``) is refused.
        A video frame's row gives the video file (its ``time_s`` says where)."""
        row = self.store.rows_by_id([image]).get(int(image)) if isinstance(image, (int, np.integer)) \
            else self.store.row_by_path(str(image))
        if row is None:
            raise UserError(f"not an indexed image: {image}")
        path = os.path.normpath(os.path.abspath(row.source or row.path))
        for root in self.store.roots():
            root = os.path.normpath(os.path.abspath(root))
            if path.startswith(root.rstrip(os.sep) + os.sep):
                return Path(path)
        raise UserError(f"refusing to read {row.path}: it is outside the index's folders")

    def _gpu_index(self, index):
        """A GPU copy of the loaded vectors for search, made once per generation (None without a GPU)."""
        if getattr(self, "_gpu_for", None) is not index:
            self._gpu_for, self._gpu_copy = index, vectors.gpu_copy(index)
        return self._gpu_copy

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the committed generation: int64 [N] and float32 [N, dim], same order.
        Exact for flat, hnsw and IVF-Flat; decoded (approximate) for SQ/PQ codes (ivf, ivfpq)."""
        index = self._load_vectors()
        return vectors.ids_of(index), vectors.all_vectors(index)

    def vector(self, image_id: int) -> np.ndarray:
        return self._load_vectors().reconstruct(int(image_id))

    # --- updating -----------------------------------------------------------------------------
    @contextmanager
    def write_lock(self) -> Iterator[None]:
        path = self.directory / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot lock the index {self.directory}: {e.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                raise UserError(f"index {self.directory} is being updated by another process (pid {holder}); "
                                f"wait for it to finish") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock; a killed process releases it too

    def update(self, folders: Iterable[str | os.PathLike] = (), workers: int | None = None,
               progress: bool | Callable[[int, int], object] = True, commit_every: int = 1000,
               commit_seconds: float = 120.0, max_pixels: int = DEFAULT_MAX_PIXELS) -> UpdateReport:
        """Bring the index in line with ``folders`` (all known roots when empty): embed new and
        changed images, drop deleted ones, record the files that can't be used. ``progress``: True
        for a progress bar, False for none, or a callable ``progress(done, total)`` called as files
        complete (a video counts once); an exception it raises (a cancel) stops the update, and the
        index keeps its last committed state."""
        roots = []
        for f in folders:
            p = Path(f)
            if not p.exists():
                raise UserError(f"folder not found: {f}")
            if not p.is_dir():
                raise UserError(f"not a folder: {f}")
            roots.append(os.path.realpath(p))
        if not roots:
            roots = self.store.roots()
            if not roots:
                raise UserError(f"index {self.directory} has no folders yet: name at least one FOLDER")
        if not os.access(self.directory, os.W_OK) or (
                (self.directory / DB_FILE).exists() and not os.access(self.directory / DB_FILE, os.W_OK)):
            raise UserError(f"index folder {self.directory} is read-only: it can be searched, not updated")
        if workers is None:
            workers = min(4, max(1, (os.cpu_count() or 2) // 2))
        t0 = time.perf_counter()
        with self.write_lock():
            # files of saves that never committed (a crash): the database does not name them
            vectors.remove_stale_files(self.directory, keep=self.store.meta("vectors_file"))
            self.store.add_roots(roots)
            report = UpdateReport()
            todo, problems, delete_paths, clear_errors = self._plan(roots, report)
            crash_point("after_scan")
            self._load_vectors(force=True)
            self._run(todo, problems, delete_paths, clear_errors, report, workers, progress, commit_every,
                      commit_seconds, max_pixels)
        report.seconds = time.perf_counter() - t0
        return report

    def forget(self, paths: Iterable[str]) -> UpdateReport:
        """Drop these files' rows and vectors (one crash-safe commit), without scanning any folder:
        for files moved away by the program itself (dedup apply)."""
        t0 = time.perf_counter()
        report = UpdateReport()
        with self.write_lock():
            vectors.remove_stale_files(self.directory, keep=self.store.meta("vectors_file"))
            with self.store.session() as s:
                known = [str(p) for p in paths if s.scalar(select(ImageRow.id).where(ImageRow.path == str(p)))]
            if known:
                self._load_vectors(force=True)
                self._commit([], [], {}, known, [], report)
        report.seconds = time.perf_counter() - t0
        return report

    def _plan(self, roots: list[str], report: UpdateReport):
        known: dict[str, tuple[int, int]] = {}
        known_errors: dict[str, tuple[int, int]] = {}
        frames: dict[str, list[str]] = {}  # video file -> its frame rows (the video is known as one file)
        images: dict[str, None] = {}
        with self.store.session() as s:
            for root in roots:
                prefix = root.rstrip(os.sep) + os.sep
                for path, size, mtime, source in s.execute(
                        select(ImageRow.path, ImageRow.size, ImageRow.mtime_ns, ImageRow.source)
                        .where(ImageRow.path.startswith(prefix, autoescape=True))):
                    if source is None:
                        images[path] = None
                    else:
                        frames.setdefault(source, []).append(path)
                        path = source
                    known[path] = (size, mtime)
                for path, size, mtime in s.execute(select(ErrorRow.path, ErrorRow.size, ErrorRow.mtime_ns)
                                                   .where(ErrorRow.path.startswith(prefix, autoescape=True))):
                    known_errors[path] = (size, mtime)
        todo: list[Entry] = []
        problems: list[Entry] = []
        keep: set[str] = set()
        seen: set[str] = set()
        for root in roots:
            for e in walk(root):
                if e.path in seen:
                    continue  # nested roots
                seen.add(e.path)
                if e.problem is None and known.get(e.path) == (e.size, e.mtime_ns):
                    keep.add(e.path)
                    report.unchanged += len(frames.get(e.path, ())) or 1
                    continue
                if e.problem is None and known_errors.get(e.path) == (e.size, e.mtime_ns):
                    keep.add(e.path)  # same bad file as last time: its error row stays
                    continue
                if e.problem is None:
                    c = classify(e)
                    if c is None:
                        continue
                    e = c
                if e.problem:
                    problems.append(e)
                else:
                    todo.append(e)
        todo_paths = {e.path for e in todo if e.kind == "image"}
        # gone or unusable files; a changed video's old frames too (re-sampled frames at the same time
        # reuse their row); a file that changed kind (image <-> video) loses its old rows
        delete_paths = [p for p in images if p not in keep and p not in todo_paths]
        delete_paths += [f for v, paths in frames.items() if v not in keep for f in paths]
        clear_errors = [p for p in known_errors if p not in keep]
        return todo, problems, delete_paths, clear_errors

    def _run(self, todo, problems, delete_paths, clear_errors, report, workers, progress, commit_every,
             commit_seconds, max_pixels) -> None:
        pending: list[tuple[Decoded, np.ndarray]] = []
        pending_errors: list[tuple[str, str, int, int]] = [(e.path, e.root, e.size, e.mtime_ns) for e in problems]
        for e in problems:
            report.errors.append((e.path, e.problem))
        problem_reason = {e.path: e.problem for e in problems}
        deletes = list(delete_paths)
        last_commit = time.monotonic()

        def commit() -> None:
            nonlocal pending, pending_errors, deletes, last_commit
            self._commit(pending, pending_errors, problem_reason, deletes, clear_errors, report)
            pending, pending_errors, deletes = [], [], []
            clear_errors.clear()
            last_commit = time.monotonic()

        jobs = [(e.path, e.root, self.spec.input_size, max_pixels) for e in todo]
        batch: list[Decoded] = []
        bar = _progress_bar(progress, len(jobs))
        embedder = self.embedder if jobs and self.ray is None else None

        def flush() -> None:
            if not batch:
                return
            vecs = embedder.embed_batch(np.stack([d.array for d in batch]),
                                        np.array([d.valid for d in batch], dtype=np.int64))
            for d, v in zip(batch, vecs):
                d.array = None
                pending.append((d, v))
            report.embedded += len(batch)
            bar.update(sum(not d.more for d in batch))  # files: a video's frames count once
            crash_point("after_embed")
            batch.clear()

        try:
            if self.ray is not None:  # decoded and embedded on Ray: (item without pixels, vector)
                stream = self._ray_stream(jobs)
            else:
                stream = ((d, None) for d in _decode_stream(jobs, workers, ahead=max(8, 4 * self.batch_size)))
            for d, vec in stream:
                if d.problem:
                    pending_errors.append((d.path, d.root, d.size, d.mtime_ns))
                    problem_reason[d.path] = d.problem
                    report.errors.append((d.path, d.problem))
                    bar.update(1)
                elif vec is not None:
                    pending.append((d, vec))
                    report.embedded += 1
                    bar.update(0 if d.more else 1)
                    if report.embedded % self.batch_size == 0:
                        crash_point("after_embed")
                else:
                    batch.append(d)
                    if len(batch) >= self.batch_size:
                        flush()
                if not d.more and (len(pending) >= commit_every
                                   or (pending and time.monotonic() - last_commit > commit_seconds)):
                    if any(b.source is not None for b in batch):
                        flush()  # all of a video's frames, or none, in a commit
                    commit()
            flush()
        finally:
            bar.close()
        if pending or pending_errors or deletes or clear_errors:
            commit()

    def _ray_stream(self, jobs):
        from .ray_engine import ray_embedded

        if jobs:
            self._ensure_exported_model()
        return ray_embedded(jobs, self.spec, self.model_dir, self.ray, batch_size=self.batch_size,
                            threads=self.threads)

    def _commit(self, added, errors, reasons, delete_paths, clear_errors, report) -> None:
        """One atomic step: rows and a new vectors file, or neither."""
        index = self._vectors
        new_file = None
        try:
            with self.store.session.begin() as s:
                generation = int(Store.get_meta(s, "generation", 0)) + 1
                paths_touched = [d.path for d, _ in added] + [e[0] for e in errors] + list(delete_paths)
                existing = {}
                for i in range(0, len(paths_touched), 500):
                    for row in s.scalars(select(ImageRow).where(ImageRow.path.in_(paths_touched[i:i + 500]))):
                        existing[row.path] = row
                # files gone, or now unusable: drop their rows and vectors
                readded = {d.path for d, _ in added}  # a changed video's frames at the same time: updated
                gone = [existing[p] for p in list(delete_paths) + [e[0] for e in errors]
                        if p in existing and p not in readded]
                drop = [r.id for r in gone]  # out of the vectors below, with the replaced ones
                for r in gone:
                    s.delete(r)
                report.removed += len([p for p in delete_paths if p not in readded])
                clear = list(clear_errors) + [d.path for d, _ in added] + [e[0] for e in errors]
                for i in range(0, len(clear), 500):
                    s.execute(delete(ErrorRow).where(ErrorRow.path.in_(clear[i:i + 500])))
                now = time.time()
                rows = []
                for d, _ in added:
                    row = existing.get(d.path)
                    if row is None:
                        row = ImageRow(path=d.path)
                        s.add(row)
                        report.added += 1
                    else:
                        report.updated += 1
                    row.root = d.root
                    row.label = _label(d.path, d.root)
                    row.sha256, row.size, row.mtime_ns = d.sha256, d.size, d.mtime_ns
                    row.width, row.height, row.format, row.indexed_at = d.width, d.height, d.format[:16], now
                    row.source, row.time_s = d.source, d.time_s  # video frames; None for photos
                    rows.append(row)
                for path, root, size, mtime in errors:
                    s.add(ErrorRow(path=path, root=root, reason=reasons.get(path, "unknown"), size=size,
                                   mtime_ns=mtime, at=now))
                s.flush()
                ids = np.array([r.id for r in rows], dtype=np.int64)
                index = vectors.without(index, drop + ids.tolist())  # updated files keep their id, get a new vector
                if rows:
                    index.add_with_ids(np.stack([v for _, v in added]).astype(np.float32), ids)
                index = self._adapt_vectors(s, index)
                new_file, digest = vectors.save(index, self.directory, generation)
                Store.set_meta(s, "generation", generation)
                Store.set_meta(s, "vectors_file", new_file)
                Store.set_meta(s, "vectors_sha256", digest)
                Store.set_meta(s, "count", int(index.ntotal))
                Store.set_meta(s, "updated_at", now)
        except BaseException as e:
            if new_file and not self._names_vectors_file(new_file, e):
                (self.directory / new_file).unlink(missing_ok=True)
            self._vectors = None  # back to the committed state, reloaded when next needed
            if isinstance(e, (OSError, SQLAlchemyError)):
                reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:200]
                raise UserError(f"cannot save the index in {self.directory} ({reason}); "
                                f"it keeps its last saved state") from None
            raise
        crash_point("after_commit")
        self._vectors, self._vectors_file = index, new_file
        vectors.remove_stale_files(self.directory, keep=new_file)

    def _names_vectors_file(self, name: str, error: BaseException) -> bool:
        """Whether the database names ``name`` as its vectors file after ``error`` ended a commit: a
        commit can go through and still raise (a signal handled as the transaction closes, e.g.
        ``index --watch`` stopped by SIGTERM). A database error from SQLite means the transaction
        did not commit (a failed COMMIT is rolled back, if need be from its journal), e.g. on a full
        disk, where the file should go. Otherwise the database is asked; when unsure, True: an
        orphan file is removed by the next writer, while a file the database names must never be
        deleted (PostgreSQL: a connection lost during COMMIT leaves the outcome unknown here)."""
        if isinstance(error, SQLAlchemyError) and self.store.backend == "sqlite":
            return False
        try:
            return self.store.meta("vectors_file") == name
        except BaseException:  # noqa: BLE001 - database away, or another signal: keep the file
            return True

    @staticmethod
    def _adapt_vectors(s, index):
        """The index type re-decided for the new size (flat -> IVF once there is enough to train, a
        bigger IVF after growth): a converted index and its meta, in this commit's transaction."""
        cfg = vectors.IndexConfig.from_meta(Store.get_meta(s, "vectors_index"))
        index, new_cfg = vectors.adapt(index, cfg)
        if new_cfg is not cfg:
            Store.set_meta(s, "vectors_index", new_cfg.to_meta())
        return index

    # --- checking -----------------------------------------------------------------------------
    def check(self, deep: int = 0) -> CheckReport:
        """Prove the database and the vectors file agree; ``deep``: also re-embed that many files."""
        for _ in range(5):
            rep = self._check_once(deep)
            if not rep.retry:
                return rep
            time.sleep(0.1)  # an update committed a new generation while we read: look again
        return rep

    def _check_once(self, deep: int) -> CheckReport:
        rep = CheckReport()
        with self.store.session() as s, s.begin():
            name = Store.get_meta(s, "vectors_file")
            digest = Store.get_meta(s, "vectors_sha256")
            count = Store.get_meta(s, "count")
            model_id = Store.get_meta(s, "model_id")
            db_ids = np.array(sorted(s.scalars(select(ImageRow.id))), dtype=np.int64)
        if model_id != self.spec.model_id:
            rep.problems.append(f"model id in meta ({model_id}) does not match the stored spec ({self.spec.model_id})")
        path = self.directory / (name or "")
        try:
            actual = vectors.file_sha256(path) if name else None
            index = vectors.load(path) if name else None
        except (OSError, RuntimeError) as e:
            if self.store.meta("vectors_file") != name:
                rep.retry = True
                return rep
            if not path.is_file():
                rep.problems.append(f"vectors file {name!r} named by the database is missing")
            else:
                rep.problems.append(f"{name} cannot be read: {str(e).strip().splitlines()[0][:200]}")
            return rep
        if index is None:
            rep.problems.append("the database names no vectors file")
            return rep
        if self.store.meta("vectors_file") != name:
            rep.retry = True
            return rep
        if actual != digest:
            rep.problems.append(f"{name} has sha256 {actual[:12]}, the database recorded {str(digest)[:12]}")
        if index.d != self.spec.descriptor_dim:
            rep.problems.append(f"vectors have {index.d} dimensions, the model gives {self.spec.descriptor_dim}")
        if index.ntotal != len(db_ids) or count != len(db_ids):
            rep.problems.append(f"{index.ntotal} vectors but {len(db_ids)} image rows (meta count {count})")
        fids = np.sort(vectors.ids_of(index))
        if len(np.unique(fids)) != len(fids):
            rep.problems.append("the vectors file holds duplicate ids")
        missing = np.setdiff1d(db_ids, fids)
        extra = np.setdiff1d(fids, db_ids)
        if len(missing):
            rep.problems.append(f"{len(missing)} image rows have no vector (e.g. id {missing[0]})")
        if len(extra):
            rep.problems.append(f"{len(extra)} vectors have no image row (e.g. id {extra[0]})")
        if index.ntotal:
            norms = np.linalg.norm(vectors.all_vectors(index), axis=1)
            if vectors.is_exact(index):
                bad = int((np.abs(norms - 1) > 1e-3).sum())
            else:  # SQ/PQ codes decode approximately: unnormalised vectors still stand out
                bad = len(norms) if abs(float(np.median(norms)) - 1) > 0.5 else int((norms > 1.5).sum())
            if bad:
                rep.problems.append(f"{bad} vectors are not unit length")
        if (self.model_dir / SIDECAR).is_file():
            try:
                if read_sidecar(self.model_dir)[0].model_id != self.spec.model_id:
                    rep.problems.append("the exported model in model/ is not the index's model")
            except Exception as e:
                rep.problems.append(f"model/{SIDECAR} cannot be read: {e}")
        else:
            rep.notes.append("model/ is missing; it will be re-exported from the weights when needed")
        orphans = [p.name for p in self.directory.glob("vectors-*.faiss*") if p.name != name]
        if orphans:
            rep.notes.append(f"leftover files from an interrupted update (removed by the next update): {', '.join(orphans)}")
        if deep and index.ntotal and not rep.problems:
            self._deep_check(index, deep, rep)
        return rep

    def _deep_check(self, index, n: int, rep: CheckReport) -> None:
        rows = list(self.store.rows_by_id(vectors.ids_of(index)[:n]).values())
        present = [r for r in rows if Path(r.source or r.path).is_file()]
        if len(present) < len(rows):
            rep.notes.append(f"{len(rows) - len(present)} of {len(rows)} sampled files no longer exist (run index to update)")
        if not present:
            return
        from .video import VideoError, read_frame

        try:  # a video frame is decoded again from its video, at its time
            fresh = self.embedder.embed([read_frame(r.source, r.time_s) if r.source else r.path for r in present])
        except (ImageError, VideoError) as e:
            rep.notes.append(f"could not re-embed the sample: {e}")
            return
        for r, v in zip(present, fresh):
            cos = float(np.dot(index.reconstruct(int(r.id)), v))
            if cos < (0.999 if vectors.is_exact(index) else 0.9):  # SQ/PQ codes decode approximately
                rep.problems.append(f"stored vector of {r.path} differs from a fresh embedding (cosine {cos:.4f})")


def copy_model(src, dst: Path, spec: ModelSpec | None = None) -> ModelSpec:
    """Copy an exported model folder (checked: its sidecar must describe ``spec``)."""
    import shutil

    src = Path(src)
    try:
        stored, _ = read_sidecar(src)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{src} is not an exported model folder ({e})") from None
    if spec is not None and stored.model_id != spec.model_id:
        raise ModelMismatchError(f"model folder {src} holds {stored.describe()}, not {spec.describe()}")
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)
    return stored


def _label(path: str, root: str) -> str:
    parent = os.path.dirname(path)
    if os.path.normpath(parent) == os.path.normpath(root):
        return os.path.basename(os.path.normpath(root))
    return os.path.basename(parent)


class _CallbackProgress:
    """tqdm's ``update``/``close`` over a ``progress(done, total)`` callable."""

    def __init__(self, callback: Callable[[int, int], object], total: int):
        self.callback, self.total, self.done = callback, total, 0

    def update(self, n: int = 1) -> None:
        if n:
            self.done += n
            self.callback(self.done, self.total)

    def close(self) -> None:
        pass


def _progress_bar(progress, total: int):
    if callable(progress):
        return _CallbackProgress(progress, total)
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="indexing", disable=not progress or not total,
                dynamic_ncols=True, smoothing=0.1)


def _decode_stream(jobs: list, workers: int, ahead: int) -> Iterator[Decoded]:
    """Decoded items (``decode_items``) in job order, ``workers`` processes decoding at most ``ahead`` files ahead of
    the consumer (bounded memory), overlapping with the caller's inference."""
    if workers <= 0 or len(jobs) <= 1:
        for job in jobs:
            yield from decode_items(job)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    it = iter(jobs)
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    try:
        queue = deque((job, pool.submit(decode_items, job)) for job in islice(it, ahead))
        while queue:
            job, fut = queue.popleft()
            try:
                result = fut.result()
            except BrokenProcessPool:  # a decoder crashed the worker: blame this file, carry on
                result = [Decoded(job[0], job[1], problem="the image decoder crashed on this file")]
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(workers, mp_context=ctx)
                queue = deque((j, pool.submit(decode_items, j)) for j, _ in queue)
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(decode_items, nxt)))
            yield from result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
