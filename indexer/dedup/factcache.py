"""What ``dedup`` reads from each file before it verifies anything - the file's quality for the keeper
order (``quality.read_quality``) and its layout for turned copies (``rotated.rotated_pairs``) - kept
with the index, so that a later run decodes no file it has seen unchanged.

Without it every run decodes every photo with a candidate twice (a 1/8 draft of a 12-megapixel
JPEG is about 10 ms each), before a single pair is verified. The facts live in the feature cache's
SQLite file (``indexer.storage.layout.FEATURE_CACHE``), table ``facts``: one row per (kind, path),
valid while the file keeps its size and modification time and the kind its ``version``. Like the
feature cache it is only a cache: a file that cannot be opened, written or read means reading the
photos again, never an error. ``cached_map`` is the one way in.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from .featurecache import FeatureCache, prune_table, rollback
from .progress import ticker

_stamp = FeatureCache.stamp  # (size, mtime_ns) of a file now, or None

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS facts (kind TEXT NOT NULL, path TEXT NOT NULL, size INTEGER, "
    "mtime_ns INTEGER, version TEXT, data BLOB, PRIMARY KEY (kind, path))"
)


@lru_cache(maxsize=None)
def code_version(*files: str) -> str:
    """A version for facts made by the code in ``files`` (module paths): a hash of their bytes, so
    that a change to that code makes every stored fact stale. Without readable sources (a frozen
    install), one that no stored row matches."""
    try:
        data = b"".join(open(f, "rb").read() for f in files)
    except OSError:
        return f"unknown-{time.time_ns()}"
    return hashlib.sha256(data).hexdigest()[:16]


class FactCache:
    """Per-file facts on disk, keyed by (kind, path) and checked against the file's size and mtime."""

    def __init__(self, file, keep=None):
        """``keep``: when given, ``keep()`` -> the paths still indexed, whose facts are kept on exit
        (``with FactCache(...)``); the others are forgotten."""
        self.file, self.keep = str(file), keep
        self.db = self._open()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.keep is not None and exc[0] is None:
            self.prune(self.keep())
        self.close()

    def _open(self):
        try:
            db = sqlite3.connect(self.file, check_same_thread=False, isolation_level=None, timeout=5)
            db.execute("PRAGMA synchronous=OFF")
            db.execute(SCHEMA)
            db.execute("SELECT count(*) FROM facts").fetchone()
            return db
        except (sqlite3.Error, OSError):  # read-only folder, not a database...: read the files again
            return None

    def get(self, kind: str, version: str, paths: list[str]) -> dict:
        """{path: (stamp, data)} of the rows still valid for the files as they are now."""
        if self.db is None or not paths:
            return {}
        found = {}
        try:
            for n in range(0, len(paths), 500):
                part = paths[n : n + 500]
                found.update(
                    (p, ((size, mtime), data))
                    for p, size, mtime, v, data in self.db.execute(
                        "SELECT path, size, mtime_ns, version, data FROM facts WHERE kind = ? AND path IN "
                        f"({','.join('?' * len(part))})",
                        [kind, *part],
                    )
                    if v == version
                )
        except sqlite3.Error:
            return {}
        return {p: data for p, (stamp, data) in found.items() if _stamp(p) == stamp}

    def put(self, kind: str, version: str, rows: list) -> None:
        """Store ``rows``: (path, stamp taken before the file was read, data bytes)."""
        rows = [(kind, p, s[0], s[1], version, sqlite3.Binary(d)) for p, s, d in rows if s is not None]
        if self.db is None or not rows:
            return
        try:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO facts VALUES (?, ?, ?, ?, ?, ?)", rows)
            self.db.execute("COMMIT")
        except sqlite3.Error:
            rollback(self.db)

    def prune(self, keep) -> int:
        """Forget the facts of paths not in ``keep`` (photos gone from the index); how many paths."""
        if self.db is None:
            return 0
        return prune_table(self.db, "facts", set(keep))

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None


def cached_map(
    read, paths: list[str], cache: FactCache | None, kind: str, codec, workers: int = 4, progress=None
):
    """``[read(p) for p in paths]`` (threads), the files whose facts ``cache`` holds not read at all;
    ``codec``: (version() -> str (``code_version``), encode(fact) -> bytes or None to keep it out,
    decode(bytes) -> fact); ``progress(done, total)``: the files read so far, of those to read.
    Returns (facts, stats): stats has ``{kind}_seconds`` and ``{kind}_cached`` (files not read)."""
    t0 = time.perf_counter()
    version, encode, decode = codec
    version = version()
    known = cache.get(kind, version, paths) if cache is not None else {}
    out: list = [None] * len(paths)
    todo = []
    for n, p in enumerate(paths):
        try:
            out[n] = decode(known[p]) if p in known else None
        except Exception:  # noqa: BLE001 - a row that does not decode is read again (and replaced)
            known.pop(p)
        if p not in known:
            todo.append(n)
    if todo:
        # stamped before reading: a file changed meanwhile is read again next run
        stamps = [_stamp(paths[n]) for n in todo]
        found, tick = [], ticker(progress, len(todo))
        with ThreadPoolExecutor(workers) as pool:
            for fact in pool.map(read, [paths[n] for n in todo]):
                found.append(fact)
                tick(len(found))
        rows = []
        for n, stamp, fact in zip(todo, stamps, found):
            out[n] = fact
            data = encode(fact)
            if data is not None:
                rows.append((paths[n], stamp, data))
        if cache is not None:
            cache.put(kind, version, rows)
    stats = {f"{kind}_seconds": round(time.perf_counter() - t0, 3), f"{kind}_cached": len(paths) - len(todo)}
    return out, stats
