"""Search-time query options through the API and the CLI: alpha query expansion
(``indexer.search.query_expansion``), database-side augmentation for benchmarks, neighbour
re-ranking (``indexer.search.neighbour_rerank``) and rotation search (``indexer.search.rotation``)."""

from __future__ import annotations

import json

import faiss
import numpy as np
import pytest
from conftest import SAMPLES, copy_photos
from PIL import Image

from indexer.search import neighbour_rerank as nr
from indexer.search import query_expansion as qx
from indexer.search import rotation
from retrieval.errors import UserError


def _unit(*v) -> np.ndarray:
    x = np.asarray(v, np.float32)
    return x / np.linalg.norm(x)


def _flat_search(x: np.ndarray):
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    return (lambda q, n: flat.search(q, n)), (lambda ids: x[ids])


# --- alpha-QE on constructed vectors -------------------------------------------------------------
# A query q, a near neighbour B, a distractor D pointing away from B, and a relevant R close to B
# but further from q than D: plain search ranks B, D, R; one round of QE pulls q towards B, and R
# overtakes D.
Q = _unit(1, 0, 0)
STORED = np.stack([_unit(0.9, 0, 0.436), _unit(0.8, 0.6, 0), _unit(0.7, 0, 0.714)])  # B, D, R
B, D, R = 0, 1, 2


def test_qe_lifts_a_relevant_item_above_a_distractor():
    search, stored = _flat_search(STORED)
    _, plain = qx.expanded_search(search, stored, Q[None], 3, qe=0)
    assert plain[0].tolist() == [B, D, R]
    assert np.array_equal(plain, search(Q[None], 3)[1])  # K = 0 is plain search
    scores, expanded = qx.expanded_search(search, stored, Q[None], 3, qe=1, alpha=3.0)
    assert expanded[0].tolist() == [B, R, D]
    q2 = Q + float(STORED[B] @ Q) ** 3 * STORED[B]  # by hand: q + s_B ** 3 * x_B, normalised
    q2 /= np.linalg.norm(q2)
    np.testing.assert_allclose(scores[0], STORED[[B, R, D]] @ q2, rtol=1e-5)


def test_an_indexed_query_expands_over_other_photos_not_itself():
    """The query stored in the index (or a byte copy of it) is its own first hit: QE leaves it out and
    expands over the next photo, exactly as for the same query from outside the collection."""
    outside, outside_rows = _flat_search(STORED)
    inside, inside_rows = _flat_search(np.concatenate([Q[None], STORED]))  # id 0: the query itself
    s_out, i_out = qx.expanded_search(outside, outside_rows, Q[None], 3, qe=1)
    s_in, i_in = qx.expanded_search(inside, inside_rows, Q[None], 4, qe=1)
    assert i_out[0].tolist() == [B, R, D]  # expanded over B
    assert i_in[0, 0] == 0 and (i_in[0, 1:] - 1).tolist() == [B, R, D]  # over B too, not over itself
    assert s_in[0, 0] == pytest.approx(1.0, abs=1e-6)  # and the query itself stays first, at its own score
    np.testing.assert_allclose(s_in[0, 1:], s_out[0], rtol=1e-5)


def test_alpha_weighting_is_the_formula():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, 8)).astype(np.float32)
    x = rng.standard_normal((2, 4, 8)).astype(np.float32)
    s = np.array([[0.9, 0.5, -0.2, 0.0], [0.3, 0.99, 1.0, -1.0]], np.float32)
    for alpha in (0.0, 1.0, 3.0, 2.5):
        np.testing.assert_allclose(qx.weights(s, alpha), np.clip(s, 0, None) ** alpha, rtol=1e-6)
        want = q + np.einsum("qk,qkd->qd", np.clip(s, 0, None) ** alpha, x)
        want /= np.linalg.norm(want, axis=1, keepdims=True)
        np.testing.assert_allclose(qx.expand(q, x, s, alpha), want, rtol=1e-5, atol=1e-6)
    # negative scores count for nothing (alpha > 0): only the positive neighbours move the query
    only_pos = qx.expand(q[:1], x[:1, :2], s[:1, :2], 3.0)
    np.testing.assert_allclose(qx.expand(q[:1], x[:1], s[:1], 3.0), only_pos, rtol=1e-5, atol=1e-6)


