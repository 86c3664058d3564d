"""Pair verification on worker processes: each pair's tests are numpy and OpenCV calls on small
images, much of it Python that holds the GIL, so threads share one core for that part; processes
use every core. Each worker is a ``verify.Verifier`` with the caller's settings that reads the
photos' features from the index's feature cache (``featurecache``, filled by ``prefetch`` before
the pairs) into its own bounded memory, and verifies chunks of pairs that share a first photo.
The evidence is the same as on one thread (``tests/indexer/test_dedup_speed.py``).

The workers are plain ``python -c`` processes fed pickled chunks on a pipe, not ``multiprocessing``:
its "spawn" runs the caller's main script again in each worker (a script without a ``__main__``
guard would run twice), and "fork" copies a process whose OpenMP threads (FAISS) cannot follow.
A worker that fails or dies leaves its chunks to the calling process: never an error."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading

MIN_PAIRS = 256  # fewer pairs than this: threads (starting the processes costs about a second)
CHUNK = 32  # pairs per task (sorted pairs: neighbours share their first photo)
WORKER_MEMORY = 1024  # features each worker keeps in memory (about 0.5 MB each)
_SERVE = "from indexer.dedup.poolworker import serve; serve()"


def verify_chunk(verifier, items: list) -> tuple[list, list, int]:
    """((n, Evidence) for each (n, path_a, path_b, mirror) of ``items``, unreadable paths, features made)."""
    before = verifier.store.computed
    out = [(n, verifier.compare(a, b, mirror=m)) for n, a, b, m in items]
    verifier.store.flush()  # features made here are kept for the next run (and the other workers)
    return out, sorted(verifier.unreadable), verifier.store.computed - before


def _start(settings: dict, captures: dict):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # the caller's code
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    pickle.dump((settings, captures), proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
    proc.stdin.flush()
    return proc


def verify_in_processes(verifier, pairs: list, order: list, mirror: list, progress=None) -> list:
    """``verifier.verify`` of ``pairs`` (in ``order``) on ``verifier.workers`` processes."""
    store = verifier.store
    settings = {
        "features": verifier.features,
        "max_side": verifier.max_side,
        "min_keypoints": verifier.min_keypoints,
        "cache_file": store.disk.file,
        "settle_early": verifier.settle_early,
    }
    store.flush()
    out: list = [None] * len(pairs)
    chunks = [
        [(n, *pairs[n], bool(mirror[n])) for n in order[s : s + CHUNK]] for s in range(0, len(order), CHUNK)
    ]
    chunks.reverse()  # popped from the end: in order
    lock, state = threading.Lock(), {"done": 0}
    step = max(1, len(pairs) // 100)
    captures = dict(store.captures)

    def take(result):
        found, unreadable, computed = result
        with lock:
            for n, ev in found:
                out[n] = ev
            store.unreadable.update(unreadable)
            store.computed += computed
            before = state["done"]
            state["done"] = done = before + len(found)
            if progress and (done // step != before // step or done == len(pairs)):
                progress(done, len(pairs))

    def feed():
        proc = None
        try:
            proc = _start(settings, captures)
        except OSError:
            pass
        while True:
            with lock:
                if not chunks:
                    break
                items = chunks.pop()
            result = None
            if proc is not None:
                try:
                    pickle.dump(items, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                    proc.stdin.flush()
                    result = pickle.load(proc.stdout)
                except Exception:  # noqa: BLE001 - a worker gone: the rest is verified here
                    proc.kill()
                    proc = None
            take(result if result is not None else verify_chunk(verifier, items))
        if proc is not None:
            proc.stdin.close()
            proc.wait()

    threads = [threading.Thread(target=feed, daemon=True) for _ in range(verifier.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out
