"""Search an index by words: ``TextSearcher`` (the index's descriptors projected into the text
model's space, cached in ``INDEX/text/images-<key>.faiss``), and training the text model of an index.
The models themselves are ``retrieval.text`` (no index there)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from retrieval.errors import UserError
from retrieval.text.captions import index_captions
from retrieval.text.search import TextQueryModel
from retrieval.text.train import train_text_model as train


class TextSearcher(TextQueryModel):
    """Search an opened ``Index`` by words. Thread-safe for queries (one lock)."""

    def __init__(self, index, threads: int | None = None):
        super().__init__(index.directory, index.spec.model_id, index.spec.describe(), threads)
        self.index = index
        self._images = None  # (vectors file name, faiss index)

    def image_index(self):
        """FAISS inner-product index over the projected descriptors of the committed generation,
        cached in memory and in ``INDEX/text/images-<key>.faiss``."""
        import faiss

        with self._lock:
            name = self.index.store.meta("vectors_file")
            if self._images is not None and self._images[0] == name:
                return self._images[1]
            digest = self.index.store.meta("vectors_sha256") or name
            key = f"{digest[:16]}-{self.config.get('trained_at_key', '')}"
            cache = self.directory / f"images-{key}.faiss"
            fidx = None
            if cache.is_file():
                try:
                    fidx = faiss.read_index(str(cache))
                except RuntimeError:
                    fidx = None
            if fidx is None:
                ids, vecs = self.index.all_vectors()
                fidx = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
                if len(ids):
                    fidx.add_with_ids(self.project_descriptors(vecs), np.asarray(ids, np.int64))
                self._write_cache(fidx, cache)
            self._images = (name, fidx)
            return fidx

    def _write_cache(self, fidx, cache: Path) -> None:
        """Best effort (an index on read-only media still searches, from memory)."""
        import faiss

        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        try:
            faiss.write_index(fidx, str(tmp))
            os.replace(tmp, cache)
            for old in self.directory.glob("images-*.faiss"):
                if old != cache:
                    old.unlink(missing_ok=True)
        except (OSError, RuntimeError):
            tmp.unlink(missing_ok=True)

    # --- search -------------------------------------------------------------------------------
    def search_vectors(self, queries: np.ndarray, k: int = 10):
        """Like ``Index.search_vectors``, for shared-space query embeddings."""
        if k < 1:
            raise UserError(f"top-k must be at least 1 (got {k})")
        fidx = self.image_index()
        queries = np.ascontiguousarray(queries, np.float32).reshape(-1, self.dim)
        k = min(k, fidx.ntotal)
        if k == 0:
            return [[] for _ in range(len(queries))]
        scores, ids = fidx.search(queries, k)
        return self.index.hits(scores, ids)

    def search(self, texts, k: int = 10):
        """The ``k`` indexed images that best match each text."""
        return self.search_vectors(self.embed_texts(texts), k)


def gather_pairs(index, exclude=()):
    """(image ids, descriptors [N, 512], unique captions, caption indices per image) of every
    indexed image with at least one caption; images whose path is in ``exclude`` are left out."""
    ids, vecs = index.all_vectors()
    rows = index.store.rows_by_id(ids.tolist())
    caps = index_captions([rows[int(i)] for i in ids if int(i) in rows], set(exclude))
    keep = [k for k, i in enumerate(ids) if int(i) in caps]
    uniq: dict[str, int] = {}
    per_image = []
    for k in keep:
        per_image.append([uniq.setdefault(c, len(uniq)) for c in caps[int(ids[k])]])
    return ids[keep], vecs[keep], list(uniq), per_image


def train_text_model(index, text_model: str | None = None, exclude=(), **options):
    """Train search by words on ``index``'s captions and write ``INDEX/text/`` (``options``: those
    of ``retrieval.text.train.train_text_model``: epochs, dim, batch_size, lr, seed, log)."""

    _, vecs, captions, per_image = gather_pairs(index, exclude)
    return train(index.directory, index.spec, vecs, captions, per_image, text_model, **options)
