"""An index's whitening (``indexer.vectors.whitening``) and the whitened copy of its vectors that searches use.

More: docs/design-notes.md (``indexer.storage.whitened_vectors``)."""

from __future__ import annotations

import time

import numpy as np

from indexer import vectors
from indexer.faults import crash_point
from indexer.vectors import whitening
from retrieval.errors import UserError

from .folder import check_writable, write_lock
from .store import Store

META = "whitening"
NPZ_PREFIX = "whitening"
FAISS_PREFIX = "whitened"


class WhitenedVectors:
    """The committed whitening and whitened vectors, as this process has them loaded."""

    def __init__(self, directory, store: Store):
        self.directory = directory
        self.store = store
        self.meta: dict | None = None
        self.state: whitening.Whitening | None = None
        self.index = None
        self.pending = None  # (meta, state, index) written by a commit not yet installed

    def load(self, meta: dict | None = None, force: bool = False):
        """(Whitening, whitened FAISS index) of the committed generation, or (None, None) when the
        index is not whitened. ``meta``: the ``whitening`` meta as a transaction reads it."""
        for _ in range(5):
            meta = self.store.meta(META) if meta is None else meta
            if not meta:
                self.meta, self.state, self.index = None, None, None
                return None, None
            if not force and self.meta == meta and self.index is not None:
                return self.state, self.index
            try:
                if self.meta is None or self.meta.get("file") != meta["file"] or self.state is None:
                    self.state = whitening.load(self.directory / meta["file"], self.store.meta("model_id"))
                self.index = vectors.load(self.directory / meta["vectors_file"])
                self.meta = meta
                return self.state, self.index
            except RuntimeError:
                if (self.directory / meta["vectors_file"]).exists():
                    raise UserError(
                        f"the whitened vectors {self.directory / meta['vectors_file']} cannot be read "
                        f"(run vgg-retrieval check)"
                    ) from None
                meta = None  # replaced by a commit between reading the meta and the file: read again
                time.sleep(0.2)
        raise UserError(f"the whitened vectors named by the index are missing in {self.directory}")

    def forget(self) -> None:
        self.meta, self.state, self.index, self.pending = None, None, None, None

    def follow(
        self, s, raw, generation: int, removed, added_ids: np.ndarray, added: np.ndarray, rebuilt: bool
    ) -> dict | None:
        """An update's commit, in its transaction ``s``: the whitened copy takes the same changes
        as ``raw`` (the new raw vectors: ``removed`` ids out, ``added`` in, ``rebuilt`` when the
        commit converted its type); a whitening is (re)fitted when the rules say so (refit after
        growth; a first fit only with ``whitening.AUTO_WHITEN``). Returns the new meta (written)."""
        meta = Store.get_meta(s, META)
        state, index = self.load(meta=meta or {})
        n = int(raw.ntotal)
        if state is None:
            if not (whitening.AUTO_WHITEN and whitening.should_fit(n)):
                return None
            refit = True
        else:
            refit = whitening.should_refit(n, state)
        if refit:
            options = {} if state is None else whitening.fit_options(state)  # a refit keeps the user's choice
            state = whitening.fit(vectors.all_vectors(raw), Store.get_meta(s, "model_id"), **options)
        if refit or rebuilt:
            index = whitened_copy(raw, state, Store.get_meta(s, "vectors_index"))
        else:
            index = vectors.without(index, removed)
            if len(added_ids):
                index.add_with_ids(state.apply(added), np.asarray(added_ids, dtype=np.int64))
        return self._write(s, state, index, generation, meta if not refit else None)

    def _write(self, s, state, index, generation: int, meta: dict | None) -> dict:
        """Save the whitened copy (and, when ``meta`` is None, the fitted whitening) as
        generation ``generation`` and name them in ``s``; installed by ``committed``."""
        if meta is None:
            npz = f"{NPZ_PREFIX}-{generation:06d}.npz"
            whitening.save(state, self.directory / npz)
            meta = {
                "file": npz,
                "n": state.n,
                "model_id": state.model_id,
                "fitted_at": time.time(),
                "method": state.describe(),
            }
        name, digest = vectors.save(index, self.directory, generation, prefix=FAISS_PREFIX)
        meta = {**meta, "vectors_file": name, "vectors_sha256": digest, "count": int(index.ntotal)}
        crash_point("whitening_saved")
        Store.set_meta(s, META, meta)
        self.pending = (meta, state, index)
        return meta

    def installed(self) -> None:
        """What the last ``follow``/fit wrote is committed: keep it loaded, drop older files."""
        if self.pending is not None:
            self.meta, self.state, self.index = self.pending
            self.pending = None
        remove_stale_files(self.directory, self.meta)


