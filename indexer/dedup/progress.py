"""The dedup stages' progress callbacks, thinned: called about once per 1/``parts`` of the work."""

from __future__ import annotations


def ticker(progress, total: int, parts: int = 100):
    """``tick(done)``: calls ``progress(done, total)`` at every ``total // parts``-th item and at the
    last one; does nothing without ``progress``."""
    step = max(1, total // parts)

    def tick(done: int) -> None:
        if progress and (done % step == 0 or done == total):
            progress(done, total)

    return tick