def test_dba_replaces_each_vector_by_its_weighted_neighbourhood():
    x = np.concatenate([STORED, [_unit(0, 0, 1)]])
    out = qx.dba(x, 1, alpha=1.0)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    for i in range(len(x)):
        j = int(np.argmax(sims[i]))
        want = x[i] + max(sims[i, j], 0) * x[j]
        np.testing.assert_allclose(out[i], want / np.linalg.norm(want), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(qx.dba(x, 0), x)
    dup = np.concatenate([x, x[:1]])  # an exact duplicate: each copy takes the other, not itself
    np.testing.assert_allclose(qx.dba(dup, 1, 1.0)[0], x[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("qe, alpha", [(-1, 3.0), (1.5, 3.0), (True, 3.0), (2, -1.0), (2, float("nan"))])
def test_bad_options_are_user_errors(qe, alpha):
    with pytest.raises(UserError, match="--qe"):
        qx.check_options(qe, alpha)


def test_search_options_fill_the_defaults_and_check_every_value():
    from indexer.search import SearchOptions

    got = SearchOptions().resolved()
    assert (got.qe, got.qe_alpha, got.rerank, got.rotations) == (
        qx.DEFAULT_QE,
        qx.DEFAULT_ALPHA,
        nr.DEFAULT_RERANK,
        rotation.DEFAULT_ROTATIONS,
    )
    assert got.nprobe is None and got.ef_search is None  # the index's stored ones
    kept = SearchOptions(qe=2, qe_alpha=1.0, rerank=0, rotations=False, nprobe=8, ef_search=32)
    assert kept.resolved() == kept
    for bad, name in (({"qe": -1}, "--qe"), ({"rerank": -1}, "--rerank"), ({"nprobe": 0}, "nprobe")):
        with pytest.raises(UserError, match=name):
            SearchOptions(**bad).resolved()


# --- through an index of real photos --------------------------------------------------------------
GALLERY = [
    "skimage/astronaut.png",
    "skimage/coffee.png",
    "skimage/chelsea.png",
    "pixabay/cat01.jpg",
    "pixabay/dog01.jpg",
    "sklearn/china.jpg",
    "opencv/fruits.jpg",
    "opencv/building.jpg",
    "pixabay/ship01.jpg",
    "pixabay/horse01.jpg",
]
ROTATED = "opencv/home.jpg"  # indexed only turned by 90 degrees; the upright file is the query


def _gallery_index(model, root):
    """GALLERY and a copy of ROTATED turned by 90 degrees, indexed with ``model`` under ``root``."""
    from indexer import Index

    spec, _, model_dir = model
    folder = root / "photos"
    copy_photos(folder, GALLERY, flat=True)
    with Image.open(SAMPLES / ROTATED) as im:  # no EXIF: a PNG of the turned pixels
        im.convert("RGB").transpose(Image.Transpose.ROTATE_90).save(folder / "home_turned.png")
    with Index.create(root / "ix", spec, model_dir=model_dir) as idx:
        idx.update([folder], workers=0, progress=False)
    return root / "ix", SAMPLES / ROTATED


@pytest.fixture(scope="module")
def photo_index(tiny_model, module_tmp):
    return _gallery_index(tiny_model, module_tmp("qe"))


@pytest.fixture(scope="module")
def turned_index(vgg16_model, module_tmp):
    """With the shared VGG16 trunk's real descriptors unrelated photos score far below a copy (the
    tiny random model scores them all near 1)."""
    return _gallery_index(vgg16_model, module_tmp("rot"))


@pytest.fixture
def index(photo_index):
    from indexer import Index

    with Index.open(photo_index[0]) as idx:
        yield idx


def _paths(hits):
    return [h.path for h in hits]


def test_index_qe_is_alpha_qe_over_the_stored_vectors(index, photo_index, monkeypatch):
    query = SAMPLES / "pixabay" / "cat01.jpg"
    d = index.embed_queries([query])
    plain = index.search(query, k=5, qe=0, rerank=0, rotations=False)
    assert _paths(plain) == _paths(index.search_vectors(d, 5, qe=0, rerank=0)[0])
    ids, x = index.all_vectors()
    by_id = dict(zip(ids.tolist(), x))
    for k_qe, alpha in ((2, 3.0), (4, 1.0)):
        first = index.search_vectors(d, k_qe + qx.SAME_IMAGE_SLACK, qe=0, rerank=0)[0]
        same = [(h.score, h.id) for h in first if h.score >= qx.SAME_IMAGE]  # the query (it is indexed)
        top = [h for h in first if h.score < qx.SAME_IMAGE][:k_qe]
        assert len(same) == 1 and len(top) == k_qe
        q2 = qx.expand(
            d, np.stack([by_id[h.id] for h in top])[None], np.array([[h.score for h in top]]), alpha
        )
        ranked = sorted(zip((x @ q2[0]).tolist(), ids.tolist()), reverse=True)
        want = (same + [(s, i) for s, i in ranked if i != same[0][1]])[:5]
        got = index.search(query, k=5, qe=k_qe, qe_alpha=alpha, rerank=0, rotations=False)
        assert [h.id for h in got] == [i for _, i in want]
        np.testing.assert_allclose([h.score for h in got], [s for s, _ in want], rtol=1e-4)
    monkeypatch.setattr(qx, "DEFAULT_QE", 2)  # qe=None follows the module default
    assert [h.score for h in index.search(query, k=5, rerank=0, rotations=False)] == [
        h.score for h in index.search(query, k=5, qe=2, rerank=0, rotations=False)
    ]


def test_rotation_search_finds_a_turned_copy_first(turned_index):
    from indexer import Index

    ix, query = turned_index
    with Index.open(ix) as index:
        _turned_copy_first(index, query)


def _turned_copy_first(index, query):
    plain = index.search(query, k=len(GALLERY) + 1, rerank=0, rotations=False)
    turned = index.search(query, k=3, rerank=0)  # rotation search is on by default
    assert turned[0].path.endswith("home_turned.png")
    # found by its turned view: the copy's score less the margin
    assert turned[0].score == pytest.approx(1.0 - rotation.TURN_MARGIN, abs=1e-3)
    plain_hit = next(h for h in plain if h.path.endswith("home_turned.png"))
    assert turned[0].score > plain_hit.score + 0.1  # upright, the copy looks far less alike
    # every image keeps its best turn: no score is below its plain (upright) score
    plain_scores = {h.id: h.score for h in plain}
    assert all(h.score >= plain_scores[h.id] - 1e-5 for h in turned)
    assert [h.id for h in index.search(query, k=3, rotations=True, rerank=0)] == [h.id for h in turned]
    # a PIL image and bytes work alike; descriptors and class scores are the upright query's
    with Image.open(query) as im:
        assert index.search(im.copy(), k=1, rotations=True)[0].id == turned[0].id
    assert index.search(query.read_bytes(), k=1, rotations=True, qe=1, rerank=0)[0].id == turned[0].id
    _, d_rot, _ = index.embed_and_search([query], 2, rotations=True)
    np.testing.assert_allclose(d_rot, index.embed_queries([query]), atol=1e-6)
    hits, classes = index.search_and_classify([query, query], k=2, rotations=True, rerank=0)
    assert [_paths(h) for h in hits] == [_paths(turned[:2])] * 2


def test_rotation_search_decodes_a_camera_photo_once_at_the_models_scale(index, tmp_path, monkeypatch):
    """A big JPEG with an EXIF orientation: the three views come from one reduced (draft) decode,
    and the upright view's descriptor is the one a plain search embeds."""
    import retrieval.preprocess as preprocess

    photo = tmp_path / "camera.jpg"
    with Image.open(SAMPLES / "pixabay" / "cat01.jpg") as im:
        exif = Image.Exif()
        exif[0x0112] = 6  # shown turned by 90 degrees clockwise
        im.convert("RGB").resize((2400, 1800)).save(photo, quality=90, exif=exif)
    plain = index.embed_queries([photo])
    decoded = []

    def counted(real):
        def open_image(*args, **kwargs):
            im = real(*args, **kwargs)
            decoded.append(im.size)
            return im

        return open_image

    monkeypatch.setattr(rotation, "open_image", counted(preprocess.open_image))
    monkeypatch.setattr(preprocess, "open_image", counted(preprocess.open_image))
    hits, d_rot, _ = index.embed_and_search([photo], 3, rotations=True)
    assert len(decoded) == 1 and max(decoded[0]) < 2400 and decoded[0][1] > decoded[0][0]  # reduced, upright
    np.testing.assert_allclose(d_rot, plain, atol=1e-5)
    assert len(hits[0]) == 3


def test_a_turned_view_counts_the_margin_less():
    """``merge_by_max``: each image keeps its best view, a turned view's score less the margin. A
    turned view a little above the upright one changes nothing; one far above wins, less the margin."""
    # one query, three views (upright, 90, 270), each FAISS row: ids best first
    ids = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1]])
    scores = np.array([[0.80, 0.78, 0.10], [0.82, 0.79, 0.09], [0.95, 0.50, 0.40]], np.float32)
    s, i = rotation.merge_by_max(scores, ids, 3, 3, margin=0.06)
    assert i[0].tolist() == [2, 0, 1]  # 2 found turned far above its upright score; 1 stays under 0
    assert s[0] == pytest.approx([0.89, 0.80, 0.78], abs=1e-6)  # 1's turned 0.82 counts 0.76 < 0.78
    s0, i0 = rotation.merge_by_max(scores, ids, 3, 3, margin=0.0)
    assert i0[0].tolist() == [2, 1, 0] and s0[0] == pytest.approx([0.95, 0.82, 0.80], abs=1e-6)
    assert rotation.VIEWS == 1 + len(rotation.TURNS) == 3


