"""Metadata in PostgreSQL: a real server (conftest's pg_server: .ci/postgres.sh, or $VGG_RETRIEVAL_TEST_PG_URL).

The index tests in test_index.py / test_reliability.py / test_watch.py also run on PostgreSQL (conftest's
BOTH_DATABASES); these cover what is PostgreSQL's own: the remembered URL, passwords, schemas, two
indexes in one database, the CLI end to end, crashes around the commit, and connection errors.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import copy_photos
from sqlalchemy import create_engine, inspect, text

from indexer import Index
from indexer.faults import ENV as CRASH_ENV
from indexer.storage.database_link import LINK_FILE, public_url, read_link
from indexer.storage.store import Store
from retrieval.errors import UserError


def cli(*args, env=None, check=True):
    r = subprocess.run(
        [sys.executable, "-m", "indexer", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def _raw(url):
    return create_engine(
        url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url
    )


def test_cli_end_to_end_on_postgres_remembers_the_database(tmp_path, pg_database, photos, tiny_model):
    url = pg_database()
    ix = tmp_path / "ix"
    r = cli("index", photos, "--index", ix, "--db", url, "--model", tiny_model[2], "--workers", "0", "-q")
    assert "6 added" in r.stdout
    assert not (ix / "index.sqlite").exists()
    link = json.loads((ix / LINK_FILE).read_text())
    assert link["url"] == public_url(url) and len(link["index_id"]) == 32
    # every later command finds the database through the folder
    r = cli("search", photos / "pixabay" / "cat01.jpg", "--index", ix, "--json", "-k", "3")
    hits = json.loads(r.stdout)["results"]
    assert hits[0]["path"] == str(photos / "pixabay" / "cat01.jpg") and hits[0]["score"] > 0.999
    assert ": OK (6 images" in cli("check", "--index", ix).stdout
    assert "images:  6" in cli("info", "--index", ix).stdout
    # add, change, remove; update every known folder
    copy_photos(photos, ["opencv/baboon.jpg"], flat=True)
    (photos / "pixabay" / "dog01.jpg").unlink()
    from conftest import SAMPLES
    from PIL import Image

    Image.open(SAMPLES / "opencv" / "fruits.jpg").save(photos / "skimage" / "coffee.png")
    r = cli("index", "--index", ix, "--workers", "0", "-q")
    assert "1 added, 1 updated, 1 removed, 4 unchanged" in r.stdout
    # the rows really are in PostgreSQL
    with _raw(url).connect() as c:
        assert c.execute(text("SELECT count(*) FROM images")).scalar() == 6
        assert c.execute(text("SELECT count(*) FROM images WHERE path LIKE '%baboon.jpg'")).scalar() == 1
        cols = {col["name"]: str(col["type"]) for col in inspect(c).get_columns("images")}
        assert cols["id"] == "BIGINT" and cols["mtime_ns"] == "BIGINT"
    with Index.open(ix) as idx:
        assert idx.forget([str(photos / "sklearn" / "china.jpg")]).removed == 1
        assert idx.count == 5 and idx.check().ok


def test_password_is_never_stored_and_comes_from_pgpassword(
    tmp_path, pg_server, pg_database, make_index, monkeypatch
):
    password = os.environ["PGPASSWORD"]  # set by pg_database
    bare = pg_database()
    with_password = bare.replace("vgg@", f"vgg:{password}@", 1)
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    make_index(tmp_path / "ix", db_url=with_password).close()
    stored = (tmp_path / "ix" / LINK_FILE).read_text()
    assert password not in stored and read_link(tmp_path / "ix")["url"] == public_url(bare)
    with pytest.raises(UserError, match=r"password.*\(index folders never store passwords: set PGPASSWORD"):
        Index.open(tmp_path / "ix")
    r = cli("check", "--index", tmp_path / "ix", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "PGPASSWORD" in r.stderr
    # ~/.pgpass works too (libpq)
    from sqlalchemy.engine import make_url

    u = make_url(bare)
    (tmp_path / "pgpass").write_text(f"{u.host}:{u.port}:{u.database}:{u.username}:{password}\n")
    os.chmod(tmp_path / "pgpass", 0o600)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "pgpass"))
    with Index.open(tmp_path / "ix") as idx:
        assert idx.check().ok
    # and the password may be given with --db each time, without being written down
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    with Index.open(tmp_path / "ix", db_url=with_password) as idx:
        assert idx.check().ok
    assert password not in (tmp_path / "ix" / LINK_FILE).read_text()


def test_two_indexes_in_one_database_need_their_own_schemas(tmp_path, pg_database, make_index, photos):
    url = pg_database()
    a = make_index(tmp_path / "a", db_url=url)
    a.update([photos], workers=0, progress=False)
    # the same database again for another folder: refused, with what to do instead
    with pytest.raises(UserError, match=r"already holds another index \(made for .*/a\).*\?schema=NAME"):
        make_index(tmp_path / "b", db_url=url)
    assert not (tmp_path / "b" / LINK_FILE).exists()
    r = cli(
        "index",
        photos,
        "--index",
        tmp_path / "c",
        "--db",
        url,
        "--weights",
        "random",
        "--arch",
        "vgg11",
        "--size",
        "64",
        check=False,
    )
    assert r.returncode == 2 and "already holds another index" in r.stderr and len(r.stderr.splitlines()) == 1
    # one schema each: separate tables, separate contents
    b = make_index(tmp_path / "b", db_url=url + "?schema=photos_b")
    copy_photos(tmp_path / "other", ["opencv/baboon.jpg"], flat=True)
    b.update([tmp_path / "other"], workers=0, progress=False)
    assert (a.count, b.count) == (6, 1)
    with pytest.raises(UserError, match="already holds another index"):
        make_index(tmp_path / "b2", db_url=url + "?schema=photos_b")
    with _raw(url).connect() as c:
        assert c.execute(text("SELECT count(*) FROM public.images")).scalar() == 6
        assert c.execute(text("SELECT count(*) FROM photos_b.images")).scalar() == 1
    a.close()
    b.close()
    with Index.open(tmp_path / "b") as again:  # the schema is part of the remembered URL
        assert again.count == 1 and again.check().ok
    assert read_link(tmp_path / "b")["url"].endswith("?schema=photos_b")


def test_a_folder_pointed_at_another_index_s_database_is_refused(tmp_path, pg_database, make_index):
    url = pg_database()
    make_index(tmp_path / "a", db_url=url).close()
    make_index(tmp_path / "b", db_url=url + "?schema=s2").close()
    # b's folder edited to name a's database: the index ids differ
    link = read_link(tmp_path / "b")
    (tmp_path / "b" / LINK_FILE).write_text(json.dumps({**link, "url": public_url(url)}))
    with pytest.raises(UserError, match=r"holds another index than .*/b"):
        Index.open(tmp_path / "b")
    # a database with someone else's tables of the same names is never written into
    other = pg_database()
    with _raw(other).begin() as c:
        c.execute(text("CREATE TABLE images (id int primary key, what text)"))
    with pytest.raises(UserError, match=r"already has tables that are not a vgg-retrieval index \(images\)"):
        make_index(tmp_path / "c", db_url=other)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())  # refused before writing


@pytest.mark.parametrize(
    "url, message",
    [
        (
            "postgresql://vgg@127.0.0.1:1/nope",
            r"cannot use the index database postgresql\+psycopg://vgg@127.0.0.1:1/nope: ",
        ),
        ("not a url", r"not a database URL"),
        ("postgresql://vgg@127.0.0.1:1/db?schema=bad;name", r"bad schema name"),
        ("nosuchdb://x/y", r"needs a driver that is not installed|bad database URL|not a database URL"),
    ],
)
def test_bad_or_unreachable_url_is_one_line(tmp_path, photos, tiny_model, url, message):
    with pytest.raises(UserError, match=message):
        Store(url)
    r = cli("index", photos, "--index", tmp_path / "ix", "--db", url, "--model", tiny_model[2], check=False)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert not (tmp_path / "ix").exists() or not (tmp_path / "ix" / LINK_FILE).exists()


def test_unreachable_remembered_database_is_one_line(tmp_path, pg_database, make_index):
    make_index(tmp_path / "ix", db_url=pg_database()).close()
    link = read_link(tmp_path / "ix")
    (tmp_path / "ix" / LINK_FILE).write_text(json.dumps({**link, "url": "postgresql://vgg@127.0.0.1:1/gone"}))
    r = cli("search", tmp_path / "x.jpg", "--index", tmp_path / "ix", check=False)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "cannot use the index database postgresql+psycopg://vgg@127.0.0.1:1/gone" in r.stderr
    (tmp_path / "ix" / LINK_FILE).write_text("{not json")
    with pytest.raises(UserError, match="cannot read .*database.json"):
        Index.open(tmp_path / "ix")


@pytest.mark.parametrize("point, committed", [("vectors_renamed", False), ("after_commit", True)])
def test_sigkill_around_the_postgres_commit(tmp_path, pg_database, tiny_model, point, committed):
    """Killed after the new vectors file exists but before PostgreSQL committed (old state), or right
    after the commit (new state): consistent either way, and the next run completes it."""
    folder = tmp_path / "photos"
    copy_photos(folder, ["pixabay/airplane01.jpg", "pixabay/bird01.jpg", "pixabay/cat01.jpg"], flat=True)
    ix = tmp_path / "ix"
    args = [
        "index",
        folder,
        "--index",
        ix,
        "--model",
        tiny_model[2],
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--commit-every",
        "2",
        "-q",
    ]
    cli(*args, "--db", pg_database())
    first = [str(folder / n) for n in ("airplane01.jpg", "bird01.jpg", "cat01.jpg")]
    with Index.open(ix) as idx:
        before = {p: idx.vector(idx.store.row_by_path(p).id) for p in first}
    copy_photos(folder, ["pixabay/dog01.jpg", "pixabay/ship01.jpg", "skimage/coffee.png"], flat=True)
    r = cli(*args, env={CRASH_ENV: point}, check=False)
    assert r.returncode == -signal.SIGKILL, r.stderr
    with Index.open(ix) as idx:
        assert idx.check().ok, idx.check().problems
        assert (idx.count > 3) == committed
        for p, v in before.items():
            assert np.allclose(idx.vector(idx.store.row_by_path(p).id), v)
    cli(*args)
    with Index.open(ix) as idx:
        assert idx.count == 6 and idx.check().ok
    assert len(list(ix.glob("vectors-*"))) == 1


def test_sqlite_by_url_is_remembered_too(tmp_path, photos, make_index):
    db = tmp_path / "elsewhere" / "meta.sqlite"
    db.parent.mkdir()
    idx = make_index(tmp_path / "ix", db_url=f"sqlite:///{db}")
    idx.update([photos], workers=0, progress=False)
    idx.close()
    assert db.is_file() and not (tmp_path / "ix" / "index.sqlite").exists()
    with Index.open(tmp_path / "ix") as again:
        assert again.count == 6 and again.check().ok
