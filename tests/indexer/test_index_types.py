"""Index types (flat, hnsw, ivf, ivfpq, auto, raw FAISS factory strings): updates, check, search,
conversion at the threshold, old indexes, shard merging and the CLI options. Real FAISS, real SQLite;
thresholds are lowered through ``index_options`` so a few thousand vectors exercise every path."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import delete

from indexer import Index, UpdateReport, vectors
from indexer.cli import main
from indexer.storage.tables import MetaRow
from indexer.update.decode import Decoded
from retrieval.errors import UserError

DIM = 512


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def data(n: int, seed: int = 0) -> np.ndarray:
    """Non-negative topic-like vectors (as pooled ReLU features are), unit length."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((40, DIM))
    return unit(np.maximum(topics[rng.integers(0, 40, n)] + 1.5 * rng.standard_normal((n, DIM)), 0))


def near(v: np.ndarray, cos: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(v.shape)
    noise = unit(noise - (noise * v).sum(-1, keepdims=True) * v)
    return unit(cos * v + np.sqrt(1 - cos * cos) * noise)


def commit(idx: Index, vecs: dict[str, np.ndarray], delete_paths=()) -> None:
    """One real ``Index._commit`` (the step ``update`` takes) with given vectors for fake paths."""
    idx._load_vectors(force=True)
    added = [
        (Decoded(path=p, root="/syn", size=1, mtime_ns=1, sha256="0" * 64, format="JPEG"), v)
        for p, v in vecs.items()
    ]
    idx._commit(added, [], {}, list(delete_paths), [], UpdateReport())


def assert_same_ranking(hits, q: np.ndarray, x: np.ndarray, names: list[str], tol: float = 1e-4) -> None:
    """``hits`` are an exact top-k of ``q`` over ``x``, up to float ties: each row's scores equal
    numpy's top-k scores within ``tol``, and every hit is a vector whose true score is that high.
    Exact rank equality is not asserted: SIMD kernels (AVX2, AVX-512) order near-ties differently."""
    sims = q @ x.T
    index_of = {name: i for i, name in enumerate(names)}
    for row, s in zip(hits, sims):
        k = len(row)
        top = np.sort(s)[::-1][:k]
        got = np.array([h.score for h in row])
        assert np.allclose(got, top, atol=tol), (got, top)
        true_scores = np.array([s[index_of[h.path]] for h in row])
        assert np.allclose(true_scores, got, atol=tol)  # each hit's own score, not another's
        assert len({h.path for h in row}) == k


def paths(i0: int, i1: int) -> list[str]:
    return [f"/syn/{i:05d}.jpg" for i in range(i0, i1)]


def top_path(idx: Index, q: np.ndarray, **params) -> str:
    return idx.search_vectors(q[None, :], 1, **params)[0][0].path


# --- the default stays what it was ------------------------------------------------------------------
def test_a_new_index_is_exact_flat_as_before(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    info = idx.vectors_info()
    assert info["type"] == "IndexIDMap2(IndexFlatIP)" and info["index_type"] == "auto"
    assert info["factory"] == "flat" and info["exact"] and info["count"] == 6
    assert idx.check().ok


def test_an_index_from_before_index_types_keeps_working(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], workers=0, progress=False)
    with idx.store.session.begin() as s:  # what an older version wrote: no vectors_index meta
        s.execute(delete(MetaRow).where(MetaRow.key == "vectors_index"))
    idx.close()
    with Index.open(tmp_path / "ix") as old:
        assert old.store.meta("vectors_index") is None
        assert old.vectors_info()["index_type"] == "auto"
        assert old.search(photos / "pixabay" / "cat01.jpg", k=1)[0].path.endswith("cat01.jpg")
        (photos / "skimage" / "coffee.png").unlink()
        report = old.update([photos], workers=0, progress=False)
        assert report.removed == 1 and old.count == 5 and old.check().ok
        assert old.vectors_info()["type"] == "IndexIDMap2(IndexFlatIP)"


# --- every type through real commits -----------------------------------------------------------------
TYPES = {
    "flat": ("flat", {}, "flat"),
    "hnsw": ("hnsw", {}, "hnsw"),
    "ivf": ("ivf", {"train_min": 1000}, "IVF"),
    "pq": (
        "IVF16,PQ256x4",
        {"train_min": 1000},
        "IVF16,PQ256x4",
    ),  # PQ codes (4-bit: fast to train) without OPQ
    "auto": ("auto", {"flat_limit": 1000}, "IVF"),
    "raw": ("IVF16,Flat", {"train_min": 1000}, "IVF16,Flat"),
}


@pytest.mark.parametrize("name", list(TYPES))
def test_updates_keep_rows_and_vectors_equal(tmp_path, make_index, name):
    kind, options, built = TYPES[name]
    idx = make_index(tmp_path / "ix", index_type=kind, index_options=options)
    x = data(1500)
    p = paths(0, 1500)
    commit(idx, dict(zip(p[:700], x[:700])))
    first = idx.vectors_info()["factory"]
    assert first == ("hnsw" if kind == "hnsw" else "flat")  # nothing to train on yet
    assert idx.check().ok
    commit(idx, dict(zip(p[700:], x[700:])))  # crosses the threshold: trained and converted here
    info = idx.vectors_info()
    assert info["factory"].startswith(built) and info["count"] == 1500, info
    assert idx.store.meta("vectors_index")["built"]["n"] == (1500 if built not in ("flat", "hnsw") else 0)
    rep = idx.check()
    assert rep.ok, rep.problems

    # planted neighbours are found
    for i in (3, 777, 1499):
        assert top_path(idx, near(x[i], 0.95, seed=i)) == p[i]

    # files removed
    commit(idx, {}, delete_paths=p[:50])
    assert idx.count == 1450 and idx.check().ok
    hits = idx.search_vectors(x[:5], 10)
    assert not {h.path for row in hits for h in row} & set(p[:50])

    # a changed file: same id, new vector
    row_id = idx.store.row_by_path(p[100]).id
    fresh = data(1600)[-1]  # another draw of the same distribution (the codes were trained on it)
    commit(idx, {p[100]: fresh})
    assert idx.count == 1450 and idx.store.row_by_path(p[100]).id == row_id
    rep = idx.check()
    assert rep.ok, rep.problems
    assert top_path(idx, fresh) == p[100]
    exact = vectors.is_exact(idx._load_vectors())
    assert float(idx.vector(row_id) @ fresh) > (0.9999 if exact else 0.85)

    # all_vectors (what dedup reads) covers exactly the rows, vectors close to what was added
    ids, xs = idx.all_vectors()
    assert sorted(ids.tolist()) == sorted(r.id for r in idx.store.rows_by_id(ids.tolist()).values())
    assert len(ids) == 1450
    by_id = {idx.store.row_by_path(p[i]).id: x[i] for i in (200, 900)}
    for i, v in by_id.items():
        cos = float(xs[ids.tolist().index(i)] @ v)
        assert cos > (0.9999 if exact else 0.85), cos

    # a reopened index reads the same type and still agrees with its database
    idx.close()
    with Index.open(tmp_path / "ix") as again:
        assert again.vectors_info()["factory"] == info["factory"] and again.check().ok


def test_what_each_type_becomes_as_the_collection_grows():
    cfg = vectors.make_config
    assert vectors.target_factory(cfg("auto"), 199_999, DIM) == "flat"
    assert vectors.target_factory(cfg("auto"), 200_000, DIM) == "IVF2048,SQ8"  # exact coarse quantizer
    assert vectors.target_factory(cfg("auto"), 50_000_000, DIM) == "OPQ64,IVF32768_HNSW32,PQ64"  # > 16k lists
    assert vectors.target_factory(cfg("ivfpq"), 49_999, DIM) == "flat"
    assert vectors.target_factory(cfg("ivfpq"), 1_000_000, DIM) == "OPQ64,IVF4096,PQ64"
    assert vectors.target_factory(cfg("ivf", train_min=100), 100, DIM) == "IVF2,SQ8"  # >= 39 per list
    assert vectors.target_factory(cfg("hnsw"), 0, DIM) == "hnsw"
    assert vectors.target_factory(cfg("HNSW16"), 0, DIM) == "HNSW16"  # needs no training: at once
    assert vectors.target_factory(cfg("IVF64,Flat"), 10, DIM) == "flat"


def test_ivf_puts_each_vector_in_its_nearest_list_and_finds_neighbours():
    """The coarse quantizer must assign exactly: an HNSW32 quantizer over inner products (what
    ``ivf`` used before) misplaced a quarter of the vectors and piled 6% of a 1M collection into one
    list, so searches got slower and missed neighbours."""
    x = data(8000, seed=5)
    ids = np.arange(len(x), dtype=np.int64) * 7 + 3
    factory = vectors.target_factory(vectors.make_config("ivf", train_min=1), len(x), DIM)
    index = vectors.build(factory, x, ids)
    ivf = vectors.ivf_of(index)
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    nearest = np.argmax(x @ centroids.T, axis=1)
    list_of = {}
    for lst in range(ivf.nlist):
        n = ivf.invlists.list_size(lst)
        if n:
            got = vectors.faiss.rev_swig_ptr(ivf.invlists.get_ids(lst), n).astype(np.int64)
            list_of.update(dict.fromkeys(got.tolist(), lst))
    placed = np.array([list_of[int(i)] for i in ids])
    assert np.mean(placed == nearest) > 0.999
    q = np.stack([near(x[i], 0.97, seed=i) for i in range(0, 8000, 80)])
    truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
    _, found = vectors.search(index, q, 10)
    recall = np.mean([len(set(f.tolist()) & set(ids[t].tolist())) / 10 for f, t in zip(found, truth)])
    assert recall >= 0.95, recall


def test_auto_converts_at_the_threshold_and_retrains_after_growth(tmp_path, make_index):
    idx = make_index(tmp_path / "ix", index_options={"flat_limit": 1000})
    x = data(4000, seed=3)
    p = paths(0, 4000)
    commit(idx, dict(zip(p[:999], x[:999])))
    assert idx.vectors_info()["type"] == "IndexIDMap2(IndexFlatIP)"
    commit(idx, {p[999]: x[999]})
    small = idx.vectors_info()
    assert (
        small["factory"] == f"IVF{vectors.nlist_for(1000)},SQ8" and small["type"] == "IndexIVFScalarQuantizer"
    )
    commit(idx, dict(zip(p[1000:3999], x[1000:3999])))
    assert idx.vectors_info()["factory"] == small["factory"]  # grown, but not 4x yet
    commit(idx, {p[3999]: x[3999]})
    big = idx.vectors_info()
    assert big["factory"] == f"IVF{vectors.nlist_for(4000)},SQ8" != small["factory"]
    assert idx.check().ok and top_path(idx, near(x[2500], 0.95)) == p[2500]
    commit(idx, {}, delete_paths=p[:3500])  # shrinking never converts back
    assert idx.vectors_info()["factory"] == big["factory"] and idx.count == 500 and idx.check().ok


def test_a_failed_conversion_commit_keeps_the_last_state(tmp_path, make_index, monkeypatch):
    idx = make_index(tmp_path / "ix", index_type="ivf", index_options={"train_min": 500})
    x = data(600, seed=5)
    commit(idx, dict(zip(paths(0, 400), x[:400])))
    before = idx.store.meta("vectors_file")

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vectors, "save", disk_full)
    with pytest.raises(UserError, match="keeps its last saved state"):
        commit(idx, dict(zip(paths(400, 600), x[400:])))
    monkeypatch.undo()
    assert idx.store.meta("vectors_file") == before and idx.count == 400
    assert idx.store.meta("vectors_index")["built"]["factory"] == "flat"
    assert idx.vectors_info()["factory"] == "flat" and idx.check().ok
    commit(idx, dict(zip(paths(400, 600), x[400:])))  # the retry converts
    assert idx.vectors_info()["factory"].startswith("IVF") and idx.check().ok


