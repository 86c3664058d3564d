"""Checking an index: the database and the vectors file agree (ids, count, checksum, unit vectors,
the model), and with ``deep`` a sample of files embedded again matches the stored vectors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from indexer.storage.store import Store
from indexer.video.keyframes import VideoError, read_frame
from retrieval.engines.export import SIDECAR, read_sidecar
from retrieval.preprocess import ImageError

from . import vectors
from .reports import CheckReport
from .storage import whitened_vectors as whitened


def check(index, deep: int = 0) -> CheckReport:
    """``Index.check``: prove the database and the vectors file agree; ``deep``: also re-embed that many files."""
    for _ in range(5):
        rep = _check_once(index, deep)
        if not rep.retry:
            return rep
        time.sleep(0.1)  # an update committed a new generation while we read: look again
    return rep


def _check_once(index, deep: int) -> CheckReport:
    rep = CheckReport()
    store, spec = index.store, index.spec
    with store.session() as s, s.begin():
        name = Store.get_meta(s, "vectors_file")
        digest = Store.get_meta(s, "vectors_sha256")
        count = Store.get_meta(s, "count")
        model_id = Store.get_meta(s, "model_id")
        db_ids = np.array(Store.ids_in(s), dtype=np.int64)
    if model_id != spec.model_id:
        rep.problems.append(f"model id in meta ({model_id}) does not match the stored spec ({spec.model_id})")
    path = index.directory / (name or "")
    try:
        actual = vectors.file_sha256(path) if name else None
        faiss_index = vectors.load(path) if name else None
    except (OSError, RuntimeError) as e:
        if store.meta("vectors_file") != name:
            rep.retry = True
            return rep
        if not path.is_file():
            rep.problems.append(f"vectors file {name!r} named by the database is missing")
        else:
            rep.problems.append(f"{name} cannot be read: {str(e).strip().splitlines()[0][:200]}")
        return rep
    if faiss_index is None:
        rep.problems.append("the database names no vectors file")
        return rep
    if store.meta("vectors_file") != name:
        rep.retry = True
        return rep
    if actual != digest:
        rep.problems.append(f"{name} has sha256 {actual[:12]}, the database recorded {str(digest)[:12]}")
    _check_vectors(faiss_index, db_ids, count, spec.descriptor_dim, rep)
    _check_files(index.directory, index.model_dir, name, spec.model_id, rep)
    whitened.check(index, db_ids, rep.problems)
    if deep and faiss_index.ntotal and not rep.problems:
        _deep_check(index, faiss_index, deep, rep)
    return rep


def _check_vectors(index, db_ids: np.ndarray, count, dim: int, rep: CheckReport) -> None:
    """The vectors against the rows: dimensions, count, one vector per id and no other, unit length."""
    if index.d != dim:
        rep.problems.append(f"vectors have {index.d} dimensions, the model gives {dim}")
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


def _check_files(directory: Path, model_dir: Path, name: str, model_id: str, rep: CheckReport) -> None:
    """The exported model is the index's; leftover vectors files of an interrupted update."""
    if (model_dir / SIDECAR).is_file():
        try:
            if read_sidecar(model_dir)[0].model_id != model_id:
                rep.problems.append("the exported model in model/ is not the index's model")
        except Exception as e:
            rep.problems.append(f"model/{SIDECAR} cannot be read: {e}")
    else:
        rep.notes.append("model/ is missing; it will be re-exported from the weights when needed")
    orphans = [p.name for p in directory.glob("vectors-*.faiss*") if p.name != name]
    if orphans:
        rep.notes.append(
            f"leftover files from an interrupted update (removed by the next update): {', '.join(orphans)}"
        )


def _deep_check(index, faiss_index, n: int, rep: CheckReport) -> None:
    rows = list(index.store.rows_by_id(vectors.ids_of(faiss_index)[:n]).values())
    present = [r for r in rows if Path(r.source or r.path).is_file()]
    if len(present) < len(rows):
        rep.notes.append(
            f"{len(rows) - len(present)} of {len(rows)} sampled files no longer exist (run index to update)"
        )
    if not present:
        return

    try:  # a video frame is decoded again from its video, at its time
        fresh = index.embedder.embed(
            [read_frame(r.source, r.time_s) if r.source else r.path for r in present]
        )
    except (ImageError, VideoError) as e:
        rep.notes.append(f"could not re-embed the sample: {e}")
        return
    for r, v in zip(present, fresh):
        cos = float(np.dot(faiss_index.reconstruct(int(r.id)), v))
        if cos < (0.999 if vectors.is_exact(faiss_index) else 0.9):  # SQ/PQ codes decode approximately
            rep.problems.append(
                f"stored vector of {r.path} differs from a fresh embedding (cosine {cos:.4f})"
            )
