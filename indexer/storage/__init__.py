"""An index on disk: the folder, its write lock and model (``folder``, ``layout``, ``creating``), the
metadata database (``store``: all SQL; ``tables``; ``database_link``), the vectors as loaded
(``loaded_vectors``) and their whitened copy (``whitened_vectors``)."""

from .folder import check_writable, write_lock
from .layout import DB_FILE, LOCK_FILE, MODEL_DIR
from .offline import since_text
from .store import Store
from .whitened_vectors import describe as describe_whitening

__all__ = [
    "check_writable",
    "write_lock",
    "DB_FILE",
    "LOCK_FILE",
    "MODEL_DIR",
    "Store",
    "describe_whitening",
    "since_text",
]
