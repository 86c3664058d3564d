"""The metadata store's named queries, on a real SQLite file (what the index, watch, dedup and the UI ask)."""

import sqlite3

import pytest

from indexer.storage.store import Store
from retrieval.errors import UserError


def _image(s, path, root, label="", source=None, time_s=None, sha="0" * 64, size=10, mtime=1, w=4, h=3):
    row = Store.new_image_in(s, path)
    row.root, row.label, row.sha256, row.size, row.mtime_ns = root, label, sha, size, mtime
    row.width, row.height, row.format, row.indexed_at = w, h, "JPEG", 0.0
    row.source, row.time_s = source, time_s
    return row


@pytest.fixture
def store(tmp_path):
    """A store holding photos under /p and /p_x (a name a LIKE pattern would confuse), video
    frames of /p/v.mp4 and error rows."""
    st = Store(f"sqlite:///{tmp_path / 'index.sqlite'}")
    with st.session.begin() as s:
        _image(s, "/p/cats/a.jpg", "/p", "cats", size=100, mtime=5, w=40, h=30)
        _image(s, "/p/dogs/b.jpg", "/p", "dogs", sha="1" * 64)
        _image(s, "/p_x/c.jpg", "/p_x", "p_x")
        _image(s, "/pa/d.jpg", "/pa", "pa")
        _image(s, "/p/v.mp4#t=0.0", "/p", "p", source="/p/v.mp4", time_s=0.0, size=7, mtime=9)
        _image(s, "/p/v.mp4#t=2.5", "/p", "p", source="/p/v.mp4", time_s=2.5, size=7, mtime=9)
        Store.add_error_in(s, "/p/bad.jpg", "/p", "not an image", 3, 4, 0.0)
        Store.add_error_in(s, "/p_x/bad.png", "/p_x", "empty file", 0, 4, 0.0)
    yield st
    st.close()


def test_rows_under_a_folder_match_by_prefix_not_pattern(store):
    assert sorted(r[0] for r in store.images_under("/p")) == [
        "/p/cats/a.jpg",
        "/p/dogs/b.jpg",
        "/p/v.mp4#t=0.0",
        "/p/v.mp4#t=2.5",
    ]
    assert ("/p/cats/a.jpg", 100, 5, None) in store.images_under("/p/")
    assert ("/p/v.mp4#t=2.5", 7, 9, "/p/v.mp4") in store.images_under("/p")
    assert store.images_under("/p_") == [] and store.count_under("/p_") == 0  # "_" is no wildcard
    assert [r[0] for r in store.images_under("/p_x")] == ["/p_x/c.jpg"]
    assert store.count_under("/p") == 4 and store.count_under("/nothing") == 0
    assert store.errors_under("/p") == [("/p/bad.jpg", 3, 4)]


def test_labels_paths_and_photo_facts(store):
    assert store.labels() == ["cats", "dogs", "p", "p_x", "pa"]
    asked = ["/pa/d.jpg", "/not/there.jpg", "/p/cats/a.jpg", "/p/v.mp4#t=2.5"]
    assert store.indexed_paths(asked) == ["/pa/d.jpg", "/p/cats/a.jpg", "/p/v.mp4#t=2.5"]
    facts = store.photo_facts()  # photos only (no video frames), by id
    assert [f[1] for f in facts] == ["/p/cats/a.jpg", "/p/dogs/b.jpg", "/p_x/c.jpg", "/pa/d.jpg"]
    assert [f[0] for f in facts] == sorted(f[0] for f in facts)
    assert facts[0][1:] == ("/p/cats/a.jpg", "0" * 64, 40, 30, 100, 5)


def test_many_paths_are_asked_in_chunks(tmp_path):
    st = Store(f"sqlite:///{tmp_path / 'big.sqlite'}")
    paths = [f"/big/{i:05d}.jpg" for i in range(1200)]
    with st.session.begin() as s:
        for p in paths[::2]:
            _image(s, p, "/big")
    assert st.indexed_paths(reversed(paths)) == list(reversed(paths[::2]))
    with st.session.begin() as s:
        assert set(Store.rows_by_path_in(s, paths)) == set(paths[::2])
        Store.clear_errors_in(s, paths)  # no error rows: nothing to do, no failure
    assert st.count() == 600 and st.count_under("/big") == 600
    st.close()


