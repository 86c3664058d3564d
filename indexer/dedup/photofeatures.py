"""Each photo's verification features, made once: kept in memory (the most recently used), on disk
with the index (``featurecache``), and computed by exactly one thread when neither has them - two
pairs sharing a file never compute it twice, whatever the number of workers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor

from . import capture as capture_evidence
from .featurecache import FeatureCache
from .progress import ticker


class PhotoFeatures:
    """``get(path, mirrored)`` -> ``align.Features`` or None (unreadable); ``compute(path, mirrored)``
    makes them (without the capture: that comes from ``captures``, the index's capture evidence by
    path, or is read from the file when the index has none for it)."""

    def __init__(self, compute, cache_size: int = 4096, disk: FeatureCache | None = None, captures=None):
        self.compute, self.cache_size, self.disk = compute, cache_size, disk
        self.captures: dict = dict(captures or {})  # path -> capture.Capture or None
        self.computed = 0  # features computed (not found in memory or on disk)
        self.unreadable: set[str] = set()
        self._memory: OrderedDict = OrderedDict()
        self._running: dict = {}
        self._lock = threading.Lock()

    def capture_of(self, path: str):
        """The file's capture evidence: the index's, else read from the file once per run."""
        with self._lock:
            if path in self.captures:
                return self.captures[path]
        cap = capture_evidence.read_capture(path)
        with self._lock:
            self.captures[path] = cap
        return cap

    def get(self, path: str, mirrored: bool = False):
        key = (path, bool(mirrored))
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
            running = self._running.get(key)
            if running is None:
                self._running[key] = mine = Future()
        if running is not None:  # another thread is making it: wait for that
            return running.result()
        try:
            ft = self._load_or_compute(path, bool(mirrored))
        except BaseException as e:
            with self._lock:
                del self._running[key]
            mine.set_exception(e)
            raise
        with self._lock:
            self._memory[key] = ft
            while len(self._memory) > self.cache_size:
                self._memory.popitem(last=False)
            del self._running[key]
        mine.set_result(ft)
        return ft

    def _load_or_compute(self, path: str, mirrored: bool):
        stamp = FeatureCache.stamp(path) if self.disk is not None else None
        ft = self.disk.get(path, mirrored) if self.disk is not None else None
        if ft is None:
            try:
                ft = self.compute(path, mirrored)
            except Exception:  # noqa: BLE001 - vanished, changed into garbage...: it just verifies nothing
                with self._lock:
                    self.unreadable.add(path)
                return None
            with self._lock:
                self.computed += 1
            if self.disk is not None:
                self.disk.put(ft, stamp)
        ft.capture = self.capture_of(path)
        return ft

    def prefetch(self, paths, workers: int, progress=None, mirrored=()) -> None:
        """Make the features of ``paths`` on ``workers`` threads (into memory as room allows, and to
        disk), and of the mirror images of those in ``mirrored`` (right after, on the same thread:
        one decode); ``progress(done, total)``. Features the disk already holds are left to be read
        when a pair needs them (a later run may need few of them)."""
        paths = list(dict.fromkeys(paths))
        mirrored = set(mirrored)
        if self.disk is not None and self.disk.db is not None:
            have = self.disk.stored([(p, False) for p in paths] + [(p, True) for p in mirrored])
            paths = [p for p in paths if (p, False) not in have or (p in mirrored and (p, True) not in have)]

        def both(path):
            self.get(path)
            if path in mirrored:
                self.get(path, True)

        if not paths or ((self.disk is None or self.disk.db is None) and len(paths) > self.cache_size):
            return  # nowhere to keep them all: each is made when a pair first needs it
        tick = ticker(progress, len(paths))
        with ThreadPoolExecutor(workers) as pool:
            for done, _ in enumerate(pool.map(both, paths), 1):
                tick(done)
        self.flush()

    def flush(self) -> None:
        if self.disk is not None:
            self.disk.flush()

    def close(self) -> None:
        if self.disk is not None:
            self.disk.close()
