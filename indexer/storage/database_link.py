"""Which database an index uses: database URLs and the ``DIR/database.json`` link.

``postgres(ql)://`` URLs mean psycopg 3; ``?schema=NAME`` is ours (one schema per index in a shared
database), not the driver's. An index whose database is not its own ``index.sqlite`` remembers it in
``DIR/database.json`` (``{"url": ..., "index_id": ...}``), the URL *without* its password: libpq takes
the password from ``PGPASSWORD`` or ``~/.pgpass`` (``PGPASSFILE``). The index id, also stored in the
database's meta table, proves that the database is this folder's and not another index's.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from retrieval.errors import UserError

LINK_FILE = "database.json"  # in an index folder whose metadata lives elsewhere (PostgreSQL)


def parse_url(url: str | URL) -> tuple[URL, str | None]:
    """(SQLAlchemy URL, schema): ``postgres(ql)://`` means psycopg 3; ``?schema=NAME`` is ours, not the driver's."""
    try:
        u = make_url(url) if not isinstance(url, URL) else url
    except (ArgumentError, ValueError):
        raise UserError(
            f"not a database URL: {public_url_text(str(url))!r} "
            f"(expected e.g. postgresql://USER@HOST/DB or sqlite:///PATH)"
        ) from None
    schema = u.query.get("schema")
    if isinstance(schema, tuple):
        schema = schema[-1]
    if schema is not None:
        u = u.difference_update_query(["schema"])
        if not schema.replace("_", "").isalnum() or not schema[0].isalpha() or len(schema) > 63:
            raise UserError(
                f"bad schema name in the database URL: {schema!r} (letters, digits and _, "
                f"starting with a letter)"
            )
    if u.drivername in ("postgres", "postgresql"):
        u = u.set(drivername="postgresql+psycopg")
    return u, schema


def public_url(url: str | URL) -> str:
    """The URL as shown and remembered: no password, our ``schema`` parameter kept."""
    u, schema = parse_url(url)
    u = u._replace(password=None)  # URL.set() ignores None
    if schema:
        u = u.update_query_dict({"schema": schema})
    return u.render_as_string(hide_password=False)


def public_url_text(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def read_link(directory) -> dict | None:
    """What ``DIR/database.json`` says (None when the folder keeps its metadata in index.sqlite)."""
    path = Path(directory) / LINK_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise UserError(f'{path} does not name a database (expected {{"url": ...}})')
    return data


def write_link(directory, url: str, index_id: str | None) -> None:
    """Remember the index's database in ``DIR/database.json`` (atomically; never the password)."""
    path = Path(directory) / LINK_FILE
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump({"url": public_url(url), "index_id": index_id}, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def new_index_id() -> str:
    return uuid.uuid4().hex