def test_nprobe_and_ef_search_per_search(tmp_path, make_index):
    idx = make_index(tmp_path / "ix", index_type="IVF16,Flat", index_options={"train_min": 1000, "nprobe": 1})
    x = data(2000, seed=7)
    commit(idx, dict(zip(paths(0, 2000), x)))
    q = data(30, seed=8)
    exact = idx.search_vectors(q, 10, nprobe=16, qe=0, rerank=0)  # every list probed: exact search
    assert_same_ranking(exact, q, x, paths(0, 2000))
    narrow = idx.search_vectors(q, 10, qe=0, rerank=0)  # stored default nprobe=1
    assert [[h.path for h in row] for row in narrow] != [[h.path for h in row] for row in exact]
    assert idx.search_vectors(q[:1], 3, nprobe=4, ef_search=8)[0]
    with pytest.raises(UserError, match="nprobe must be at least 1"):
        idx.search_vectors(q, 10, nprobe=0)


def test_bad_index_types_are_refused(tmp_path, make_index):
    with pytest.raises(UserError, match="not one of auto, flat, hnsw, ivf, ivfpq"):
        make_index(tmp_path / "a", index_type="fast")
    with pytest.raises(UserError, match="leave out IDMap"):
        make_index(tmp_path / "b", index_type="IDMap,Flat")
    with pytest.raises(UserError, match="train_min must be at least 1"):
        make_index(tmp_path / "c", index_options={"train_min": 0})


