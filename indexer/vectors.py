"""The FAISS side of an index: vectors keyed by the metadata rows' ids, saved crash-safely.

Each save writes a new generation file (``vectors-<n>.faiss``: written to a temporary name, fsynced,
renamed, directory fsynced). The metadata transaction that commits the rows names that file and its
sha256, so the database always points at a complete file that matches it; a crash before the commit
leaves an orphan file that the next writer removes.

Index types (``--index-type``, stored in the ``vectors_index`` meta; see docs/index-types.md):

    flat    IndexIDMap2(IndexFlatIP): exact; what every index was before index types existed
    hnsw    IndexIDMap2(IndexHNSWFlat): graph search; FAISS cannot delete from it, so a commit that
            removes or replaces vectors rebuilds the graph from the stored (exact) vectors
    ivf     IVF<nlist>,SQ8: inverted lists, exact (flat) coarse quantizer, 8-bit scalar codes
    ivfpq   OPQ64,IVF<nlist>[_HNSW32],PQ64: 64 bytes per vector, for collections beyond RAM for SQ8
    auto    flat below ``flat_limit`` vectors, ivf below ``pq_limit``, ivfpq beyond (the default)
    other   a raw FAISS index_factory string (experts), e.g. ``IVF4096_HNSW32,Flat``

The coarse quantizer is exact (flat) up to ``FLAT_QUANTIZER_MAX`` lists: measured at 1M vectors, an
HNSW32 quantizer over inner products put 6% of the vectors into one list (its greedy search stops
early on near-equal centroids), so searches were 5x slower at lower recall. Beyond that, an HNSW
quantizer with a wide search (``QUANTIZER_EF``) replaces the nlist x d scan.

IVF types are not wrapped in an IDMap: they take our ids natively (``add_with_ids``, ``remove_ids``)
and keep a hashtable direct map so vectors can be reconstructed by id. Types that need training stay
flat until there are enough vectors to train them, then a commit converts; ``auto`` also converts
again when the collection outgrows its type (4x more vectors than it was trained for).
"""
from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from retrieval.errors import UserError

from .faults import crash_point


def new_index(dim: int) -> faiss.Index:
    """Exact inner-product search over L2-normalised vectors (= cosine), with our own ids."""
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(index: faiss.Index, directory: Path, generation: int) -> tuple[str, str]:
    """Write ``index`` as generation ``generation``; returns (file name, sha256)."""
    name = f"vectors-{generation:06d}.faiss"
    final = directory / name
    tmp = directory / (name + ".tmp")
    try:
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        digest = file_sha256(tmp)
        crash_point("vectors_tmp_written")
        os.replace(tmp, final)
        _fsync_dir(directory)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, RuntimeError):  # FAISS reports failed writes (disk full...) as RuntimeError
            raise OSError(f"cannot write {final}: {str(e).strip().splitlines()[-1][:200]}") from None
        raise
    crash_point("vectors_renamed")
    return name, digest


