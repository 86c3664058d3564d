"""Verified pairs kept with the index, so that a later ``dedup`` verifies only the pairs it has not
seen with both files unchanged - and reads no photo's features for the rest.

Verifying a candidate pair is most of a run (holidays150: ~2.5 ms of CPU a pair, 9 pairs a photo;
the pairs of same-scene series cost ~16 ms each). Every pair's ``rule.Evidence`` is a function of
its two files, the verifier's settings and the code, so it is stored in the feature cache's SQLite
file (``indexer.storage.layout.FEATURE_CACHE``), table ``pairs``: one row per (a, b, mirror) as
``batch.Settled`` asks for it, valid while both files keep their size and modification time and
``version_of(verifier)`` is unchanged: the verification modules' bytes (``factcache.code_version``),
OpenCV's, Pillow's, numpy's and FAISS's versions, and the verifier's settings. A report from
stored evidence is the report the pairs would give again. The keeper checks of duplicate groups
(``keeper.made_from``: is one file made from the other?) are facts of two files too, kept in the
same table (``MADE_FROM`` rows). Like the other caches it is only a
cache: a file that cannot be opened, written or read, or a row that does not decode, means
verifying the pair again, never an error. Rows of photos gone from the index, and rows of another
version, are deleted when the run closes it.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import fields

from .factcache import code_version
from .featurecache import FeatureCache
from .keeper import MADE_KINDS
from .rule import Evidence

_stamp = FeatureCache.stamp
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
# the code a pair's evidence comes from (a change to any of them makes every stored pair stale)
MODULES = tuple(
    os.path.join(_HERE, m)
    for m in (
        "verify.py",
        "align.py",
        "copytests.py",
        "retake.py",
        "rule.py",
        "capture.py",
        "photofeatures.py",
        "keeper.py",
        "featurecache.py",
        "paircache.py",
        "resave.py",
        "quality.py",
    )
) + tuple(os.path.join(_ROOT, "retrieval", m) for m in ("preprocess.py", "formats.py"))
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS pairs (a TEXT NOT NULL, b TEXT NOT NULL, mirror INTEGER NOT NULL, "
    "a_size INTEGER, a_mtime_ns INTEGER, b_size INTEGER, b_mtime_ns INTEGER, version TEXT, data BLOB, "
    "PRIMARY KEY (a, b, mirror))"
)
_DEFAULTS = {f.name: f.default for f in fields(Evidence)}
# the ``mirror`` column: 0 and 1, a pair's evidence without and with its mirrored comparison (as
# ``batch.Settled`` asks for it); MADE_FROM, ``keeper.made_from(a, b, ev)`` (a digest of ev, b":"
# and the kind, one of ``keeper.MADE_KINDS``)
MADE_FROM = 2
INSERT = "INSERT OR REPLACE INTO pairs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


def version_of(verifier) -> str:
    """The version of the evidence ``verifier`` (a ``verify.Verifier``) gives: its code, the
    libraries under it and its settings."""
    import cv2
    import faiss
    import numpy
    import PIL

    settings = {
        "code": code_version(*MODULES),
        "libraries": [cv2.__version__, PIL.__version__, numpy.__version__, faiss.__version__],
        "features": verifier.features,
        "max_side": verifier.max_side,
        "min_keypoints": verifier.min_keypoints,
        "settle_early": bool(verifier.settle_early),
    }
    return json.dumps(settings, sort_keys=True)


def _digest(ev: Evidence | None) -> bytes:
    """A short hash of ``ev``: a stored keeper check counts only for the evidence it was made with
    (another model's cosines can ask for the pair with or without its mirrored comparison)."""
    import hashlib

    return hashlib.sha256(encode(ev) if ev is not None else b"none").hexdigest()[:16].encode()


def encode(ev: Evidence) -> bytes:
    """``ev`` as JSON of the fields that differ from their defaults (floats round-trip exactly)."""
    d = {k: getattr(ev, k) for k in _DEFAULTS if getattr(ev, k) != _DEFAULTS[k]}
    if "transform" in d:
        d["transform"] = list(d["transform"])
    return json.dumps(d, separators=(",", ":"), default=_plain).encode()


def _plain(value):
    """A numpy scalar as the Python number it holds (json cannot write numpy's own types)."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")


def decode(data: bytes) -> Evidence:
    """The Evidence that ``encode`` wrote (ValueError, TypeError... when ``data`` is not that)."""
    d = json.loads(data)
    if not isinstance(d, dict) or not set(d) <= set(_DEFAULTS):
        raise ValueError("not evidence")
    if "transform" in d:
        d["transform"] = tuple(float(v) for v in d["transform"])
    return Evidence(**d)


class PairCache:
    """Evidence on disk by (a, b, mirror), checked against both files' size and mtime; written
    through the feature cache's connection (``featurecache.FeatureCache.write``)."""

    def __init__(self, disk: FeatureCache, version: str):
        self.disk, self.version = disk, version
        self.found: dict = {}  # what ``load`` found valid, not taken yet: key -> bytes
        self._stamps: dict = {}  # path -> stamp, taken once per run (before its features are read)
        try:
            disk.execute(SCHEMA)
            self.ok = True
        except sqlite3.Error:  # no file (read-only folder...), not a database...: verify again
            self.ok = False

    def stamp(self, path: str):
        if path not in self._stamps:
            self._stamps[path] = _stamp(path)
        return self._stamps[path]

    def load(self, keys) -> set:
        """Look up ``keys`` ((a, b, mirror) tuples); the set of those whose stored evidence is valid
        for the files as they are now (``take`` hands each out once)."""
        wanted: dict = {}
        for k in keys:
            wanted.setdefault(k[0], set()).add(k)
        if not self.ok or not wanted:
            return set()
        firsts = list(wanted)
        try:
            for n in range(0, len(firsts), 500):
                part = firsts[n : n + 500]
                for a, b, mirror, sa, ma, sb, mb, _, data in self.disk.execute(
                    f"SELECT * FROM pairs WHERE version = ? AND mirror < {MADE_FROM} AND a IN ({','.join('?' * len(part))})",
                    [self.version, *part],
                ):
                    key = (a, b, bool(mirror))
                    if key in wanted[a] and self.stamp(a) == (sa, ma) and self.stamp(b) == (sb, mb):
                        self.found[key] = bytes(data)
        except sqlite3.Error:
            self.found.clear()
        return set(self.found)

    def take(self, key) -> Evidence | None:
        """The stored evidence of ``key`` found by ``load`` (once), or None."""
        data = self.found.pop(key, None)
        if data is None:
            return None
        try:
            ev = decode(data)
        except Exception:  # noqa: BLE001 - a damaged row: the pair is verified again (and replaced)
            return None
        return ev

    def put(self, items) -> None:
        """Store ``items``: (key, (stamp of a, stamp of b) taken before the pair was verified, Evidence)."""
        rows = []
        for k, (sa, sb), ev in items:
            try:
                data = encode(ev)
            except (TypeError, ValueError):  # evidence json cannot hold: verified again next run
                continue
            if sa is not None and sb is not None:
                rows.append((k[0], k[1], int(k[2]), *sa, *sb, self.version, sqlite3.Binary(data)))
        if self.ok and rows:
            self.disk.write(INSERT, rows)

    def fact(self, pair, ev) -> str | None:
        """The stored ``keeper.made_from(a, b, ev)`` of ``pair`` (a, b) (a ``MADE_FROM`` row, made with
        this same evidence: how a is made from b, "" when it is not), or None."""
        a, b = pair
        try:
            rows = self.disk.execute(
                "SELECT a_size, a_mtime_ns, b_size, b_mtime_ns, data FROM pairs "
                "WHERE a = ? AND b = ? AND mirror = ? AND version = ?",
                (a, b, MADE_FROM, self.version),
            )
        except sqlite3.Error:
            return None
        if not rows or self.stamp(a) != tuple(rows[0][:2]) or self.stamp(b) != tuple(rows[0][2:4]):
            return None
        digest, _, value = bytes(rows[0][4]).partition(b":")
        if digest != _digest(ev) or value.decode("ascii", "replace") not in MADE_KINDS:
            return None
        return value.decode("ascii")

    def put_fact(self, pair, stamps, ev, value: str) -> None:
        """Store ``value``, the ``made_from`` of ``pair`` with ``ev``, as its files had ``stamps``."""
        (a, b), (sa, sb) = pair, stamps
        if self.ok and sa is not None and sb is not None and value in MADE_KINDS:
            data = _digest(ev) + b":" + value.encode("ascii")
            row = (a, b, MADE_FROM, *sa, *sb, self.version, data)
            self.disk.write(INSERT, [row])

    def prune(self, keep) -> int:
        """Delete the rows of another version, and those with a file not in ``keep`` (photos gone
        from the index); how many such files."""
        if not self.ok:
            return 0
        try:
            self.disk.execute("DELETE FROM pairs WHERE version != ?", (self.version,))
        except sqlite3.Error:
            return 0
        return self.disk.prune(keep, "pairs", ("a", "b"))
