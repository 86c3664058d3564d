"""An image index: a folder holding the metadata database, the FAISS vectors and the model
(the layout: ``indexer.storage.folder``).

More: docs/design-notes.md (``indexer.index``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from indexer.search.index_methods import IndexSearch
from indexer.storage.creating import MIN_CALIBRATION_IMAGES
from indexer.storage.folder import copy_model
from indexer.storage.layout import DB_FILE, FORMAT, FORMAT_VERSION, LOCK_FILE, MODEL_DIR
from indexer.storage.loaded_vectors import CommittedVectors
from indexer.storage.store import Store
from indexer.update.calibration import CALIBRATION_IMAGES, calibration_images
from indexer.update.commit import commit as _commit_step
from indexer.update.ray_embedding import RayOptions
from retrieval.engines import DEFAULT_ENGINE, cpu_runs_bf16, load_embedder
from retrieval.engines.registry import engine_entry
from retrieval.errors import ModelMismatchError
from retrieval.preprocess import DEFAULT_MAX_PIXELS
from retrieval.spec import ModelSpec

from . import checking, vectors
from .reports import CheckReport, SearchHit, UpdateReport
from .search import vector_search as searching
from .storage import folder
from .storage import whitened_vectors as whitened
from .update import updater as updating

__all__ = [
    "Index",
    "SearchHit",
    "UpdateReport",
    "CheckReport",
    "copy_model",
    "DB_FILE",
    "MODEL_DIR",
    "LOCK_FILE",
    "FORMAT",
    "FORMAT_VERSION",
]


class Index(IndexSearch):
    def __init__(
        self,
        directory: Path,
        store: Store,
        spec: ModelSpec,
        engine: str = DEFAULT_ENGINE,
        batch_size: int = 8,
        threads: int | None = None,
        net=None,
        ray=None,
        engine_options: dict | None = None,
    ):
        if (
            engine == "ray" or ray is not None
        ):  # decode + embed on Ray (indexer.update.ray_embedding.RayOptions)
            ray = (ray or RayOptions()).validated()
            engine = ray.model_engine if engine == "ray" else engine
        self.ray = ray
        self.distributor = (
            "local" if ray is None else "ray"
        )  # the indexer.update.embedding strategy of updates
        self.directory = directory
        self.store = store
        self.spec = spec
        self.engine_name = engine
        self.batch_size = batch_size
        self.threads = threads
        self.engine_options = dict(engine_options or {})  # more options of the engine's loader
        self._net = net
        self._embedder = None
        self.committed = CommittedVectors(directory, store)

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def exists(cls, directory, db_url: str | None = None) -> bool:
        return folder.exists(directory, db_url)

    @classmethod
    def check_can_create(cls, directory, db_url: str | None = None) -> None:
        """UserError unless a new index may be made at ``directory`` (a new or empty folder)."""
        folder.check_can_create(directory, db_url)

    @classmethod
    def create(
        cls,
        directory,
        spec: ModelSpec,
        net=None,
        db_url: str | None = None,
        model_dir=None,
        index_type: str = "auto",
        index_options: dict | None = None,
        precision: str = "fp32",
        calibration=None,
        progress=None,
        **options,
    ) -> "Index":
        """A new, empty index for ``spec``. The model goes into DIR/model: copied from ``model_dir``
        (an export of the same model), else exported from ``net`` (else built from the weights).
        ``index_type``: auto, flat, hnsw, ivf, ivfpq or a FAISS factory string (docs/index-types.md);
        ``index_options``: flat_limit, pq_limit, train_min, nprobe, ef_search overrides.
        ``precision`` "int8": the model is quantized (NNCF) on the image paths ``calibration()``
        returns (``indexer.update.calibration.calibration_images``), ``progress(done, total)`` hearing it;
        ``vgg-retrieval index`` does that by default (``indexer.opening``)."""
        directory = Path(directory)
        store, net = folder.create(
            directory,
            spec,
            net,
            db_url,
            model_dir,
            index_type,
            index_options,
            precision,
            calibration,
            progress,
        )
        return cls(directory, store, spec, net=net, **options)

    @classmethod
    def open(
        cls,
        directory,
        engine: str = DEFAULT_ENGINE,
        db_url: str | None = None,
        batch_size: int = 8,
        threads: int | None = None,
        ray=None,
        net=None,
        engine_options: dict | None = None,
    ) -> "Index":
        """The index at ``directory``. ``net``: an already-built torch net of the index's model, used by
        the torch engine and to re-export a missing model/ (else it is built from the weights).
        ``engine_options``: more options of the engine, e.g. ``{"performance": "THROUGHPUT"}`` (OpenVINO's
        throughput mode for indexing, ``retrieval.engines.openvino_engine``)."""
        directory = Path(directory)
        store, spec = folder.open_store(directory, db_url)
        return cls(
            directory,
            store,
            spec,
            engine=engine,
            batch_size=batch_size,
            threads=threads,
            net=net,
            ray=ray,
            engine_options=engine_options,
        )

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
                f"of {spec.describe()} (use another --index folder, or the same model options)"
            )

    # --- model and vectors --------------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.directory / MODEL_DIR

    @property
    def embedder(self):
        if self._embedder is None:
            if engine_entry(self.engine_name).needs_export:
                self.ensure_exported_model()
            options = dict(self.engine_options)
            if self.precision == "bf16" and self.engine_name == "openvino" and cpu_runs_bf16():
                options.setdefault("precision", "bf16")  # the FP32 files, run in bf16 (else at f32)
            self._embedder = load_embedder(
                self.engine_name,
                self.spec,
                self.model_dir,
                net=self._net,
                batch_size=self.batch_size,
                threads=self.threads,
                **options,
            )
        return self._embedder

    @property
    def precision(self) -> str:
        """The precision the index's model was made at: "int8", "fp32" or "bf16" (FP32 files that
        OpenVINO runs in bf16); indexes made before precisions: fp32."""
        return self.store.meta("precision") or "fp32"

    def ensure_exported_model(self) -> None:
        """DIR/model holds this index's export (rebuilt from the net or the weights when missing or
        damaged, at the index's precision: INT8 is calibrated again on indexed photos, or on what
        its folders hold, video keyframes included, when it has few photos)."""

        def calibration() -> list:
            photos = self.store.sample_image_paths(CALIBRATION_IMAGES)
            if len(photos) >= MIN_CALIBRATION_IMAGES:
                return photos
            return calibration_images(self.store.roots(), size=self.spec.input_size) or photos

        self._net = folder.ensure_exported_model(
            self.spec, self.model_dir, self._net, self.precision, calibration
        )

    @property
    def count(self) -> int:
        return self.store.count()

    def vectors_info(self) -> dict:
        """What the committed vectors file is: FAISS type, vector count, dimensions, file and size."""
        return self.committed.info()

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the committed generation: int64 [N] and float32 [N, dim], same order.
        Exact for flat, hnsw and IVF-Flat; decoded (approximate) for SQ/PQ codes (ivf, ivfpq)."""
        index = self.committed.load()
        return vectors.ids_of(index), vectors.all_vectors(index)

    @property
    def whitening(self):
        """The whitening searches apply to stored vectors and queries alike (``indexer.vectors.whitening.Whitening``),
        or None. ``all_vectors``, ``vector`` and ``embed_queries`` always give raw descriptors."""
        return self.committed.whitened.load()[0]

    def whiten(self, force: bool = False, **options):
        """Fit (again) the whitening on the stored vectors, in one commit; None (nothing changed)
        when the collection is too small for one to help, unless ``force`` (``indexer.storage.whitened_vectors``)."""
        return whitened.fit_index(self, force, **options)

    def remove_whitening(self) -> bool:
        """Searches use the raw vectors again; False when there was no whitening."""
        return whitened.remove(self)

    def vector(self, image_id: int) -> np.ndarray:
        return self.committed.load().reconstruct(int(image_id))

    def _load_vectors(self, force: bool = False):
        return self.committed.load(force)

    # --- search -------------------------------------------------------------------------------

    def capture_metadata(self, images: Iterable[int | str]) -> dict:
        """The capture metadata stored for these images (ids, or indexed paths), as
        ``indexer.reports.Capture`` (capture time, camera make/model, lens, GPS) keyed as given;
        images without any (not photos, or indexed before it was kept) are left out."""
        images = list(images)
        ids = [i for i in images if isinstance(i, (int, np.integer))]
        paths = [str(p) for p in images if not isinstance(p, (int, np.integer))]
        out = self.store.captures(ids) if ids else {}
        out.update(self.store.captures(paths, by="path") if paths else {})
        return {k: v for k, v in out.items() if not v.empty}

    def indexed_file(self, image: int | str) -> Path:
        """The path of an indexed image (by id or path), only if the images table has it and it lies
        inside one of the index's folders: what the UI and the dedup actions may read or move. A path
        planted in the database that points elsewhere (``/etc/passwd``, ``root/../..``) is refused.
        A video frame's row gives the video file (its ``time_s`` says where)."""
        return searching.indexed_file(self.store, image)

    # --- updating -----------------------------------------------------------------------------
    def write_lock(self):
        """A context manager holding the index's write lock (UserError when another process has it)."""
        return folder.write_lock(self.directory)

    def update(
        self,
        folders: Iterable[str | os.PathLike] = (),
        workers: int | None = None,
        progress: bool | Callable[[int, int], object] = True,
        commit_every: int = 1000,
        commit_seconds: float = 120.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        forget_missing: bool = False,
    ) -> UpdateReport:
        """Bring the index in line with ``folders`` (all known roots when empty): embed new and
        changed images, drop deleted ones, record the files that can't be used. ``progress``: True
        for a progress bar, False for none, or a callable ``progress(done, total)`` called as files
        complete (a video counts once); an exception it raises (a cancel) stops the update, and the
        index keeps its last committed state. A folder that cannot be listed keeps its entries,
        marked offline (``indexer.storage.offline``); ``forget_missing`` drops them instead."""
        return updating.update(
            self, folders, workers, progress, commit_every, commit_seconds, max_pixels, forget_missing
        )

    def forget(self, paths: Iterable[str]) -> UpdateReport:
        """Drop these files' rows and vectors (one crash-safe commit), without scanning any folder:
        for files moved away by the program itself (dedup apply)."""
        return updating.forget(self, paths)

    def _commit(self, added, errors, reasons, delete_paths, clear_errors, report) -> None:
        """One atomic step of an update (``indexer.update.commit.commit``) over the loaded vectors."""
        _commit_step(self.store, self.committed, added, errors, reasons, delete_paths, clear_errors, report)

    # --- checking -----------------------------------------------------------------------------
    def check(self, deep: int = 0) -> CheckReport:
        """Prove the database and the vectors file agree; ``deep``: also re-embed that many files."""
        return checking.check(self, deep)
