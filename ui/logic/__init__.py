"""The web UI's logic, without Streamlit: settings and uploads (kept by sha256 for their URL), the
per-process ``Service`` (search, classes, thumbnails, index status), the classes as the pages say
them (``classes``: "Folder classes", "ImageNet classes", "none of these"), results paging and URL
state, dedup reports and their review, indexing in a background thread, and feature maps. Pages
and widgets use only these names."""

from .classes import FOLDER_WORD, ClassLine, index_class_rows, query_class_lines
from .dedup_compare import Comparison
from .dedup_compare import compare as compare_images
from .dedup_job import DedupJob
from .dedup_proof import COLOR as PROOF_COLOR
from .dedup_proof import EXPLAIN as PROOF_EXPLAIN
from .dedup_proof import LABEL as PROOF_LABEL
from .dedup_proof import at_least, is_safe, ordered, plan_text, proof, score_bounds
from .dedup_reports import (
    check_report,
    find_reports,
    load_report_bytes,
    load_report_file,
    load_report_path,
    member_row,
    run_dedup,
    save_report,
)
from .dedup_review import (
    CHOICES,
    KEEP,
    QUARANTINE,
    apply_choices,
    default_choice,
    default_quarantine,
    group_key,
    is_exact,
    keep_all,
    last_moved_log,
    pick_choices,
    split,
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
    "Comparison",
    "compare_images",
    "DedupJob",
    "at_least",
    "is_safe",
    "ordered",
    "plan_text",
    "proof",
    "score_bounds",
    "PROOF_COLOR",
    "PROOF_EXPLAIN",
    "PROOF_LABEL",
    "check_report",
    "find_reports",
    "load_report_bytes",
    "load_report_file",
    "load_report_path",
    "member_row",
    "run_dedup",
    "save_report",
    "CHOICES",
    "KEEP",
    "QUARANTINE",
    "apply_choices",
    "default_choice",
    "default_quarantine",
    "group_key",
    "is_exact",
    "keep_all",
    "last_moved_log",
    "pick_choices",
    "split",
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
