"""How an image query is searched, in one value: query expansion, neighbour re-ranking, rotation
search and the FAISS breadth. ``Index.search`` and the CLI take these as keyword arguments; the
search functions (``vector_search``) pass one ``SearchOptions`` along instead of six parameters."""

from __future__ import annotations

from dataclasses import dataclass, replace

from retrieval.errors import UserError

from . import neighbour_rerank as nr
from . import query_expansion as qx
from . import rotation


@dataclass(frozen=True)
class SearchOptions:
    """None means the module's default (``query_expansion.DEFAULT_QE``,
    ``neighbour_rerank.DEFAULT_RERANK``, ``rotation.DEFAULT_ROTATIONS``, the index's stored
    nprobe/ef_search)."""

    qe: int | None = None  # alpha-QE over the top qe hits (0: off)
    qe_alpha: float = qx.DEFAULT_ALPHA  # QE weights: score ** qe_alpha
    rerank: int | None = None  # the top rerank hits re-scored with their neighbours (0: off)
    rotations: bool | None = None  # image queries also searched turned by 90 and 270 degrees
    nprobe: int | None = None  # IVF lists visited
    ef_search: int | None = None  # HNSW breadth

    def resolved(self) -> "SearchOptions":
        """The defaults filled in, every value checked (UserError naming the option)."""
        for name, value in (("nprobe", self.nprobe), ("ef-search", self.ef_search)):
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1 (got {value})")
        out = replace(
            self,
            qe=qx.DEFAULT_QE if self.qe is None else self.qe,
            rerank=nr.DEFAULT_RERANK if self.rerank is None else self.rerank,
            rotations=rotation.DEFAULT_ROTATIONS if self.rotations is None else bool(self.rotations),
        )
        qx.check_options(out.qe, out.qe_alpha)
        nr.check_depth(out.rerank)
        return out
