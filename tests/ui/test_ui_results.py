"""The search page's results and URL without a browser: the query's own file, exact copies collapsed,
pages of cards over a real index, the view as query parameters, and the feature maps' progress."""

from __future__ import annotations

import io
import shutil

import pytest
from conftest import SAMPLES, copy_photos

from indexer.reports import SearchHit
from ui.logic import (
    DEFAULT_PER,
    CaptureFilter,
    Identity,
    View,
    arrange,
    is_query,
    page_of_results,
    row_identity,
    upload_identity,
)


def hit(i, score, sha="", w=100, h=80, source=None):
    return SearchHit(id=i, path=f"/p/{i}.jpg", score=score, width=w, height=h, sha256=sha, source=source)


def test_the_query_itself_and_exact_copies():
    hits = [
        hit(1, 1.0, "a"),
        hit(2, 0.99999, "a"),
        hit(3, 0.9, "b"),
        hit(4, 0.8, "c"),
        hit(5, 0.7, "b"),
        hit(6, 0.6, "b"),
        hit(7, 0.5, "v", source="/v.mp4"),
        hit(8, 0.4, "v", source="/v.mp4"),
    ]
    own, cards = arrange(hits, Identity(image_id=1, sha256="a"))
    assert own.hit.id == 1 and [c.id for c in own.copies] == [2] and own.copies_note == "+1 copy"
    assert [c.hit.id for c in cards] == [3, 4, 7, 8]  # video frames of one file are not copies
    assert cards[0].ids == [3, 5, 6] and cards[0].copies_note == "+2 copies" and cards[1].copies_note == ""
    # no identity (a text query, a crop): nothing is "the query", copies still collapse
    own, cards = arrange(hits, None)
    assert own is None and [c.hit.id for c in cards] == [1, 3, 4, 7, 8] and cards[0].ids == [1, 2]
    # an upload: its bytes, or a re-encoding (same pixels, score >= 0.9999); not a lookalike of another size
    up = upload_identity(b"bytes", (100, 80), cropped=False)
    assert is_query(hit(9, 0.5, up.sha256), up) and is_query(hit(9, 0.99995), up)
    assert not is_query(hit(9, 0.99995, w=101), up) and not is_query(hit(9, 0.999), up)
    assert upload_identity(b"bytes", (100, 80), cropped=True) is None
    assert row_identity(None, False) is None


def test_view_round_trips_through_its_url_and_ignores_junk():
    v = View(("path", "/photos/a b&c.jpg"), 0.456, ("ants", "bees"), ("/x",), 60, 3, 17)
    params = v.params()
    assert params == {
        "path": "/photos/a b&c.jpg",
        "min": "0.46",
        "label": ["ants", "bees"],
        "folder": ["/x"],
        "per": "60",
        "page": "3",
        "open": "17",
    }
    back = View.from_params(
        lambda k: params[k] if isinstance(params.get(k), list) else ([params[k]] if k in params else [])
    )
    assert back == v.normal() and back.threshold == 0.46
    assert View().params() == {} and View().normal() == View()
    junk = {"id": ["x"], "text": ["red"], "min": ["nan"], "per": ["7"], "page": ["-2"], "open": ["?"]}
    assert View.from_params(lambda k: junk.get(k, [])) == View(query=("text", "red"), per=DEFAULT_PER)
    sha = "ab" * 32
    assert View(("upload", sha)).params() == {"upload": sha}  # an upload kept by its hash
    assert View.from_params(lambda k: [sha.upper()] if k == "upload" else []) == View(("upload", sha))
    options = View(("id", "4"), qe=2, rotations=False)  # not the defaults (rotation search is on)
    assert options.params() == {"id": "4", "qe": "2", "rot": "0"} and options.normal() == options
    assert View.from_params(lambda k: ["1"] if k == "rot" else []).rotations is True
    odd = {"id": ["4"], "qe": ["99"], "rot": ["maybe"]}  # out of range, unreadable: the defaults
    assert View.from_params(lambda k: odd.get(k, [])) == View(("id", "4"))
    assert View(("id", "4"), page=2).same_search(View(("id", "4"), open=3))
    assert not View(("id", "4")).same_search(View(("id", "4"), qe=3))
    assert not View(("id", "4")).same_search(View(("id", "5")))