# --- sharded build ------------------------------------------------------------------------------------
def test_merged_shards_search_like_one_index(tmp_path):
    x = data(3000, seed=11)
    ids = np.arange(3000, dtype=np.int64) * 7 + 3
    template = vectors.train("IVF32_HNSW32,SQ8", x)  # trained once, cloned by every worker
    shards = []
    for part in np.array_split(np.arange(3000), 3):
        shard = vectors.faiss.clone_index(template)
        shard.add_with_ids(x[part], ids[part])
        path = tmp_path / f"shard{len(shards)}.faiss"
        vectors.faiss.write_index(shard, str(path))  # as a worker would hand it over
        shards.append(vectors.load(path))
    merged = vectors.merge_ivf_shards(shards)
    single = vectors.faiss.clone_index(template)
    single.add_with_ids(x, ids)
    assert merged.ntotal == 3000 and sorted(vectors.ids_of(merged)) == sorted(ids)
    q = near(x[:50], 0.9)
    d1, i1 = vectors.search(merged, q, 10, nprobe=8, ef_search=64)
    d2, i2 = vectors.search(single, q, 10, nprobe=8, ef_search=64)
    assert np.array_equal(i1, i2) and np.allclose(d1, d2)
    assert (i1[:, 0] == ids[:50]).mean() > 0.9
    assert float(merged.reconstruct(int(ids[5])) @ x[5]) > 0.99  # direct map restored: vectors by id
    vectors.remove(merged, ids[:10])
    assert merged.ntotal == 2990

    other = vectors.faiss.clone_index(vectors.train("IVF32_HNSW32,SQ8", x, seed=99))
    other.add_with_ids(x[:10], ids[:10] + 1)
    with pytest.raises(UserError, match="not trained with the same quantizer"):
        vectors.merge_ivf_shards([vectors.faiss.clone_index(single), other])
    dup = vectors.faiss.clone_index(template)
    dup.add_with_ids(x[:10], ids[:10])
    with pytest.raises(UserError, match="share ids"):
        vectors.merge_ivf_shards([vectors.faiss.clone_index(single), dup])