def test_session_scoped_changes_commit_together_or_not_at_all(store, tmp_path):
    with store.session.begin() as s:
        rows = Store.rows_by_path_in(s, ["/p/cats/a.jpg", "/p/dogs/b.jpg", "/missing"])
        assert set(rows) == {"/p/cats/a.jpg", "/p/dogs/b.jpg"}
        Store.delete_rows_in(s, [rows["/p/dogs/b.jpg"]])
        Store.clear_errors_in(s, ["/p/bad.jpg"])
        new = _image(s, "/p/cats/e.jpg", "/p", "cats")
        s.flush()
        assert new.id is not None and new.id in Store.ids_in(s)
        assert Store.ids_in(s) == sorted(Store.ids_in(s))
    assert store.row_by_path("/p/dogs/b.jpg") is None and store.row_by_path("/p/cats/e.jpg") is not None
    assert [e.path for e in store.errors()] == ["/p_x/bad.png"]

    before = sorted(store.all_ids())
    with pytest.raises(RuntimeError):
        with store.session.begin() as s:
            Store.delete_rows_in(s, Store.rows_by_path_in(s, ["/p/cats/a.jpg"]).values())
            Store.add_error_in(s, "/p/cats/a.jpg", "/p", "gone bad", 1, 1, 0.0)
            raise RuntimeError("interrupted")
    assert sorted(store.all_ids()) == before and store.row_by_path("/p/cats/a.jpg") is not None
    assert [e.path for e in store.errors()] == ["/p_x/bad.png"]

    # the file itself says so (another connection, not this engine's session)
    c = sqlite3.connect(tmp_path / "index.sqlite")
    try:
        assert c.execute("select count(*) from images").fetchone()[0] == len(before)
        assert c.execute("select reason from errors").fetchall() == [("empty file",)]
    finally:
        c.close()


def test_meta_roots_and_reopen(store, tmp_path):
    with store.session.begin() as s:
        Store.set_meta(s, "vectors_index", {"type": "flat", "nprobe": 4})
    store.add_roots(["/p", "/pa"])
    store.add_roots(["/p"])  # known roots stay once
    again = Store(f"sqlite:///{tmp_path / 'index.sqlite'}", create=False)
    try:
        assert again.has_tables and again.meta("vectors_index") == {"type": "flat", "nprobe": 4}
        assert again.meta("absent", 7) == 7
        assert again.roots() == ["/p", "/pa"] and again.labels() == store.labels()
        ids = again.all_ids()
        rows = again.rows_by_id(ids)
        assert sorted(rows) == sorted(ids) and again.count() == len(ids) == 6
    finally:
        again.close()
    empty = Store(f"sqlite:///{tmp_path / 'none.sqlite'}", create=False)
    assert not empty.has_tables and empty.meta("format") is None
    empty.close()


def test_dedup_decisions_by_content_pair(store, tmp_path):
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    assert store.dismissed_pairs() == set()
    keys = store.record_dedup_decisions(
        [(("/p/2.jpg", b), ("/p/1.jpg", a)), (("/p/1.jpg", a), ("/p/3.jpg", c))]
    )
    assert keys == [(a, b), (a, c)]  # sorted by sha256, whatever the order given
    store.record_dedup_decisions([(("/p/1-moved.jpg", a), ("/p/2.jpg", b))])  # again: replaced, not doubled
    assert store.dismissed_pairs() == {(a, b), (a, c)}
    again = Store(f"sqlite:///{tmp_path / 'index.sqlite'}", create=False)  # another connection, reopened
    try:
        assert again.dismissed_pairs() == {(a, b), (a, c)}
        assert again.forget_dedup_decisions([(a, c), ("x", "y")]) == 1
    finally:
        again.close()
    assert store.dismissed_pairs() == {(a, b)} and store.forget_dedup_decisions([]) == 0
    c = sqlite3.connect(tmp_path / "index.sqlite")
    try:
        assert c.execute("select path_a, path_b, decision from dedup_decisions").fetchall() == [
            ("/p/1-moved.jpg", "/p/2.jpg", "keep")
        ]
    finally:
        c.close()


def test_an_index_made_before_the_decisions_table_gets_it_or_works_without(store, tmp_path):
    with store.session.begin() as s:
        Store.set_meta(s, "format", "vgg-retrieval-index")
    store.close()
    db = tmp_path / "index.sqlite"
    c = sqlite3.connect(db)
    c.execute("drop table dedup_decisions")
    c.commit()
    c.close()
    # read-only (another process, read-only media): it opens, searches, and has no decisions
    ro = Store(f"sqlite:///file:{db}?mode=ro&uri=true", create=False)
    try:
        assert ro.has_tables and not ro.has_decisions and ro.count() == 6
        assert ro.dismissed_pairs() == set() and ro.forget_dedup_decisions([("a", "b")]) == 0
        with pytest.raises(UserError, match="no table for review decisions"):
            ro.record_dedup_decisions([(("/p/1.jpg", "a"), ("/p/2.jpg", "b"))])
    finally:
        ro.close()
    # opened with write access: the table is made, the rows are untouched
    rw = Store(f"sqlite:///{db}", create=False)
    try:
        assert rw.has_decisions and rw.count() == 6
        rw.record_dedup_decisions([(("/p/1.jpg", "a"), ("/p/2.jpg", "b"))])
        assert rw.dismissed_pairs() == {("a", "b")}
    finally:
        rw.close()