def test_pages_of_cards_over_a_real_index(tiny_model, make_index, tmp_path):
    """Copies of the query and of a result are folded in; pages follow on from each other."""
    from ui.logic import Service

    photos = tmp_path / "photos"
    names = [
        "pixabay/cat01.jpg",
        "pixabay/dog01.jpg",
        "pixabay/horse01.jpg",
        "pixabay/ship01.jpg",
        "skimage/coffee.png",
        "sklearn/china.jpg",
    ]
    copy_photos(photos, names, flat=True)
    shutil.copy2(photos / "cat01.jpg", photos / "cat01-copy.jpg")
    for i in range(3):
        shutil.copy2(photos / "dog01.jpg", photos / f"dog01-{i}.jpg")
    make_index(tmp_path / "index").update([photos], workers=0, progress=False)
    svc = Service(tmp_path / "index")
    try:
        row = svc.row_for_path(str(photos / "cat01.jpg"))
        q = svc.query_from_row(row)
        first = page_of_results(svc, q, row_identity(row, False), page=1, per=3)
        assert first.own.hit.id == row.id and len(first.own.copies) == 1
        assert len(first.cards) == 3 and first.has_next
        second = page_of_results(svc, q, row_identity(row, False), page=2, per=3)
        assert len(second.cards) == 2 and not second.has_next  # 5 distinct others: 3 + 2
        cards = first.cards + second.cards
        assert len({c.hit.sha256 for c in cards}) == 5
        dogs = [c for c in cards if c.hit.path.rsplit("/", 1)[1].startswith("dog01")]
        assert len(dogs) == 1 and dogs[0].copies_note == "+3 copies"
    finally:
        svc.index.close()


def test_capture_date_and_camera_filters_over_a_real_index(tiny_model, make_index, tmp_path):
    """The Search page's date range and camera filters, on the photos' own EXIF (read at indexing)."""
    from PIL import Image

    from ui.logic import Service, Settings, read_upload

    photos = tmp_path / "photos"
    copy_photos(
        photos,
        [
            "pixabay/cat01.jpg",
            "pixabay/dog01.jpg",
            "pixabay/horse01.jpg",
            "pixabay/ship01.jpg",
            "pixabay/bird01.jpg",
            "sklearn/china.jpg",
        ],
        flat=True,
    )
    make_index(tmp_path / "index").update([photos], workers=0, progress=False)
    svc = Service(tmp_path / "index")
    try:
        assert set(svc.cameras()) == {"NIKON D3200", "NIKON D3S", "NIKON D800"}  # horse01: no camera
        row = svc.row_for_path(str(photos / "dog01.jpg"))  # no EXIF: the query, not a result
        q, ident = svc.query_from_row(row), row_identity(row, False)

        def names(capture):
            pg = page_of_results(svc, q, ident, page=1, per=10, capture=capture)
            return sorted(c.hit.path.rsplit("/", 1)[1] for c in pg.cards)

        assert names(None) == ["bird01.jpg", "cat01.jpg", "china.jpg", "horse01.jpg", "ship01.jpg"]
        assert names(CaptureFilter(cameras=("NIKON D3S",))) == ["ship01.jpg"]
        assert names(CaptureFilter("2013-01-01", "2015-12-31")) == ["cat01.jpg", "horse01.jpg"]
        assert names(CaptureFilter("2015-12-29", "2015-12-29")) == ["cat01.jpg"]  # both ends included
        assert names(CaptureFilter(last="2012-12-31", cameras=("NIKON D800", "NIKON D3S"))) == ["bird01.jpg"]
    finally:
        svc.index.close()
    import pillow_heif

    pillow_heif.register_heif_opener()
    buf = io.BytesIO()
    cat = Image.open(photos / "cat01.jpg")
    cat.save(buf, "HEIF")
    assert read_upload("cat.heic", buf.getvalue(), Settings(None)).size == cat.size  # a HEIC upload: a query


