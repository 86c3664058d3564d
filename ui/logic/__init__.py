"""The web UI's logic, without Streamlit: settings and uploads (kept by sha256 for their URL), the
per-process ``Service`` (search, classes, thumbnails, index status), the classes as the pages say
them (``classes``: "Folder classes", "ImageNet classes", "none of these"), results paging and URL
state, dedup reports and their review, indexing in a background thread, and feature maps. Pages
and widgets use only these names."""

from .classes import FOLDER_WORD, ClassLine, index_class_rows, query_class_lines
from .dedup_reports import (
    find_reports,
    load_report_bytes,
    load_report_file,
    member_row,
    run_dedup,
    save_report,
)
from .dedup_review import (
    CHOICES,
    KEEP,
    apply_choices,
    default_choice,
    default_quarantine,
    group_key,
    is_exact,
    keep_all,
    last_moved_log,
    undo_action,
)
from .feature_maps import conv_layers, feature_maps, maps_grid
from .indexing import IndexingJob, Outcome, checked_folder
from .results import (
    CaptureFilter,
    Identity,
    arrange,
    is_query,
    page_of_results,
    row_identity,
    upload_identity,
)
from .service import Service
from .settings import (
    DEFAULT_MAX_UPLOAD_MB,
    ENV_ENGINE,
    ENV_INDEX,
    ENV_MAX_UPLOAD_MB,
    ENV_READ_ONLY,
    ROOT,
    UPLOAD_TYPES,
    Settings,
    human_bytes,
    message,
)
from .uploads import crop, jpeg_bytes, keep_upload, kept_upload, preview, read_upload
from .urlstate import DEFAULT_PER, MAX_QE, PER_PAGE, View

__all__ = [
    "FOLDER_WORD",
    "ClassLine",
    "index_class_rows",
    "query_class_lines",
    "find_reports",
    "load_report_bytes",
    "load_report_file",
    "member_row",
    "run_dedup",
    "save_report",
    "CHOICES",
    "KEEP",
    "apply_choices",
    "default_choice",
    "default_quarantine",
    "group_key",
    "is_exact",
    "keep_all",
    "last_moved_log",
    "undo_action",
    "conv_layers",
    "feature_maps",
    "maps_grid",
    "IndexingJob",
    "Outcome",
    "checked_folder",
    "Identity",
    "arrange",
    "is_query",
    "page_of_results",
    "row_identity",
    "upload_identity",
    "CaptureFilter",
    "Service",
    "DEFAULT_MAX_UPLOAD_MB",
    "ENV_ENGINE",
    "ENV_INDEX",
    "ENV_MAX_UPLOAD_MB",
    "ENV_READ_ONLY",
    "ROOT",
    "UPLOAD_TYPES",
    "Settings",
    "human_bytes",
    "message",
    "crop",
    "jpeg_bytes",
    "preview",
    "read_upload",
    "keep_upload",
    "kept_upload",
    "DEFAULT_PER",
    "MAX_QE",
    "PER_PAGE",
    "View",
]
