"""Crash points for the crash-safety tests and the soak script.

``VGG_RETRIEVAL_CRASH_AT=<point>`` makes the process SIGKILL itself when it reaches that point, so a
test can kill an index update exactly where a power cut hurts most. Unset (always, in normal use),
``crash_point`` is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal

ENV = "VGG_RETRIEVAL_CRASH_AT"
# creating a new index (indexer.storage.creating): a kill at each leaves a folder the next run makes again
CREATE_POINTS = (
    "create_started",  # the folder is marked as being made, nothing else written
    "model_exported",  # model/ holds the FP32 export
    "model_quantized",  # the INT8 model is complete in a temporary folder, model/ still FP32
    "model_ready",  # model/ holds the final model, no database yet
    "database_opened",  # the database exists (SQLite: a file with empty tables), no meta yet
)
POINTS = (
    "after_scan",  # the folders were walked, nothing written yet
    "after_embed",  # the first batch was embedded, nothing saved
    "vectors_tmp_written",  # the new vectors file exists under its temporary name
    "vectors_renamed",  # the new vectors file has its final name, the database does not know it
    "after_commit",  # the database names the new file, the old one is still there
)

# dedup apply and undo (indexer.dedup.journal): a kill at each leaves files and index consistent after
# the next run of index, dedup apply or dedup undo
APPLY_POINTS = (
    "apply_locked",  # the index's write lock is held, nothing checked or written
    "apply_journal_written",  # the signed undo log and the index's journal exist, nothing moved
    "apply_half_moved",  # the first file has its quarantine name and still its old one
    "apply_moved_one",  # the first file is in the quarantine only
    "apply_moved_all",  # every file is in the quarantine, the index still names them
    "apply_index_updated",  # the index forgot them, the journal is still there
)
UNDO_POINTS = (
    "undo_locked",  # the index's write lock is held, the log not yet read
    "undo_journal_written",  # the log says "restoring" and the journal names it, nothing moved
    "undo_half_moved",  # the first file is back and still in the quarantine
    "undo_moved_one",  # the first file is back only
    "undo_moved_all",  # every file is back, the log still says "restoring"
    "undo_log_marked",  # the log says "undone", the journal is still there
)

# "decode:<file name>": decoding that file, where a crashing image decoder would kill its process
DECODE_POINT = "decode:"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
