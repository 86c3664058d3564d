"""The index's tables (SQLAlchemy 2 ORM): images, errors, roots, meta, dedup decisions and offline folders. The
queries over them are ``indexer.storage.store``'s named methods; nothing else builds SQL."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SCHEMA_VERSION = 1
# 64-bit ids on PostgreSQL (BIGSERIAL); SQLite's INTEGER PRIMARY KEY (the rowid) is 64-bit already
ID_TYPE = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    """One indexed image; its id is the vector's id in FAISS."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text, unique=True, index=True)
    root: Mapped[str] = mapped_column(Text, index=True)
    label: Mapped[str] = mapped_column(Text, default="")
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(16))
    indexed_at: Mapped[float] = mapped_column(Float)
    # video frames (see indexer.video.keyframes): the video file and the frame's time; NULL for photos. Rows of
    # a video share its size/mtime/sha256; ``path`` is VIDEO#t=SECONDS.
    source: Mapped[str | None] = mapped_column(Text, nullable=True, index=True, default=None)
    time_s: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)

    def as_dict(self) -> dict:
        return {
            c: getattr(self, c)
            for c in (
                "id",
                "path",
                "root",
                "label",
                "sha256",
                "size",
                "mtime_ns",
                "width",
                "height",
                "format",
                "indexed_at",
                "source",
                "time_s",
            )
        }


# columns added after databases were made without them: (table, column, SQL type, indexed)
# the capture evidence dedup reads (indexer.dedup.capture), stored by the indexer
EVIDENCE_FIELDS = (
    "time_original",
    "subsec",
    "time_offset",
    "body_serial",
    "unique_id",
    "document_id",
    "original_document_id",
)
ADDED_COLUMNS = (
    [("images", "source", "TEXT", True), ("images", "time_s", "FLOAT", False)]
    + [("captures", c, "TEXT", False) for c in EVIDENCE_FIELDS]
    + [("captures", "evidence", "INTEGER", False)]
)


class ErrorRow(Base):
    """A file that could not be indexed, and why; kept until the file changes or disappears."""

    __tablename__ = "errors"
    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text, unique=True, index=True)
    root: Mapped[str] = mapped_column(Text, index=True)
    reason: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger, default=-1)
    mtime_ns: Mapped[int] = mapped_column(BigInteger, default=-1)
    at: Mapped[float] = mapped_column(Float)


class RootRow(Base):
    __tablename__ = "roots"
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    added_at: Mapped[float] = mapped_column(Float)


class MetaRow(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class DedupDecisionRow(Base):
    """A pair of files a person reviewed, by content (sha256, ``sha_a <= sha_b``): "keep" = both are
    kept (not duplicates: "keep all" in the UI), so dedup leaves the pair out. A changed file has
    another sha256 and is judged again. The paths are what the files were called then (for people)."""

    __tablename__ = "dedup_decisions"
    sha_a: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha_b: Mapped[str] = mapped_column(String(64), primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))
    path_a: Mapped[str] = mapped_column(Text, default="")
    path_b: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[float] = mapped_column(Float)


class OfflineFolderRow(Base):
    """A folder of the index that could not be listed by the last update (a root that is missing: an
    unplugged disk, an unmounted share; a folder it may not read). Its entries stay, marked offline,
    until an update lists it again or ``index --forget-missing`` forgets it (``indexer.update.planning``)."""

    __tablename__ = "offline_folders"
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    root: Mapped[str] = mapped_column(Text, index=True)
    reason: Mapped[str] = mapped_column(Text)
    since: Mapped[float] = mapped_column(Float)


class CaptureRow(Base):
    """A photo's capture metadata, read from its EXIF once when it is indexed (``indexer.update.capture``):
    one row per photo (empty fields when it has none), gone with its image row. ``captured`` is ISO
    8601 local time (sorts and compares as text; ``+HH:MM`` when the offset is known)."""

    __tablename__ = "captures"
    image_id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=False)
    captured: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True, default=None)
    make: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    model: Mapped[str | None] = mapped_column(Text, nullable=True, index=True, default=None)
    lens: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    gps_lat: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)
    gps_lon: Mapped[float | None] = mapped_column(Float, nullable=True, default=None)
    # the capture evidence of dedup (``indexer.reports.Capture``); ``evidence`` 1 once read, NULL in
    # rows written before these columns (``update.capture.fill_missing`` reads those files again)
    time_original: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    subsec: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    time_offset: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    body_serial: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    unique_id: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    document_id: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    original_document_id: Mapped[str | None] = mapped_column(Text, nullable=True, default=None)
    evidence: Mapped[int | None] = mapped_column(Integer, nullable=True, default=None)


KEEP_BOTH = "keep"
# tables an index can live without: made when missing if the database can be written, else their
# readers see nothing (an index on read-only media stays searchable)
OPTIONAL_TABLES = {DedupDecisionRow.__tablename__, OfflineFolderRow.__tablename__, CaptureRow.__tablename__}
