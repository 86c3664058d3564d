"""Turning an update's decode jobs into (item, vector) pairs: one small interface, two strategies
picked by name.

More: docs/design-notes.md (``indexer.update.embedding``)."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Iterator, Protocol

import numpy as np

from indexer.faults import crash_point

from .decode import Decoded, DecodeJournal, decode_items
from .prefetch import prefetched
from .ray_embedding import ray_embedded

Job = tuple  # (path, root, input_size, max_pixels)


class EmbeddingStrategy(Protocol):
    def embedded(self, jobs: list[Job]) -> Iterator[tuple[Decoded, np.ndarray | None]]: ...


STRATEGIES: dict[str, type] = {}


def strategy(name: str):
    """Register an embedding strategy class under ``name``: ``cls(index, workers)``."""

    def register(cls):
        STRATEGIES[name] = cls
        return cls

    return register


def embedding_strategy(name: str, index, workers: int) -> EmbeddingStrategy:
    """The strategy called ``name`` for an update of ``index`` (``workers``: local decoding processes)."""
    return STRATEGIES[name](index, workers)


@strategy("local")
class LocalEmbedding:
    """``workers`` decoding processes (0: in this process, with a ``DecodeJournal`` in the index
    folder) ahead of the index's embedder, which embeds ``batch_size`` items at a time
    (``Embedder.embed_stream``: an engine in throughput mode keeps several batches in flight while
    the next ones are gathered); a problem item waits for the batch before it (job order). Batches
    are decoded, trimmed and bucketed in a thread ahead of inference (``overlap``)."""

    overlap = True

    def __init__(self, index, workers: int):
        self.index = index
        self.workers = workers
        self.batch_size = index.batch_size

    def embedded(self, jobs: list[Job]) -> Iterator[tuple[Decoded, np.ndarray | None]]:
        if not jobs:
            return
        started: deque[list[Decoded]] = deque()  # the batches handed to the embedder, oldest first
        embedder, overlap = self.index.embedder, self.overlap

        def inputs():
            journal = DecodeJournal(self.index.directory) if self.workers <= 0 else None
            decoded = decode_stream(jobs, self.workers, ahead=max(8, 4 * self.batch_size), journal=journal)
            try:
                if overlap:  # prepared one by one in this thread, batched by input shape
                    yield from _shape_batches(decoded, embedder, self.batch_size, started)
                    return
                for items in _batches(decoded, self.batch_size):
                    usable = [d for d in items if d.problem is None]
                    started.append(items)
                    yield (
                        [d.array for d in usable],  # of one shape, or a few (buckets)
                        np.array([d.valid for d in usable], dtype=np.int64).reshape(-1, 2),
                    )
            finally:
                decoded.close()  # the decoding processes stop here

        # decoding, trimming and bucketing in a thread beside inference (both release the GIL)
        batches = prefetched(inputs(), ahead=2) if overlap else inputs()
        try:
            for vectors in embedder.embed_stream(batches, ready=overlap):
                items = started.popleft()
                vecs = iter(vectors)
                if len(vectors):
                    crash_point("after_embed")
                for d in items:
                    d.array = None  # pixels are not kept
                    yield d, (None if d.problem else next(vecs))
        finally:
            batches.close()


def _shape_batches(decoded: Iterator[Decoded], embedder, batch_size: int, started: deque) -> Iterator[tuple]:
    """Ready batches (``Embedder.prepare_batch``: trimmed, in their buckets) of ``batch_size`` photos
    of one input shape each, so that photos of mixed aspects still fill every inference; each
    batch's items (problem items ride with the next batch) go to ``started`` before it is yielded.
    A video's frames keep job order in batches of their own, after what waited before them, so a
    commit never holds half a video."""
    queues: dict[tuple, list] = {}  # input shape -> [(Decoded, array, valid)], insertion order kept
    loose: list[Decoded] = []  # problem items, handed over with the next batch
    video: list[Decoded] = []  # the frames of the video being read

    def handed(items: list[Decoded]) -> None:
        started.append(loose + items)
        loose.clear()

    def emit(shape) -> tuple:
        entries = queues.pop(shape)
        handed([e[0] for e in entries])
        return [e[1] for e in entries], np.array([e[2] for e in entries], dtype=np.int64).reshape(-1, 2)

    def emit_video() -> tuple:
        handed(list(video))
        batch = embedder.prepare_batch([v.array for v in video], np.array([v.valid for v in video], np.int64))
        video.clear()
        return batch

    for d in decoded:
        if d.problem is not None:
            loose.append(d)
        elif d.source is not None:  # a video's frame: what waits goes first, then its frames in order
            for shape in list(queues):
                yield emit(shape)
            video.append(d)
            if len(video) >= batch_size or not d.more:
                yield emit_video()
        else:
            images, sizes = embedder.prepare_batch([d.array], np.array([d.valid], dtype=np.int64))
            shape = tuple(images[0].shape)
            queues.setdefault(shape, []).append((d, images[0], sizes[0]))
            if len(queues[shape]) >= batch_size:
                yield emit(shape)
    if video:  # a stream cut short inside a video
        yield emit_video()
    for shape in list(queues):
        yield emit(shape)
    if loose:
        handed([])
        yield [], np.zeros((0, 2), dtype=np.int64)


def _batches(decoded: Iterator[Decoded], batch_size: int) -> Iterator[list[Decoded]]:
    """``decoded`` in runs holding ``batch_size`` usable images each (the last one fewer), with the
    problem items among them."""
    waiting: list[Decoded] = []
    images = 0
    for d in decoded:
        waiting.append(d)
        images += d.problem is None
        if images >= batch_size:
            yield waiting
            waiting, images = [], 0
    if waiting:
        yield waiting


@strategy("ray")
class RayEmbedding:
    """Decoding and embedding on Ray (the index's ``ray`` options); the exported model is shipped
    to the actors, so it is made first when missing."""

    def __init__(self, index, workers: int):
        self.index = index

    def embedded(self, jobs: list[Job]) -> Iterator[tuple[Decoded, np.ndarray | None]]:

        if not jobs:
            return
        index = self.index
        index.ensure_exported_model()
        embedded = 0
        for d, vec in ray_embedded(
            jobs, index.spec, index.model_dir, index.ray, batch_size=index.batch_size, threads=index.threads
        ):
            if vec is not None:
                embedded += 1
                if embedded % index.batch_size == 0:
                    crash_point("after_embed")
            yield d, vec


def _isolated(job: Job) -> list[Decoded]:
    """``decode_items(job)`` in a process of its own: one problem item when the decoder crashes it."""
    import multiprocessing

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(decode_items, job).result()
        except BrokenProcessPool:
            return [Decoded(job[0], job[1], problem="the image decoder crashed on this file")]


def decode_stream(
    jobs: list[Job], workers: int, ahead: int, journal: DecodeJournal | None = None
) -> Iterator[Decoded]:
    """Decoded items (``decode_items``) in job order, ``workers`` processes decoding at most ``ahead`` files ahead of
    the consumer (bounded memory), overlapping with the caller's inference. ``workers`` 0: in this
    process, on ``DECODE_THREADS`` threads (Pillow releases the GIL while it decodes and resizes),
    each file named in ``journal`` while it is decoded; the files a run died decoding (the journal's
    ``suspects``) are decoded in a process of their own, so a file that crashes the decoder becomes
    a problem item instead of stopping every run at the same place."""
    if workers <= 0 or len(jobs) <= 1:
        yield from _decoded_here(jobs, journal)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    it = iter(jobs)
    pool = ProcessPoolExecutor(workers, mp_context=ctx)
    try:
        queue = deque((job, pool.submit(decode_items, job)) for job in islice(it, ahead))
        while queue:
            job, fut = queue.popleft()
            try:
                result = fut.result()
            except BrokenProcessPool:  # a decoder crashed the worker: blame this file, carry on
                result = [Decoded(job[0], job[1], problem="the image decoder crashed on this file")]
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(workers, mp_context=ctx)
                queue = deque((j, pool.submit(decode_items, j)) for j, _ in queue)
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(decode_items, nxt)))
            yield from result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# decoding threads of an in-process update: a 12-MP JPEG takes ~20 ms to decode even at 1/8 scale,
# so one thread capped a 2-core update at a fraction of the INT8 engine's rate (benchmarks/speed.py)
DECODE_THREADS = 2


def _decoded_here(jobs: list[Job], journal: DecodeJournal | None) -> Iterator[Decoded]:
    """``decode_stream`` in this process: ``DECODE_THREADS`` files at a time, in job order."""
    from concurrent.futures import ThreadPoolExecutor

    suspects = journal.suspects() if journal is not None else set()

    def one(job: Job) -> list[Decoded]:
        if job[0] in suspects:
            return _isolated(job)
        if journal is None:
            return decode_items(job)
        journal.mark(job[0])
        try:
            return decode_items(job)
        finally:
            journal.done(job[0])

    it = iter(jobs)
    pool = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode")
    try:
        queue = deque(pool.submit(one, job) for job in islice(it, 2 * DECODE_THREADS))
        while queue:
            result = queue.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                queue.append(pool.submit(one, nxt))
            yield from result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if journal is not None:
            journal.clear()
