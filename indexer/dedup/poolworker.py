"""A verification worker process of ``pool`` (``python -c "from indexer.dedup.poolworker import
serve; serve()"``): its settings, then chunks of pairs, pickled on stdin; the results on stdout."""

from __future__ import annotations

import os
import pickle
import sys

from .pool import WORKER_MEMORY, verify_chunk
from .verify import Verifier


def serve() -> None:
    """A worker: (settings, captures), then chunks of pairs on stdin; their results on stdout."""
    import cv2

    cv2.setNumThreads(1)  # one thread per worker process: the workers fill the cores
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library's print cannot get into the results
    inp = sys.stdin.buffer
    settings, captures = pickle.load(inp)
    verifier = Verifier(**settings, captures=captures, workers=1, cache_size=WORKER_MEMORY)
    while True:
        try:
            items = pickle.load(inp)
        except EOFError:
            return
        pickle.dump(verify_chunk(verifier, items), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()