# --- command line -------------------------------------------------------------------------------------
def test_cli_index_type_and_search_parameters(tmp_path, tiny_model, photos, capsys):
    ix = str(tmp_path / "ix")
    model_dir = str(tiny_model[2])
    assert main(["index", str(photos), "--index", ix, "--model", model_dir, "--index-type", "warp"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --index-type 'warp'") and "\n" not in err
    assert not (tmp_path / "ix").exists()  # refused before anything was made

    assert (
        main(
            [
                "index",
                str(photos),
                "--index",
                ix,
                "--model",
                model_dir,
                "--index-type",
                "hnsw",
                "--workers",
                "0",
                "-q",
            ]
        )
        == 0
    )
    with Index.open(ix) as idx:
        assert idx.vectors_info()["type"] == "IndexIDMap2(IndexHNSWFlat)" and idx.check().ok
    capsys.readouterr()
    assert main(["index", "--index", ix, "--index-type", "ivf", "-q"]) == 2
    assert "created with hnsw" in capsys.readouterr().err
    query = str(photos / "pixabay" / "dog01.jpg")
    assert main(["search", query, "--index", ix, "--nprobe", "4", "--ef-search", "32", "-k", "1"]) == 0
    assert "dog01.jpg" in capsys.readouterr().out
    assert main(["search", query, "--index", ix, "--nprobe", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --nprobe must be at least 1 (got 0)"
