"""The committed generation of the vectors, as this process has it loaded (searches read it; an
update's commits replace it)."""

from __future__ import annotations

import time
from pathlib import Path

from indexer import vectors
from retrieval.errors import UserError

from .store import Store
from .whitened_vectors import WhitenedVectors


class CommittedVectors:
    """The FAISS index named by the store's ``vectors_file``, loaded once per generation."""

    def __init__(self, directory: Path, store: Store):
        self.directory = directory
        self.store = store
        self.index = None
        self.file: str | None = None
        self._gpu_for = None
        self._gpu_copy = None
        self.whitened = WhitenedVectors(directory, store)  # the whitening and the vectors searches use

    def search_space(self, queries):
        """(the FAISS index a search reads, ``queries`` as it wants them): the whitened copy and
        whitened queries when the index has a whitening (``indexer.storage.whitened_vectors``), else the raw ones."""
        state, whitened = self.whitened.load()
        if state is None:
            return self.load(), queries
        return whitened, state.apply(queries)

    def load(self, force: bool = False):
        """The current generation (reloaded when an update committed a newer one, or ``force``)."""
        for _ in range(5):
            name = self.store.meta("vectors_file")
            if not force and self.index is not None and name == self.file:
                return self.index
            path = self.directory / name
            try:
                self.index = vectors.load(path)
                self.file = name
                return self.index
            except RuntimeError:
                if path.exists():
                    raise UserError(
                        f"the vectors file {path} cannot be read (run vgg-retrieval check)"
                    ) from None
                time.sleep(0.2)  # an update replaced it between reading the meta and the file
        raise UserError(f"the vectors file named by the index is missing: {self.directory / name}")

    def replace(self, index, name: str) -> None:
        """What a commit just saved and the database now names."""
        self.index, self.file = index, name

    def forget(self) -> None:
        """Back to the committed state: reloaded when next needed."""
        self.index = None
        self.whitened.forget()

    def gpu_index(self, index):
        """A GPU copy of the loaded vectors for search, made once per generation (None without a GPU)."""
        if self._gpu_for is not index:
            self._gpu_for, self._gpu_copy = index, vectors.gpu_copy(index)
        return self._gpu_copy

    def info(self) -> dict:
        """What the committed vectors file is: FAISS type, vector count, dimensions, file and size."""
        import faiss

        v = self.load()
        inner = faiss.downcast_index(v.index) if hasattr(v, "index") else v
        kind = f"{type(v).__name__}({type(inner).__name__})" if inner is not v else type(v).__name__
        path = self.directory / self.file
        cfg = vectors.IndexConfig.from_meta(self.store.meta("vectors_index"))
        return {
            "type": kind,
            "count": int(v.ntotal),
            "dim": int(v.d),
            "file": self.file,
            "bytes": path.stat().st_size if path.exists() else 0,
            "index_type": cfg.type,
            "factory": cfg.factory,
            "exact": vectors.is_exact(v),
            "nprobe": cfg.nprobe,
            "ef_search": cfg.ef_search,
        }
