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
    "create_started",      # the folder is marked as being made, nothing else written
    "model_exported",      # model/ holds the FP32 export
    "model_quantized",     # the INT8 model is complete in a temporary folder, model/ still FP32
    "model_ready",         # model/ holds the final model, no database yet
    "database_opened",     # the database exists (SQLite: a file with empty tables), no meta yet
)
POINTS = (
    "after_scan",          # the folders were walked, nothing written yet
    "after_embed",         # the first batch was embedded, nothing saved
    "vectors_tmp_written", # the new vectors file exists under its temporary name
    "vectors_renamed",     # the new vectors file has its final name, the database does not know it
    "after_commit",        # the database names the new file, the old one is still there
)

# "decode:<file name>": decoding that file, where a crashing image decoder would kill its process
DECODE_POINT = "decode:"


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
