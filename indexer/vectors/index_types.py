"""Index types (``--index-type``): the config stored in the ``vectors_index`` meta, the structure a
type wants for a collection's size, and building, training and converting to it."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

from retrieval.errors import UserError

from .stored import _add, all_vectors, ids_of, ivf_of, new_index

KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")
FLAT_LIMIT = 200_000  # auto: exact search below this many vectors (measured: benchmarks/faiss_scale.py)
PQ_LIMIT = 10_000_000  # auto: IVF-SQ8 (512 B/vector) below, OPQ+IVF-PQ64 (64 B/vector) from here
TRAIN_MIN = 50_000  # ivf/ivfpq/raw IVF: stay flat until this many vectors (and >= 39 per list)
DEFAULT_NPROBE = 32  # benchmarks/faiss_scale.py: see docs/index-types.md
DEFAULT_EF_SEARCH = 64
HNSW_M = 32
FLAT_QUANTIZER_MAX = 16384  # up to this many lists the coarse quantizer is exact (~1 ms per query at 16k)
QUANTIZER_EF = 128  # an HNSW coarse quantizer's search width when adding vectors
GROW = 4  # auto/ivf/ivfpq re-train when the collection is GROW x what the type was built for


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
        raise UserError(
            f"--index-type {text!r}: not one of {', '.join(KINDS)} and not a FAISS factory string"
        ) from None
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


def build(
    factory: str, x: np.ndarray, ids: np.ndarray, cfg: IndexConfig | None = None, seed: int = 1234
) -> faiss.Index:
    """A ``factory`` index holding ``x`` under ``ids`` (trained on a sample of ``x`` when needed)."""
    dim = x.shape[1]
    if factory == "flat":
        index = new_index(dim)
    elif factory == "hnsw":
        index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT))
    else:
        index = train(factory, x, seed=seed)
        if ivf_of(index) is not None:
            ivf_of(index).set_direct_map_type(faiss.DirectMap.Hashtable)
        elif not isinstance(faiss.downcast_index(index), faiss.IndexIDMap):
            index = faiss.IndexIDMap2(index)
    _add(index, x, ids)
    return index


def train(factory: str, x: np.ndarray, seed: int = 1234, sample: int | None = None) -> faiss.Index:
    """An empty ``factory`` index trained on (a sample of) ``x``: the template shard workers clone."""
    index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if index.is_trained:
        return index
    ivf = ivf_of(index)
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


def _pq_m(dim: int) -> int:
    return next(m for m in (64, 32, 16, 8, 4, 2, 1) if dim % m == 0 and m <= dim)


def _family(factory: str) -> str:
    return re.sub(r"\d+", "", factory)


def _needs_training(factory: str, dim: int) -> bool:
    if factory in ("flat", "hnsw"):
        return False
    return not faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT).is_trained


def _train_needed(factory: str, dim: int, cfg: IndexConfig) -> int:
    ivf = ivf_of(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
    need = 39 * (ivf.nlist if ivf is not None else 1)
    if "PQ" in factory:
        need = max(need, 256)  # 8-bit codebooks: at least one point per code
    return max(need, 1 if cfg.type == "auto" else cfg.train_min)
