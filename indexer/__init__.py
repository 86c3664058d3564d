"""vgg-retrieval, indexer side: scanning folders, the FAISS + SQL index, search and checks."""
from .index import CheckReport, Index, SearchHit, UpdateReport

__all__ = ["Index", "SearchHit", "UpdateReport", "CheckReport"]
