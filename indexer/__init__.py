"""vgg-retrieval's indexer: an index of photo and video folders (``Index``), opened or created with
the CLI's model options (``open_or_create``), and what its operations report."""

from .index import Index
from .opening import (
    EngineChoice,
    ModelChoice,
    build_model,
    default_precision,
    open_or_create,
    ray_settings,
    resolve_index_type,
)
from .reports import Capture, CheckReport, SearchHit, UpdateReport
from .student import optimize_index

__all__ = [
    "Index",
    "EngineChoice",
    "ModelChoice",
    "build_model",
    "default_precision",
    "open_or_create",
    "ray_settings",
    "resolve_index_type",
    "Capture",
    "CheckReport",
    "SearchHit",
    "UpdateReport",
    "optimize_index",
]