def whitened_copy(raw, state: whitening.Whitening, config_meta: dict | None):
    """The stored vectors of ``raw`` whitened, in an index of the same FAISS type."""
    cfg = vectors.IndexConfig.from_meta(config_meta)
    return vectors.build(cfg.factory, state.apply(vectors.all_vectors(raw)), vectors.ids_of(raw), cfg)


def remove_stale_files(directory, meta: dict | None) -> None:
    """Delete whitening files other than those ``meta`` names (older fits, crashed saves)."""
    keep = {meta["file"], meta["vectors_file"]} if meta else set()
    for pattern in (f"{NPZ_PREFIX}-*.npz*", f"{FAISS_PREFIX}-*.faiss*"):
        for p in directory.glob(pattern):
            if p.name not in keep:
                p.unlink(missing_ok=True)


def discard_uncommitted(directory, store: Store) -> None:
    """After a failed commit: remove the whitening files it wrote (those the database does not name)."""
    try:
        meta = store.meta(META)
    except BaseException:  # noqa: BLE001 - database away: keep every file, the next writer removes them
        return
    remove_stale_files(directory, meta)


def fit_index(index, force: bool = False, **options) -> whitening.Whitening | None:
    """Fit (or fit again) the whitening of ``index`` on its stored vectors and rebuild the whitened
    copy, in one commit. Below ``whitening.MIN_VECTORS`` vectors nothing changes and None is returned
    (a whitening learnt on too few photos lowers quality), unless ``force``. ``options``: ``fit``'s."""

    check_writable(index.directory)
    with write_lock(index.directory):
        raw = index.committed.load(force=True)
        if not force and not whitening.should_fit(int(raw.ntotal)):
            return None
        state = whitening.fit(vectors.all_vectors(raw), index.spec.model_id, **options)
        crash_point("whitening_fitted")
        copy = whitened_copy(raw, state, index.store.meta("vectors_index"))
        _commit(index, lambda s, gen: index.committed.whitened._write(s, state, copy, gen, None))
    return state


def remove(index) -> bool:
    """Remove the whitening of ``index`` (searches use the raw vectors again); False if it had none."""

    check_writable(index.directory)
    with write_lock(index.directory):
        if not index.store.meta(META):
            return False

        def write(s, generation):
            Store.set_meta(s, META, None)
            index.committed.whitened.pending = (None, None, None)

        _commit(index, write)
    return True


def _commit(index, write) -> None:
    """``write(session, generation)`` in one transaction that also advances the generation; on
    failure the files it wrote are removed unless the database names them."""
    whitened = index.committed.whitened
    try:
        with index.store.session.begin() as s:
            generation = int(Store.get_meta(s, "generation", 0)) + 1
            write(s, generation)
            Store.set_meta(s, "generation", generation)
    except BaseException:
        whitened.forget()
        discard_uncommitted(index.directory, index.store)
        raise
    crash_point("whitening_committed")
    whitened.installed()


def check(index, db_ids: np.ndarray, problems: list[str]) -> None:
    """``check``: the whitening files the database names exist, match their checksum, were fitted
    for the index's model, and the whitened copy holds one unit vector per image row."""
    meta = index.store.meta(META)
    if not meta:
        return
    path = index.directory / meta["vectors_file"]
    try:
        state = whitening.load(index.directory / meta["file"], index.spec.model_id)
        copy = vectors.load(path)
        digest = vectors.file_sha256(path)
    except (UserError, OSError, RuntimeError) as e:
        problems.append(f"whitening: {str(e).strip().splitlines()[0][:200]}")
        return
    if digest != meta.get("vectors_sha256"):
        problems.append(
            f"{meta['vectors_file']} has sha256 {digest[:12]}, the database recorded "
            f"{str(meta.get('vectors_sha256'))[:12]}"
        )
    if copy.d != state.dim or not np.array_equal(np.sort(vectors.ids_of(copy)), np.sort(db_ids)):
        problems.append(f"{meta['vectors_file']} does not hold one whitened vector per image row")
    elif copy.ntotal and vectors.is_exact(copy):
        norms = np.linalg.norm(vectors.all_vectors(copy), axis=1)
        if (np.abs(norms - 1) > 1e-3).any():
            problems.append(f"{meta['vectors_file']}: whitened vectors are not unit length")


def describe(index) -> str:
    """One line for ``info``: the whitening, or why there is none."""
    try:
        state = index.whitening
    except UserError as e:
        return f"unusable: {e}"
    n = index.count
    if state is not None:
        return state.describe()
    if whitening.should_fit(n):
        return f"none (vgg-retrieval whiten --index {index.directory} fits one)"
    return f"none (needs at least {whitening.MIN_VECTORS} images, has {n})"