def test_rotation_search_of_a_missing_file_is_one_line(index, tmp_path):
    with pytest.raises(UserError, match="query image not found"):
        index.search(tmp_path / "nope.jpg", rotations=True)


def _cli(args, capsys):
    from indexer.cli import main

    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_qe_and_rotations(turned_index, capsys):
    ix, query = turned_index
    code, out, _ = _cli(
        ["search", query, "--index", ix, "-k", "2", "--json", "--qe", "2", "--qe-alpha", "1", "--rotations"],
        capsys,
    )
    row = json.loads(out)
    assert code == 0 and row["settings"] == {"qe": 2, "qe_alpha": 1.0, "rerank": 100, "rotations": True}
    assert row["results"][0]["path"].endswith("home_turned.png")
    code, out, _ = _cli(["search", query, "--index", ix, "-k", "2", "--json"], capsys)
    assert code == 0 and json.loads(out)["settings"] == {
        "qe": qx.DEFAULT_QE,
        "qe_alpha": qx.DEFAULT_ALPHA,
        "rerank": nr.DEFAULT_RERANK,
        "rotations": rotation.DEFAULT_ROTATIONS,
    }
    code, out, _ = _cli(["search", query, "--index", ix, "-k", "2", "--json", "--no-rotations"], capsys)
    row = json.loads(out)
    assert code == 0 and row["settings"]["rotations"] is False
    assert row["results"][0]["score"] < 1.0 - rotation.TURN_MARGIN - 0.1  # the copy, upright: far less alike
    for bad in (["--qe", "-1"], ["--qe-alpha", "-2"], ["--rerank", "-1"]):
        code, out, err = _cli(["search", query, "--index", ix, *bad], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1 and bad[0] in lines[0], (bad, err)


def _augmented_scores(x, ids, query, among) -> dict:
    """numpy's neighbour re-ranking of the photos ``among`` (ids): each one's vector plus its nearest
    other photo among them, weighted score ** alpha, normalised, against ``query``."""
    pick = np.isin(ids, list(among))
    x, ids = x[pick], ids[pick]
    g = x @ x.T
    np.fill_diagonal(g, -np.inf)
    nearest = g.argmax(axis=1)
    w = np.clip(g[np.arange(len(x)), nearest], 0, None) ** qx.DEFAULT_ALPHA
    aug = x + w[:, None] * x[nearest]
    aug /= np.linalg.norm(aug, axis=1, keepdims=True)
    return dict(zip(ids.tolist(), (aug @ query).tolist()))


def test_rerank_scores_each_hit_with_its_nearest_other_hit(index):
    query = SAMPLES / "pixabay" / "cat01.jpg"  # indexed: its own photo stays first, nobody's neighbour
    d = index.embed_queries([query])
    ids, x = index.all_vectors()
    plain = index.search(query, k=len(ids), rerank=0, rotations=False)
    own = plain[0]
    assert own.score >= qx.SAME_IMAGE
    got = index.search(
        query, k=len(ids), rotations=False
    )  # the default re-ranks them all (fewer than DEFAULT_RERANK)
    assert got[0].id == own.id and got[0].score == pytest.approx(own.score, abs=1e-6)
    assert sorted(h.id for h in got) == sorted(ids.tolist())
    want = _augmented_scores(x, ids, d[0], {h.id for h in plain[1:]})
    for h in got[1:]:
        assert h.score == pytest.approx(want[h.id], abs=1e-4), h.path
    scores = [h.score for h in got[1:]]
    assert all(a >= b - 1e-6 for a, b in zip(scores, scores[1:]))  # best first
    assert [h.score for h in plain[1:]] != pytest.approx(scores, abs=1e-3)  # it changes the scores here
    # depth 3: the first 3 other hits re-scored among themselves, the others after them as they were
    three = index.search(query, k=len(ids), rerank=3, rotations=False)
    assert {h.id for h in three[1:4]} == {h.id for h in plain[1:4]}
    assert [h.id for h in three[4:]] == [h.id for h in plain[4:]]
    assert [h.score for h in three[4:]] == pytest.approx([h.score for h in plain[4:]], abs=1e-6)
    want3 = _augmented_scores(x, ids, d[0], {h.id for h in plain[1:4]})
    for h in three[1:4]:
        assert h.score == pytest.approx(want3[h.id], abs=1e-4)


def test_rerank_on_constructed_vectors_follows_the_neighbours():
    """Two hits at one cosine to the query: the one whose nearest hit also resembles the query comes
    first. A byte copy is never a hit's neighbour: b and its copy both take m."""
    q = _unit(1, 0, 0, 0)
    a = _unit(0.8, 0.6, 0, 0)  # cos 0.8 to q; nearest: n (0.96), which resembles q (0.6)
    b = _unit(0.8, 0, 0.6, 0)  # cos 0.8 to q; nearest after its copy: m (0.81), far from q (0.3)
    n = _unit(0.6, 0.8, 0, 0)
    m = _unit(0.3, 0, 0.954, 0)
    x = np.stack([a, b, n, m, b])
    nearest, score = nr.nearest_others(x)
    assert nearest.tolist() == [2, 3, 0, 1, 3] and score[[1, 4]] == pytest.approx([0.81, 0.81], abs=0.01)
    search, stored = _flat_search(x)
    s, i = nr.ranked(search, stored, q[None], 5, qe=0, alpha=1.0, depth=5)
    assert i[0][:2].tolist() == [0, 2] and sorted(i[0][2:4].tolist()) == [1, 4] and i[0][4] == 3
    assert s[0] == pytest.approx([0.709, 0.705, 0.605, 0.605, 0.550], abs=0.003)
    plain_s, _ = nr.ranked(search, stored, q[None], 5, qe=0, alpha=1.0, depth=0)
    assert plain_s[0][:3] == pytest.approx([0.8, 0.8, 0.8], abs=1e-5)  # a, b, b's copy tie without it
