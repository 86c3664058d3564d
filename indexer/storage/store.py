"""Metadata store: per-image rows, per-file errors, indexed roots and key/value meta (SQLAlchemy 2).

More: docs/design-notes.md (``indexer.storage.store``)."""

from __future__ import annotations

import json
import os
import time

from sqlalchemy import create_engine, delete, event, func, inspect, select, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from retrieval.errors import UserError

from .database_link import parse_url, public_url
from .store_tables import CaptureQueries, DedupDecisionQueries, OfflineFolderQueries
from .tables import (
    ADDED_COLUMNS,
    OPTIONAL_TABLES,
    Base,
    CaptureRow,
    DedupDecisionRow,
    ErrorRow,
    ImageRow,
    MetaRow,
    OfflineFolderRow,
    RootRow,
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _reason(e: BaseException) -> str:
    return (
        str(getattr(e, "orig", None) or e).strip().splitlines()[0][:300]
        if str(e).strip()
        else type(e).__name__
    )


class Store(OfflineFolderQueries, DedupDecisionQueries, CaptureQueries):
    """The metadata database of one index. ``create``: make the tables when missing (else a database
    without them reads as empty). Connection problems and missing drivers are ``UserError``s."""

    def __init__(self, url: str, create: bool = True):
        self.url = url
        u, self.schema = parse_url(url)
        self.backend = u.get_backend_name()
        self.shown = public_url(url)
        options: dict = {"future": True}
        if self.backend == "postgresql":
            # a snapshot per transaction (like SQLite's): check() reads meta and rows consistently
            options.update(pool_pre_ping=True, isolation_level="REPEATABLE READ")
            if "connect_timeout" not in u.query:
                options["connect_args"] = {"connect_timeout": 10, "application_name": "vgg-retrieval"}
        try:
            self._base_engine = create_engine(u, **options)
        except (ImportError, NoSuchModuleError) as e:
            missing = getattr(e, "name", None) or _reason(e)
            extra = " (pip install 'vgg-retrieval[postgres]')" if self.backend == "postgresql" else ""
            raise UserError(
                f"the database {self.shown} needs a driver that is not installed: {missing}{extra}"
            ) from None
        except ArgumentError as e:
            raise UserError(f"bad database URL {self.shown}: {_reason(e)}") from None
        if self.backend == "sqlite":
            event.listen(self._base_engine, "connect", _sqlite_pragmas)
        self.engine = self._base_engine
        if self.schema:
            self.engine = self._base_engine.execution_options(schema_translate_map={None: self.schema})
        try:
            self.has_tables = self._prepare(create)
        except SQLAlchemyError as e:
            self._base_engine.dispose()
            raise UserError(self.connect_error(e)) from None
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    def connect_error(self, e: BaseException) -> str:
        reason = _reason(e)
        msg = f"cannot use the index database {self.shown}: {reason}"
        if self.backend == "postgresql" and "password" in reason.lower():
            msg += " (index folders never store passwords: set PGPASSWORD or use ~/.pgpass)"
        return msg

    def _prepare(self, create: bool) -> bool:
        ours = {t.name for t in Base.metadata.sorted_tables}
        with self.engine.connect() as c:
            if self.schema and create and self.backend == "postgresql":
                c.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"'))
                c.commit()
            names = set(inspect(c).get_table_names(schema=self.schema))
        self.has_decisions = DedupDecisionRow.__tablename__ in names
        self.has_offline = OfflineFolderRow.__tablename__ in names
        self.has_captures = CaptureRow.__tablename__ in names
        if ours - OPTIONAL_TABLES <= names:
            self._add_missing_columns()
            self._add_optional_tables(names)
            return True
        clash = sorted(ours & names)
        if "meta" in names and self._is_index_meta():  # an index from before a table was added
            with self.engine.begin() as c:
                Base.metadata.create_all(c)
            self._add_missing_columns()
            self.has_decisions = self.has_offline = self.has_captures = True
            return True
        if not clash and not create:
            return False
        if clash:  # someone else's "images" table: never write into it
            where = f"schema {self.schema}" if self.schema else "the database"
            raise UserError(
                f"{where} of {self.shown} already has tables that are not a vgg-retrieval index "
                f"({', '.join(clash)}): use another database, or ?schema=NAME in the URL"
            )
        with self.engine.begin() as c:
            Base.metadata.create_all(c)
        self.has_decisions = self.has_offline = self.has_captures = True
        return True

    def _add_optional_tables(self, names: set) -> None:
        """Make the ``OPTIONAL_TABLES`` an older index lacks; a database that cannot be written
        keeps working without them."""
        missing = [
            t for t in Base.metadata.sorted_tables if t.name in OPTIONAL_TABLES and t.name not in names
        ]
        if not missing:
            return
        try:
            with self.engine.begin() as c:
                Base.metadata.create_all(c, tables=missing)  # checkfirst: another process may have made them
            self.has_decisions = self.has_offline = self.has_captures = True
        except SQLAlchemyError:
            pass  # those that were there (``_prepare``) are all there is

    def _is_index_meta(self) -> bool:
        try:
            with self.session_factory()() as s:
                return s.scalar(select(MetaRow.value).where(MetaRow.key == "format")) is not None
        except SQLAlchemyError:
            return False

    def session_factory(self):
        return sessionmaker(self.engine, expire_on_commit=False)

    def _add_missing_columns(self) -> None:
        """Upgrade a database made before ``ADDED_COLUMNS`` (ALTER TABLE ... ADD COLUMN, nullable).
        A table not there yet is made whole later; an optional table that cannot be upgraded (a
        read-only database) is left unused, like one that is missing."""
        with self.engine.connect() as c:
            tables = set(inspect(c).get_table_names(schema=self.schema))
            have = {
                t: {col["name"] for col in inspect(c).get_columns(t, schema=self.schema)}
                for t in {a[0] for a in ADDED_COLUMNS}
                if t in tables
            }
        missing = [a for a in ADDED_COLUMNS if a[0] in have and a[1] not in have[a[0]]]
        q = (lambda name: f'"{self.schema}"."{name}"') if self.schema else (lambda name: f'"{name}"')
        for table, column, sql_type, indexed in missing:
            try:
                with self.engine.begin() as c:
                    c.execute(text(f'ALTER TABLE {q(table)} ADD COLUMN "{column}" {sql_type}'))
                    if indexed:
                        c.execute(
                            text(
                                f'CREATE INDEX IF NOT EXISTS "ix_{table}_{column}" ON {q(table)} ("{column}")'
                            )
                        )
            except SQLAlchemyError as e:
                with self.engine.connect() as c:  # another process may have just added it
                    if column in {col["name"] for col in inspect(c).get_columns(table, schema=self.schema)}:
                        continue
                if table == CaptureRow.__tablename__:
                    self.has_captures = False
                    continue
                raise UserError(
                    f"the index database {self.shown} needs a new column ({table}.{column}) and "
                    f"cannot be upgraded ({_reason(e)}); open it once with write access"
                ) from None

    def close(self) -> None:
        self._base_engine.dispose()

    # --- meta ---------------------------------------------------------------------------------
    @staticmethod
    def get_meta(s: Session, key: str, default=None):
        row = s.get(MetaRow, key)
        return json.loads(row.value) if row else default

    @staticmethod
    def set_meta(s: Session, key: str, value) -> None:
        s.merge(MetaRow(key=key, value=json.dumps(value)))

    def meta(self, key: str, default=None):
        if not self.has_tables:
            return default
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
                for row in s.scalars(select(ImageRow).where(ImageRow.id.in_(ids[i : i + 500]))):
                    out[row.id] = row
        return out

    def row_by_path(self, path: str) -> ImageRow | None:
        with self.session() as s:
            return s.scalar(select(ImageRow).where(ImageRow.path == path))

    def all_ids(self) -> list[int]:
        with self.session() as s:
            return list(s.scalars(select(ImageRow.id)))

    def labels(self) -> list[str]:
        """The distinct labels of the indexed images, sorted (no NULLs)."""
        with self.session() as s:
            return sorted(x for x in s.scalars(select(ImageRow.label).distinct()) if x is not None)

    def errors(self) -> list[ErrorRow]:
        with self.session() as s:
            return list(s.scalars(select(ErrorRow).order_by(ErrorRow.path)))

    def sample_image_paths(self, n: int) -> list[str]:
        """Up to ``n`` indexed photo paths (not video frames), spread over the index by id."""
        with self.session() as s:
            ids = s.scalars(select(ImageRow.id).where(ImageRow.source.is_(None)).order_by(ImageRow.id)).all()
            step = max(1, len(ids) // max(1, n))
            chosen = ids[::step][:n]
            paths = {}
            for i in range(0, len(chosen), 500):
                paths.update(
                    s.execute(
                        select(ImageRow.id, ImageRow.path).where(ImageRow.id.in_(chosen[i : i + 500]))
                    ).all()
                )
        return [paths[i] for i in chosen if i in paths]

    def roots(self) -> list[str]:
        with self.session() as s:
            return list(s.scalars(select(RootRow.path).order_by(RootRow.path)))

    def add_roots(self, roots: list[str]) -> None:
        with self.session.begin() as s:
            for r in roots:
                if s.get(RootRow, r) is None:
                    s.add(RootRow(path=r, added_at=time.time()))

    def remove_roots(self, roots: list[str]) -> None:
        """Forget these folders (``index --forget-missing``; their rows are gone already)."""
        with self.session.begin() as s:
            for r in roots:
                s.execute(delete(RootRow).where(RootRow.path == r))

    # --- offline folders (indexer.update.planning) ---------------------------------------------------------

    def images_under(self, root: str) -> list[tuple[str, int, int, str | None]]:
        """(path, size, mtime_ns, source) of every row inside the folder ``root`` (video frames too)."""
        with self.session() as s:
            return [
                tuple(r)
                for r in s.execute(
                    select(ImageRow.path, ImageRow.size, ImageRow.mtime_ns, ImageRow.source).where(
                        ImageRow.path.startswith(_prefix(root), autoescape=True)
                    )
                )
            ]

    def errors_under(self, root: str) -> list[tuple[str, int, int]]:
        """(path, size, mtime_ns) of every error row inside the folder ``root``."""
        with self.session() as s:
            return [
                tuple(r)
                for r in s.execute(
                    select(ErrorRow.path, ErrorRow.size, ErrorRow.mtime_ns).where(
                        ErrorRow.path.startswith(_prefix(root), autoescape=True)
                    )
                )
            ]

    def count_under(self, root: str) -> int:
        """How many rows lie inside the folder ``root``."""
        with self.session() as s:
            return (
                s.scalar(
                    select(func.count())
                    .select_from(ImageRow)
                    .where(ImageRow.path.startswith(_prefix(root), autoescape=True))
                )
                or 0
            )

    def indexed_paths(self, paths) -> list[str]:
        """Those of ``paths`` (in their order) that have a row."""
        paths = [str(p) for p in paths]
        have: set[str] = set()
        with self.session() as s:
            for i in range(0, len(paths), 500):
                have.update(s.scalars(select(ImageRow.path).where(ImageRow.path.in_(paths[i : i + 500]))))
        return [p for p in paths if p in have]

    def photo_facts(self) -> list[tuple[int, str, str, int, int, int, int]]:
        """(id, path, sha256, width, height, size, mtime_ns) of every photo (not video frames), by id."""
        with self.session() as s:
            return [
                tuple(r)
                for r in s.execute(
                    select(
                        ImageRow.id,
                        ImageRow.path,
                        ImageRow.sha256,
                        ImageRow.width,
                        ImageRow.height,
                        ImageRow.size,
                        ImageRow.mtime_ns,
                    )
                    .where(ImageRow.source.is_(None))
                    .order_by(ImageRow.id)
                )
            ]

    # --- dedup review decisions ---------------------------------------------------------------

    # --- capture metadata (``indexer.update.capture``) ------------------------------------------

    # --- in a caller's transaction (a commit, a check): ``s`` is its session ---------------------
    @staticmethod
    def ids_in(s: Session) -> list[int]:
        """Every image id, sorted."""
        return sorted(s.scalars(select(ImageRow.id)))

    @staticmethod
    def rows_by_path_in(s: Session, paths) -> dict[str, ImageRow]:
        out: dict[str, ImageRow] = {}
        paths = list(paths)
        for i in range(0, len(paths), 500):
            for row in s.scalars(select(ImageRow).where(ImageRow.path.in_(paths[i : i + 500]))):
                out[row.path] = row
        return out

    @staticmethod
    def new_image_in(s: Session, path: str) -> ImageRow:
        """A new row for ``path`` (its id once the session flushes)."""
        row = ImageRow(path=path)
        s.add(row)
        return row

    @staticmethod
    def delete_rows_in(s: Session, rows) -> None:
        for row in rows:
            s.delete(row)

    @staticmethod
    def clear_errors_in(s: Session, paths) -> None:
        paths = list(paths)
        for i in range(0, len(paths), 500):
            s.execute(delete(ErrorRow).where(ErrorRow.path.in_(paths[i : i + 500])))

    @staticmethod
    def add_error_in(
        s: Session, path: str, root: str, reason: str, size: int, mtime_ns: int, at: float
    ) -> None:
        s.add(ErrorRow(path=path, root=root, reason=reason, size=size, mtime_ns=mtime_ns, at=at))


def _prefix(root: str) -> str:
    return root.rstrip(os.sep) + os.sep