def test_feature_maps_progress_per_module_and_stop(tiny_model):
    from PIL import Image

    from retrieval.preprocess import load_and_prepare
    from ui.logic import conv_layers, feature_maps

    _, net, _ = tiny_model
    layer = conv_layers(net)[3]
    prepared = load_and_prepare(Image.new("RGB", (80, 60), (200, 30, 30)), 64)
    seen = []
    maps = feature_maps(net, prepared, layer, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, layer.end + 1) for i in range(1, layer.end + 2)] and maps.shape[0] == layer.channels

    class Stop(Exception):
        pass

    def stop_at_2(i, n):
        if i == 2:
            raise Stop

    with pytest.raises(Stop):
        feature_maps(net, prepared, layer, progress=stop_at_2)


def test_uploads_are_kept_by_sha256_and_bad_links_are_one_line(tmp_path):
    """An upload kept in INDEX/cache/uploads/<sha256> comes back by its hash with its name; a link
    with a hash that is not one, or no longer kept, or whose file was damaged, is one clear line."""
    import hashlib

    from retrieval import UserError
    from ui.logic import keep_upload, kept_upload

    data = (SAMPLES / "pixabay" / "cat01.jpg").read_bytes()
    sha = keep_upload(tmp_path, "../../my cat.jpg", data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert kept_upload(tmp_path, sha.upper()) == ("my cat.jpg", data)  # the name without its folders
    assert keep_upload(tmp_path, "again.jpg", data) == sha  # kept once
    for bad, why in (("../../etc/passwd", "not the sha256"), ("0" * 64, "no longer kept")):
        with pytest.raises(UserError, match=why) as e:
            kept_upload(tmp_path, bad)
        assert "\n" not in str(e.value)
    (tmp_path / "cache" / "uploads" / sha).write_bytes(data[:100])
    with pytest.raises(UserError, match="damaged"):
        kept_upload(tmp_path, sha)
    read_only = tmp_path / "ro"
    read_only.write_text("a file, not a folder")  # the cache folder cannot be made: no URL, no error
    assert keep_upload(read_only, "x.jpg", data) is None


def test_an_indexed_camera_photo_is_turned_from_one_reduced_decode(tiny_model, make_index, tmp_path):
    """Rotation search from an indexed 12-MP-like JPEG: its turned views come from a draft decode
    at the model's scale (not a full decode), the same views the command line's search embeds."""
    import numpy as np
    from PIL import Image

    from indexer.search import turned_copies
    from retrieval import draft_side
    from ui.logic import Service
    from ui.logic.query_options import turned_vectors

    photos = tmp_path / "photos"
    photos.mkdir()
    with Image.open(SAMPLES / "pixabay" / "cat01.jpg") as im:
        im.convert("RGB").resize((2400, 1800)).save(photos / "camera.jpg", quality=90)
    make_index(tmp_path / "index").update([photos], workers=0, progress=False)
    svc = Service(tmp_path / "index")
    try:
        opened = []
        real = svc.open_row

        def open_row(row, **kw):
            im = real(row, **kw)
            opened.append(im.size)
            return im

        svc.open_row = open_row
        q = svc.query_from_row(svc.row_for_path(str(photos / "camera.jpg")))
        got = turned_vectors(svc, q)
        assert len(opened) == 1 and max(opened[0]) < 2400  # one reduced decode
        draft = draft_side(svc.index.spec.input_geometry)
        want = svc.index.embed_queries(turned_copies(photos / "camera.jpg", draft_size=draft))
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert turned_vectors(svc, q) is got  # embedded once per query
    finally:
        svc.index.close()
