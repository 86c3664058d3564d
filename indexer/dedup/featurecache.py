"""The verifier's per-photo features (``align.Features``: ORB keypoints and descriptors, the small
and compare-resolution grey copies), kept with the index so that a second ``dedup`` computes none.

One SQLite file in the index folder (``indexer.storage.layout.FEATURE_CACHE``), one row per (path,
mirrored), valid while the file keeps its size and modification time and the verifier its settings
(``params``): a changed photo is computed again. It is a cache: a file that cannot be opened,
written or read (read-only media, a corrupt file, a row that does not decode) only means computing
again - never an error. The grey images are stored as PNG (they are uint8 pictures: the floats the
verifier uses come back bit for bit), keypoints and descriptors as raw arrays.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading

import numpy as np

from .align import Features

VERSION = 1
COMMIT_EVERY = 64  # rows written between commits (a cache: nothing is lost but time)


def _png(img: np.ndarray) -> bytes:
    import cv2

    # Huffman coding only: 25% faster to write than zlib level 1 and 15% smaller on photos (measured
    # on paris5's 384 px grey copies: 2.3 against 3.1 ms, 51 against 60 KB); lossless either way
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    ok, buf = cv2.imencode(".png", np.asarray(img, np.uint8), params)
    if not ok:  # pragma: no cover - encoding a uint8 array does not fail
        raise ValueError("png")
    return buf.tobytes()


def _unpng(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("png")
    return img.astype(np.float32)


def encode(ft: Features) -> bytes:
    """``ft`` (its capture left out: that is the index's) as bytes."""
    parts = [
        np.ascontiguousarray(ft.points, np.float32).tobytes(),
        np.ascontiguousarray(ft.descriptors, np.uint8).tobytes(),
        _png(ft.small),
        _png(ft.mid) if ft.mid is not None else b"",
    ]
    head = json.dumps(
        {
            "n": len(ft.points),
            "d": int(ft.descriptors.shape[1]) if ft.descriptors.ndim == 2 else 32,
            "size": list(ft.size),
            "native": list(ft.native) if ft.native else None,
            "lengths": [len(p) for p in parts],
        }
    ).encode()
    return len(head).to_bytes(4, "little") + head + b"".join(parts)


def decode(data: bytes, path: str, mirrored: bool) -> Features:
    """The Features that ``encode`` wrote (ValueError, KeyError... when ``data`` is not that)."""
    n_head = int.from_bytes(data[:4], "little")
    head = json.loads(data[4 : 4 + n_head])
    pos, parts = 4 + n_head, []
    for length in head["lengths"]:
        parts.append(data[pos : pos + length])
        pos += length
    if pos != len(data):
        raise ValueError("length")
    n, d = int(head["n"]), int(head["d"])
    points = np.frombuffer(parts[0], np.float32).reshape(n, 2).copy()
    desc = np.frombuffer(parts[1], np.uint8).reshape(n, d).copy()
    return Features(
        points,
        desc,
        tuple(head["size"]),
        _unpng(parts[2]),
        _unpng(parts[3]) if parts[3] else None,
        None,
        tuple(head["native"]) if head["native"] else None,
        path,
        mirrored,
    )


def rollback(db) -> None:
    """Roll back ``db``'s open transaction, if it has one (a cache: what was not written is made again)."""
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        pass


def prune_table(db, table: str, keep: set, columns: tuple = ("path",)) -> int:
    """Delete the rows of ``table`` (a cache table) with a path not in ``keep`` in any of its
    ``columns``; how many paths (0 when the database cannot be read or written)."""
    gone: set = set()
    try:
        for column in columns:
            drop = [p for (p,) in db.execute(f"SELECT DISTINCT {column} FROM {table}") if p not in keep]
            for n in range(0, len(drop), 500):
                part = drop[n : n + 500]
                db.execute(f"DELETE FROM {table} WHERE {column} IN ({','.join('?' * len(part))})", part)
            gone.update(drop)
    except sqlite3.Error:
        return 0
    return len(gone)


class FeatureCache:
    """Features on disk, keyed by (path, mirrored) and checked against the file's size and mtime."""

    def __init__(self, file, params: dict):
        self.file, self.params = str(file), json.dumps({"v": VERSION, **params}, sort_keys=True)
        self._lock = threading.Lock()
        self._pending = 0
        self.hits = self.misses = self.writes = 0
        self.db = self._open()

    def _open(self):
        for attempt in (0, 1):
            try:
                db = sqlite3.connect(self.file, check_same_thread=False, isolation_level=None)
                db.execute("PRAGMA synchronous=OFF")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS features (path TEXT NOT NULL, mirrored INTEGER NOT NULL, "
                    "size INTEGER, mtime_ns INTEGER, params TEXT, data BLOB, PRIMARY KEY (path, mirrored))"
                )
                db.execute("SELECT count(*) FROM features").fetchone()
                return db
            except (sqlite3.Error, OSError):
                if attempt or not os.path.isfile(self.file):
                    return None  # cannot be made here (read-only folder...): memory only
                try:  # not a database (or a damaged one): start it again
                    os.remove(self.file)
                except OSError:
                    return None
        return None

    @staticmethod
    def stamp(path: str):
        """(size, mtime_ns) of the file now, or None when it cannot be seen."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return int(st.st_size), int(st.st_mtime_ns)

    def get(self, path: str, mirrored: bool) -> Features | None:
        """The stored features of ``path`` if they were made from the file as it is now."""
        if self.db is None:
            return None
        stamp = self.stamp(path)
        try:
            with self._lock:
                row = self.db.execute(
                    "SELECT size, mtime_ns, params, data FROM features WHERE path = ? AND mirrored = ?",
                    (path, int(mirrored)),
                ).fetchone()
        except sqlite3.Error:
            row = None
        if row is None or stamp is None or tuple(row[:2]) != stamp or row[2] != self.params:
            self.misses += 1
            return None
        try:
            ft = decode(bytes(row[3]), path, mirrored)
        except Exception:  # noqa: BLE001 - a damaged row is computed again (and replaced)
            self.misses += 1
            return None
        self.hits += 1
        return ft

    def stored(self, keys) -> set:
        """Those of ``keys`` ((path, mirrored) pairs) whose stored features are valid for the files
        as they are now (without reading the features themselves)."""
        keys = set(keys)
        paths = sorted({p for p, _ in keys})
        found = set()
        try:
            for n in range(0, len(paths), 500):
                part = paths[n : n + 500]
                for path, mirrored, size, mtime, params in self.execute(
                    "SELECT path, mirrored, size, mtime_ns, params FROM features WHERE path IN "
                    f"({','.join('?' * len(part))})",
                    part,
                ):
                    key = (path, bool(mirrored))
                    if key in keys and params == self.params and self.stamp(path) == (size, mtime):
                        found.add(key)
        except sqlite3.Error:
            return set()
        return found

    def put(self, ft: Features, stamp) -> None:
        """Store ``ft`` as made from the file when it had ``stamp`` (its size and mtime before reading)."""
        if self.db is None or stamp is None:
            return
        row = (ft.path, int(ft.mirrored), stamp[0], stamp[1], self.params, sqlite3.Binary(encode(ft)))
        if self.write("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?)", [row]):
            self.writes += 1

    def write(self, sql: str, rows: list) -> bool:
        """Run ``sql`` for each of ``rows`` in the open batch transaction (committed every
        ``COMMIT_EVERY`` rows and by ``flush``); False when it could not be written. Every table of
        the file (``paircache`` too) writes through this one connection: two connections with open
        transactions on one file would each wait on the other's lock."""
        if self.db is None or not rows:
            return False
        with self._lock:
            try:
                if self._pending == 0:
                    self.db.execute("BEGIN")
                self.db.executemany(sql, rows)
                self._pending += len(rows)
                if self._pending >= COMMIT_EVERY:
                    self.db.execute("COMMIT")
                    self._pending = 0
            except sqlite3.Error:
                self._pending = 0
                rollback(self.db)
                return False
        return True

    def execute(self, sql: str, params=()) -> list:
        """The rows of one statement on this connection (sqlite3.Error when it fails)."""
        if self.db is None:
            raise sqlite3.OperationalError("no cache file")
        with self._lock:
            return self.db.execute(sql, params).fetchall()

    def prune(self, keep, table: str = "features", columns: tuple = ("path",)) -> int:
        """Forget the rows of ``table`` (this file's features, or another cache table written through
        this connection) whose ``columns`` name a path not in ``keep`` (photos gone from the index);
        how many paths."""
        if self.db is None:
            return 0
        keep = set(keep)
        self.flush()
        with self._lock:
            return prune_table(self.db, table, keep, columns)

    def flush(self) -> None:
        if self.db is None:
            return
        with self._lock:
            try:
                if self._pending:
                    self.db.execute("COMMIT")
            except sqlite3.Error:
                pass
            self._pending = 0

    def close(self) -> None:
        self.flush()
        if self.db is not None:
            self.db.close()
            self.db = None
