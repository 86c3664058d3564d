"""Running a generator ahead of its consumer in a thread: in-process decoding (Pillow releases the
GIL while it decodes and resizes) overlaps with inference (OpenVINO releases it too) on the same
cores. Measured: benchmarks/decode_overlap.py."""

from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def prefetched(items: Iterator[T], ahead: int) -> Iterator[T]:
    """``items`` in order, produced by a thread at most ``ahead`` items ahead. An exception in the
    producer is raised here; closing this generator stops the producer (and closes ``items`` in its
    thread) before it returns."""
    q: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((item, None)):
                    break
        except BaseException as e:  # handed to the consumer
            put((_DONE, e))
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put((_DONE, None))

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