def load(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def ids_of(index: faiss.Index) -> np.ndarray:
    """The ids of every stored vector (IDMap order for flat/hnsw, inverted-list order for IVF)."""
    if index.ntotal == 0:
        return np.zeros(0, dtype=np.int64)
    top = faiss.downcast_index(index)
    if isinstance(top, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.vector_to_array(top.id_map).astype(np.int64)
    invlists = _ivf(index).invlists
    parts = []
    for lst in range(invlists.nlist):
        n = invlists.list_size(lst)
        if n:
            ptr = invlists.get_ids(lst)
            parts.append(faiss.rev_swig_ptr(ptr, n).astype(np.int64))
            invlists.release_ids(lst, ptr)
    return np.concatenate(parts)


def all_vectors(index: faiss.Index) -> np.ndarray:
    """The stored vectors in ``ids_of`` order: exact for flat, hnsw and IVF-Flat, decoded from the
    codes (approximate) for SQ/PQ types."""
    if index.ntotal == 0:
        return np.zeros((0, index.d), np.float32)
    top = faiss.downcast_index(index)
    inner = faiss.downcast_index(top.index) if isinstance(top, faiss.IndexIDMap2) else None
    if isinstance(inner, faiss.IndexFlat):
        return faiss.rev_swig_ptr(inner.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d).copy()
    ids = ids_of(index)
    return np.concatenate([index.reconstruct_batch(ids[i:i + 65536]) for i in range(0, len(ids), 65536)])


def remove(index: faiss.Index, ids) -> int:
    """Remove ``ids`` in place (types that can delete natively: flat, IVF)."""
    ids = np.asarray(list(ids), dtype=np.int64)
    if len(ids) == 0:
        return 0
    if _ivf(index) is not None and not isinstance(faiss.downcast_index(index), faiss.IndexIDMap):
        return index.remove_ids(faiss.IDSelectorArray(ids))  # what the hashtable direct map supports
    return index.remove_ids(faiss.IDSelectorBatch(ids))


def without(index: faiss.Index, ids) -> faiss.Index:
    """``index`` minus ``ids``: removed in place, or for HNSW (no deletes in FAISS) a graph rebuilt
    from the remaining stored vectors."""
    ids = np.asarray(list(ids), dtype=np.int64)
    if len(ids) == 0:
        return index
    if not _is_hnsw(index):
        remove(index, ids)
        return index
    have = ids_of(index)
    keep = ~np.isin(have, ids)
    if keep.all():
        return index
    fresh = faiss.clone_index(index)  # same type and parameters (and training, for HNSW-SQ)
    fresh.reset()
    _add(fresh, all_vectors(index)[keep], have[keep])
    return fresh


def remove_stale_files(directory: Path, keep: str | None) -> None:
    """Delete generation files other than ``keep`` (orphans of crashed or superseded saves)."""
    for p in directory.glob("vectors-*.faiss*"):
        if p.name != keep:
            try:
                p.unlink()
            except FileNotFoundError:
                pass


# --- index types ------------------------------------------------------------------------------
KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")
FLAT_LIMIT = 200_000        # auto: exact search below this many vectors (measured: benchmarks/faiss_scale.py)
PQ_LIMIT = 10_000_000       # auto: IVF-SQ8 (512 B/vector) below, OPQ+IVF-PQ64 (64 B/vector) from here
TRAIN_MIN = 50_000          # ivf/ivfpq/raw IVF: stay flat until this many vectors (and >= 39 per list)
DEFAULT_NPROBE = 32         # benchmarks/faiss_scale.py: see docs/index-types.md
DEFAULT_EF_SEARCH = 64
HNSW_M = 32
FLAT_QUANTIZER_MAX = 16384  # up to this many lists the coarse quantizer is exact (~1 ms per query at 16k)
QUANTIZER_EF = 128          # an HNSW coarse quantizer's search width when adding vectors
GROW = 4                    # auto/ivf/ivfpq re-train when the collection is GROW x what the type was built for


@dataclass
class IndexConfig:
    """What the user asked for (``type``) and how the current vectors file is built (``built``)."""
    type: str = "auto"
    flat_limit: int = FLAT_LIMIT
    pq_limit: int = PQ_LIMIT
    train_min: int = TRAIN_MIN
    nprobe: int = DEFAULT_NPROBE
    ef_search: int = DEFAULT_EF_SEARCH
    built: dict = field(default_factory=lambda: {"factory": "flat", "n": 0})

    @classmethod
    def from_meta(cls, value: dict | None) -> "IndexConfig":
        """The stored config; an index from before index types (no meta) is ``auto`` over flat."""
        if not value:
            return cls()
        known = {k: v for k, v in value.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def to_meta(self) -> dict:
        return asdict(self)

    @property
    def factory(self) -> str:
        return self.built.get("factory", "flat")


def parse_type(text: str, dim: int) -> str:
    """A valid ``--index-type``: a known kind, or a FAISS factory string that builds (UserError if not)."""
    text = (text or "").strip()
    if text.lower() in KINDS:
        return text.lower()
    if text.startswith("IDMap"):
        raise UserError(f"--index-type {text!r}: leave out IDMap, the index adds its own ids")
    try:
        faiss.index_factory(dim, text, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError:
        raise UserError(f"--index-type {text!r}: not one of {', '.join(KINDS)} and not a FAISS "
                        f"factory string") from None
    return text


def make_config(index_type: str = "auto", dim: int = 512, **options) -> IndexConfig:
    """A new index's config; ``options`` override flat_limit, pq_limit, train_min, nprobe, ef_search."""
    cfg = IndexConfig(type=parse_type(index_type, dim))
    for key, value in options.items():
        if key not in ("flat_limit", "pq_limit", "train_min", "nprobe", "ef_search"):
            raise UserError(f"unknown index option {key!r}")
        if int(value) < 1:
            raise UserError(f"index option {key} must be at least 1 (got {value})")
        setattr(cfg, key, int(value))
    return cfg


def nlist_for(n: int) -> int:
    """Inverted lists for ``n`` vectors: ~4 sqrt(n) (FAISS guideline), a power of two, >= 39 vectors each."""
    nlist = 2 ** round(math.log2(max(1.0, 4 * math.sqrt(max(n, 1)))))
    while nlist > 1 and 39 * nlist > n:
        nlist //= 2
    return int(min(nlist, 65536))


def target_factory(cfg: IndexConfig, n: int, dim: int) -> str:
    """The structure ``cfg`` wants for ``n`` vectors: 'flat', 'hnsw' or a FAISS factory string."""
    kind = cfg.type
    if kind == "flat":
        return "flat"
    if kind == "hnsw":
        return "hnsw"
    if kind == "auto":
        if n < cfg.flat_limit:
            return "flat"
        kind = "ivf" if n < cfg.pq_limit else "ivfpq"
    elif n < cfg.train_min and (kind in ("ivf", "ivfpq") or _needs_training(kind, dim)):
        return "flat"  # nothing to train on yet (a raw type that needs no training applies at once)
    nlist = nlist_for(n)
    coarse = f"IVF{nlist}" if nlist <= FLAT_QUANTIZER_MAX else f"IVF{nlist}_HNSW32"
    if kind == "ivf":
        return f"{coarse},SQ8"
    if kind == "ivfpq":
        m = _pq_m(dim)
        return f"OPQ{m},{coarse},PQ{m}"
    return kind  # a raw factory string


def adapt(index: faiss.Index, cfg: IndexConfig, seed: int = 1234) -> tuple[faiss.Index, IndexConfig]:
    """(index, cfg) after growth: converted to the type ``cfg`` wants for its size, when that changed."""
    n, have = int(index.ntotal), cfg.factory
    want = target_factory(cfg, n, index.d)
    if want == have or n < cfg.built.get("n", 0):
        return index, cfg  # nothing new, or the collection shrank: never back to a smaller type
    if _family(want) == _family(have) and n < GROW * max(1, cfg.built.get("n", 0)):
        return index, cfg  # same structure; re-train only after real growth
    if _needs_training(want, index.d) and n < _train_needed(want, index.d, cfg):
        return index, cfg
    fresh = build(want, all_vectors(index), ids_of(index), cfg, seed=seed)
    return fresh, IndexConfig(**{**cfg.to_meta(), "built": {"factory": want, "n": n}})


def empty_index(cfg: IndexConfig, dim: int) -> faiss.Index:
    """The vectors of a new index: flat (the historic default) unless the type needs no training."""
    want = target_factory(cfg, 0, dim)
    if _needs_training(want, dim):
        want = "flat"
    cfg.built = {"factory": want, "n": 0}
    return build(want, np.zeros((0, dim), np.float32), np.zeros(0, np.int64), cfg)


def build(factory: str, x: np.ndarray, ids: np.ndarray, cfg: IndexConfig | None = None,
          seed: int = 1234) -> faiss.Index:
    """A ``factory`` index holding ``x`` under ``ids`` (trained on a sample of ``x`` when needed)."""
    dim = x.shape[1]
    if factory == "flat":
        index = new_index(dim)
    elif factory == "hnsw":
        index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT))
    else:
        index = train(factory, x, seed=seed)
        if _ivf(index) is not None:
            _ivf(index).set_direct_map_type(faiss.DirectMap.Hashtable)
        elif not isinstance(faiss.downcast_index(index), faiss.IndexIDMap):
            index = faiss.IndexIDMap2(index)
    _add(index, x, ids)
    return index


def train(factory: str, x: np.ndarray, seed: int = 1234, sample: int | None = None) -> faiss.Index:
    """An empty ``factory`` index trained on (a sample of) ``x``: the template shard workers clone."""
    index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if index.is_trained:
        return index
    ivf = _ivf(index)
    nlist = ivf.nlist if ivf is not None else 1
    size = min(len(x), sample or max(64 * nlist, 20_000))
    rng = np.random.default_rng(seed)
    xt = x[np.sort(rng.choice(len(x), size, replace=False))] if size < len(x) else x
    if ivf is not None:
        ivf.cp.seed = seed
        ivf.cp.niter = 10
        ivf.clustering_index = faiss.IndexFlatIP(x.shape[1])  # exact BLAS k-means; HNSW only to assign
    index.train(np.ascontiguousarray(xt, dtype=np.float32))
    if ivf is not None:
        ivf.clustering_index = None
        quantizer = faiss.downcast_index(ivf.quantizer)
        if isinstance(quantizer, faiss.IndexHNSW):  # assignment when adding (searches set their own)
            quantizer.hnsw.efSearch = max(quantizer.hnsw.efSearch, QUANTIZER_EF)
    return index


def _add(index: faiss.Index, x: np.ndarray, ids: np.ndarray) -> None:
    for i in range(0, len(x), 65536):
        index.add_with_ids(np.ascontiguousarray(x[i:i + 65536], dtype=np.float32),
                           np.ascontiguousarray(ids[i:i + 65536], dtype=np.int64))


# --- searching --------------------------------------------------------------------------------
def search_params(index: faiss.Index, k: int, nprobe: int, ef_search: int, gpu: bool = False):
    """Per-call FAISS search parameters (thread-safe, unlike setting them on the index)."""
    ivf = _ivf(index)
    if ivf is not None:
        if not gpu and isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
            hnsw = faiss.SearchParametersHNSW(efSearch=max(ef_search, 2 * nprobe))
            return faiss.SearchParametersIVF(nprobe=nprobe, quantizer_params=hnsw)
        return faiss.SearchParametersIVF(nprobe=nprobe)
    if _is_hnsw(index):
        return faiss.SearchParametersHNSW(efSearch=max(ef_search, k))
    return None


def search(index: faiss.Index, queries: np.ndarray, k: int, nprobe: int = DEFAULT_NPROBE,
           ef_search: int = DEFAULT_EF_SEARCH, gpu_index: faiss.Index | None = None):
    """(scores, ids) of the ``k`` best per query; ``gpu_index``: a GPU copy of ``index`` to use."""
    if gpu_index is not None and k <= 2048:  # FAISS GPU's k limit
        return gpu_index.search(queries, k, params=search_params(index, k, nprobe, ef_search, gpu=True))
    params = search_params(index, k, nprobe, ef_search)
    return index.search(queries, k, params=params) if params is not None else index.search(queries, k)


def gpu_copy(index: faiss.Index) -> faiss.Index | None:
    """A copy of ``index`` on all GPUs, when FAISS was built with GPU support (the faiss-gpu extra)
    and sees a GPU; None otherwise or for types without a GPU implementation (HNSW, lossy
    transforms). IVF's HNSW coarse quantizer is swapped for an exact flat one on the GPU.
    Untested here (no GPU on the development machines)."""
    if not hasattr(faiss, "index_cpu_to_all_gpus") or faiss.get_num_gpus() == 0 or _is_hnsw(index):
        return None
    try:
        cpu = index
        ivf = _ivf(index)
        if ivf is not None and not isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexFlat):
            cpu = faiss.clone_index(index)
            ivf = _ivf(cpu)
            flat = faiss.IndexFlatIP(ivf.d)
            flat.add(ivf.quantizer.reconstruct_n(0, ivf.nlist))
            ivf.quantizer, ivf.own_fields = flat, False
            cpu._flat_quantizer = flat  # keep it alive as long as the copy
        return faiss.index_cpu_to_all_gpus(cpu)
    except (RuntimeError, AttributeError):
        return None


# --- sharded build ----------------------------------------------------------------------------
def merge_ivf_shards(shards: list[faiss.Index]) -> faiss.Index:
    """One IVF index from shards built by separate workers, each a clone of the same trained empty
    index (``train``) filled with ``add_with_ids``: the inverted lists are concatenated
    (``IndexIVF.merge_from``), so the result searches exactly like one index built in one process.
    The shards are emptied; ids must be distinct across shards."""
    if not shards:
        raise UserError("no shards to merge")
    ivfs = [_ivf(s) for s in shards]
    if any(v is None for v in ivfs):
        raise UserError("only IVF shards can be merged")
    centroids = ivfs[0].quantizer.reconstruct_n(0, ivfs[0].nlist)
    for i, v in enumerate(ivfs[1:], 1):
        if v.nlist != ivfs[0].nlist or v.code_size != ivfs[0].code_size or \
                not np.array_equal(v.quantizer.reconstruct_n(0, v.nlist), centroids):
            raise UserError(f"shard {i} was not trained with the same quantizer as shard 0")
    all_ids = np.concatenate([ids_of(s) for s in shards])
    if len(np.unique(all_ids)) != len(all_ids):
        raise UserError("shards share ids: each vector id must be in exactly one shard")
    merged = faiss.clone_index(shards[0])
    _ivf(merged).set_direct_map_type(faiss.DirectMap.NoMap)  # merge_from needs no direct map
    for s, v in zip(shards[1:], ivfs[1:]):
        v.set_direct_map_type(faiss.DirectMap.NoMap)
        _ivf(merged).merge_from(v, 0)
        s.ntotal = v.ntotal
    merged.ntotal = _ivf(merged).ntotal
    _ivf(merged).set_direct_map_type(faiss.DirectMap.Hashtable)
    return merged


# --- helpers ----------------------------------------------------------------------------------
def _ivf(index: faiss.Index):
    return faiss.try_extract_index_ivf(index)


def _is_hnsw(index: faiss.Index) -> bool:
    top = faiss.downcast_index(index)
    inner = faiss.downcast_index(top.index) if isinstance(top, (faiss.IndexIDMap, faiss.IndexIDMap2)) else top
    return isinstance(inner, faiss.IndexHNSW)


def is_exact(index: faiss.Index) -> bool:
    """True when stored vectors are kept as float32 (flat, HNSW-Flat, IVF-Flat), not lossy codes."""
    top = faiss.downcast_index(index)
    inner = faiss.downcast_index(top.index) if isinstance(top, (faiss.IndexIDMap, faiss.IndexIDMap2)) else top
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    return isinstance(inner, (faiss.IndexFlat, faiss.IndexIVFFlat))


def _pq_m(dim: int) -> int:
    return next(m for m in (64, 32, 16, 8, 4, 2, 1) if dim % m == 0 and m <= dim)


def _family(factory: str) -> str:
    return re.sub(r"\d+", "", factory)


def _needs_training(factory: str, dim: int) -> bool:
    if factory in ("flat", "hnsw"):
        return False
    return not faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT).is_trained


def _train_needed(factory: str, dim: int, cfg: IndexConfig) -> int:
    ivf = _ivf(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
    need = 39 * (ivf.nlist if ivf is not None else 1)
    if "PQ" in factory:
        need = max(need, 256)  # 8-bit codebooks: at least one point per code
    return max(need, 1 if cfg.type == "auto" else cfg.train_min)
