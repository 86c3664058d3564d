"""Metadata store: per-image rows, per-file errors, indexed roots and key/value meta (SQLAlchemy 2).

SQLite by default (a file in the index folder, rollback journal: searches read while an update
works, since an update holds the write lock only for its short commits, and an index on read-only
media stays searchable); any SQLAlchemy URL works for bigger installs. All SQL goes through the ORM with bound parameters.
"""
from __future__ import annotations

import json
import time

from sqlalchemy import BigInteger, Float, Integer, String, Text, create_engine, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

SCHEMA_VERSION = 1


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    """One indexed image; its id is the vector's id in FAISS."""

    __tablename__ = "images"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
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

    def as_dict(self) -> dict:
        return {c: getattr(self, c) for c in ("id", "path", "root", "label", "sha256", "size", "mtime_ns",
                                              "width", "height", "format", "indexed_at")}


class ErrorRow(Base):
    """A file that could not be indexed, and why; kept until the file changes or disappears."""

    __tablename__ = "errors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url, future=True)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if not self._has_tables():
            Base.metadata.create_all(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def _has_tables(self) -> bool:
        from sqlalchemy import inspect

        names = set(inspect(self.engine).get_table_names())
        return {t.name for t in Base.metadata.sorted_tables} <= names

    def close(self) -> None:
        self.engine.dispose()

    # --- meta ---------------------------------------------------------------------------------
    @staticmethod
    def get_meta(s: Session, key: str, default=None):
        row = s.get(MetaRow, key)
        return json.loads(row.value) if row else default

    @staticmethod
    def set_meta(s: Session, key: str, value) -> None:
        s.merge(MetaRow(key=key, value=json.dumps(value)))

    def meta(self, key: str, default=None):
        with self.session() as s:
            return self.get_meta(s, key, default)

    # --- queries ------------------------------------------------------------------------------
    def count(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(ImageRow)) or 0

    def rows_by_id(self, ids) -> dict[int, ImageRow]:
        ids = [int(i) for i in ids]
        out: dict[int, ImageRow] = {}
        with self.session() as s:
            for i in range(0, len(ids), 500):
                for row in s.scalars(select(ImageRow).where(ImageRow.id.in_(ids[i:i + 500]))):
                    out[row.id] = row
        return out

    def row_by_path(self, path: str) -> ImageRow | None:
        with self.session() as s:
            return s.scalar(select(ImageRow).where(ImageRow.path == path))

    def all_ids(self) -> list[int]:
        with self.session() as s:
            return list(s.scalars(select(ImageRow.id)))

    def errors(self) -> list[ErrorRow]:
        with self.session() as s:
            return list(s.scalars(select(ErrorRow).order_by(ErrorRow.path)))

    def roots(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(RootRow.path).order_by(RootRow.path)))

    def add_roots(self, roots: list[str]) -> None:
        with self.session.begin() as s:
            for r in roots:
                if s.get(RootRow, r) is None:
                    s.add(RootRow(path=r, added_at=time.time()))
