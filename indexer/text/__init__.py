"""Search by words over an index (``searcher``; the model side is ``retrieval.text``)."""

from .searcher import TextSearcher, train_text_model

__all__ = ["TextSearcher", "train_text_model"]
