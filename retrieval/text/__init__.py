"""Search by words over the index's stored VGG descriptors: training captions (``captions``), the
towers and their training (``model``, ``train``; torch), the query side without torch (``search``).
See docs/text-search.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.lazy import lazy_names

if TYPE_CHECKING:  # for readers and type checkers; at run time each name loads on first use
    from .captions import index_captions
    from .search import CONFIG, TEXT_DIR, TextQueryModel, has_text_model, text_dir
    from .train import train_text_model

_NAMES = {
    "TextQueryModel": ".search",
    "has_text_model": ".search",
    "text_dir": ".search",
    "CONFIG": ".search",
    "TEXT_DIR": ".search",
    "index_captions": ".captions",
    "train_text_model": ".train",
}
__getattr__ = lazy_names(__name__, _NAMES)
__all__ = [
    "CONFIG",
    "TEXT_DIR",
    "TextQueryModel",
    "has_text_model",
    "index_captions",
    "text_dir",
    "train_text_model",
]
