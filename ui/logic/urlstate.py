"""The search page's view as URL query parameters, so a view can be bookmarked and shared and the
browser's Back goes to the previous one (no Streamlit here; the page reads and writes
``st.query_params``).

``?id=42`` (more like indexed image 42) or ``?path=/photos/a.jpg`` or ``?text=a+red+flower`` or
``?upload=<sha256>`` (an uploaded image, kept in the index's cache folder: ``ui.logic.uploads``), then
``min=0.5`` (minimum similarity), ``label=`` and ``folder=`` (repeated), ``per=`` (results per page),
``page=`` and ``open=`` (the result shown in the lightbox), ``qe=`` (query expansion's K, 0..MAX_QE;
0 = off) and ``rot=0`` (rotation search off; it is on by default: ``indexer.search.rotation``). Defaults are left out;
values that can't be read are ignored (a hand-edited link opens what it can)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from indexer.search import DEFAULT_QE, DEFAULT_ROTATIONS

PER_PAGE = (12, 30, 60, 120)
DEFAULT_PER = 30  # a 1400x900 screen shows about 30 thumbnails of the default size
MAX_QE = 10  # the largest K the page offers (benchmarks/query_expansion.py: gains stop well before)
QUERY_KEYS = ("id", "path", "text", "upload")

_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class View:
    query: tuple[str, str] | None = (
        None  # ("id", "42") | ("path", "/photos/a.jpg") | ("text", "a red flower") | ("upload", sha256)
    )
    threshold: float = 0.0
    labels: tuple[str, ...] = ()
    roots: tuple[str, ...] = ()
    per: int = DEFAULT_PER
    page: int = 1
    open: int | None = None
    qe: int = DEFAULT_QE
    rotations: bool = DEFAULT_ROTATIONS

    def params(self) -> dict[str, str | list[str]]:
        out: dict[str, str | list[str]] = {}
        if self.query is not None:
            out[self.query[0]] = self.query[1]
        if self.threshold:
            out["min"] = f"{self.threshold:.2f}"
        if self.labels:
            out["label"] = list(self.labels)
        if self.roots:
            out["folder"] = list(self.roots)
        if self.per != DEFAULT_PER:
            out["per"] = str(self.per)
        if self.page != 1:
            out["page"] = str(self.page)
        if self.open is not None:
            out["open"] = str(self.open)
        if self.qe != DEFAULT_QE:
            out["qe"] = str(self.qe)
        if self.rotations != DEFAULT_ROTATIONS:
            out["rot"] = "1" if self.rotations else "0"
        return out

    @classmethod
    def from_params(cls, get_all: Callable[[str], list[str]]) -> "View":
        """The view of a URL; ``get_all(name)`` gives every value of a parameter (``st.query_params.get_all``)."""

        def one(name):
            values = [v for v in get_all(name) if v != ""]
            return values[-1] if values else None

        query = None
        for key in QUERY_KEYS:
            value = one(key)
            if value is not None and (key != "id" or _int(value) is not None):
                query = (key, value.strip().lower() if key in ("id", "upload") else value)
                break
        threshold = _float(one("min"))
        per = _int(one("per"))
        page = _int(one("page"))
        qe = _int(one("qe"))
        rot = (one("rot") or "").strip().lower()
        return cls(
            query=query,
            threshold=min(1.0, max(0.0, round(threshold, 2))) if threshold is not None else 0.0,
            labels=tuple(v for v in get_all("label") if v),
            roots=tuple(v for v in get_all("folder") if v),
            per=per if per in PER_PAGE else DEFAULT_PER,
            page=page if page and page > 0 else 1,
            open=_int(one("open")),
            qe=qe if qe is not None and 0 <= qe <= MAX_QE else DEFAULT_QE,
            rotations=rot in _ON if rot in _ON + _OFF else DEFAULT_ROTATIONS,
        )

    def normal(self) -> "View":
        """The view as it reads back from its own URL (rounded threshold, known page size)."""
        params = self.params()
        return View.from_params(
            lambda k: [params[k]] if isinstance(params.get(k), str) else list(params.get(k, []))
        )

    def same_search(self, other: "View") -> bool:
        """The same query and filters (page and open result aside)."""
        return replace(self, page=1, open=None) == replace(other, page=1, open=None)


def _int(text):
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _float(text):
    try:
        value = float(str(text).strip())
    except (TypeError, ValueError):
        return None
    return value if value == value else None  # not NaN
