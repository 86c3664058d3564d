"""Whitening learnt on the index's own vectors (indexer.vectors.whitening, indexer.storage.whitened_vectors):
the fit, its file,
the whitened copy that searches read, the rules (minimum size, refit on growth, AUTO_WHITEN), the
CLI, a mixed model refused, and crash safety. Real FAISS and SQLite; constructed vectors for the
collection size, the tiny model for the query path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from test_index_types import commit, data, near, paths

from indexer import Index, vectors
from indexer.cli import main
from indexer.faults import ENV
from indexer.storage import whitened_vectors as whitened
from indexer.vectors import whitening
from retrieval.errors import UserError

ENOUGH = whitening.MIN_VECTORS + 30  # just above the minimum


def files(ix) -> set[str]:
    return {p.name for p in ix.iterdir() if p.name.startswith(("whitening-", "whitened-"))}


def ranked(idx: Index, q: np.ndarray, k: int = 5) -> list[list[tuple[str, float]]]:
    return [[(h.path, round(h.score, 5)) for h in row] for row in idx.search_vectors(q, k)]


@pytest.fixture
def big(tmp_path, make_index):
    """An index of ENOUGH constructed vectors (not whitened yet), and the vectors."""
    idx = make_index(tmp_path / "ix")
    x = data(ENOUGH, seed=11)
    commit(idx, dict(zip(paths(0, ENOUGH), x)))
    return idx, x


def test_fit_gives_unit_rows_and_shrinks_towards_the_identity():
    x = data(300, seed=1)
    w = whitening.fit(x, "m", beta=0.5)
    y = w.apply(x)
    assert y.shape == (300, 512) and np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    assert 0 < w.info["shrinkage"] < 1  # 300 samples for 512 dims: Ledoit-Wolf shrinks a lot
    cov = np.cov((y - y.mean(0)).T)
    eig = np.linalg.eigvalsh(cov)[-50:]
    raw = np.linalg.eigvalsh(np.cov(x.T))[-50:]
    assert eig.max() / eig.min() < raw.max() / raw.min()  # flatter spectrum than the raw vectors
    plain = whitening.fit(x, "m", method="pca")
    assert plain.dim == 299  # only the N-1 non-degenerate directions
    centred = (x[:4] - x.mean(0)) / np.linalg.norm(x[:4] - x.mean(0), axis=1, keepdims=True)
    y0 = whitening.fit(x, "m", beta=0.0).apply(x[:4])
    assert np.allclose(y0 @ y0.T, centred @ centred.T, atol=1e-5)  # beta 0: centring only (same cosines)


def test_file_round_trip_and_a_mixed_model_refused(tmp_path):
    w = whitening.fit(data(200, seed=2), "model-a")
    whitening.save(w, tmp_path / "w.npz")
    back = whitening.load(tmp_path / "w.npz", "model-a")
    q = data(5, seed=3)
    assert np.array_equal(back.apply(q), w.apply(q)) and back.n == 200 and back.info == w.info
    with pytest.raises(UserError, match="refused for a mixed model") as e:
        whitening.load(tmp_path / "w.npz", "model-b")
    assert "\n" not in str(e.value)
    (tmp_path / "bad.npz").write_bytes(b"not a whitening")
    with pytest.raises(UserError, match="cannot be read"):
        whitening.load(tmp_path / "bad.npz", "model-a")


def test_whitening_round_trips_through_the_index_folder(tmp_path, big):
    idx, x = big
    before = ranked(idx, near(x[:8], 0.9))
    state = idx.whiten()
    assert state is not None and state.n == ENOUGH and idx.whitening is state
    q = near(x[:8], 0.9)
    after = ranked(idx, q)
    assert after != before  # the whitened space ranks differently
    assert all(row[0][0] == paths(0, 8)[i] for i, row in enumerate(after))
    assert all(-1 <= s <= 1.00001 for row in after for _, s in row)
    idx.close()
    with Index.open(tmp_path / "ix") as again:
        assert np.array_equal(again.whitening.projection, state.projection)
        assert ranked(again, q) == after
        assert again.check().ok
        assert np.allclose(again.all_vectors()[1], x, atol=1e-6)  # the raw vectors stay as they were


def test_a_stored_photo_searched_by_itself_is_first_with_score_one(tmp_path, make_index, photos):
    idx = make_index(tmp_path / "ix")
    idx.update([photos], progress=False, workers=0)
    commit(idx, dict(zip(paths(0, ENOUGH), data(ENOUGH, seed=4))))
    assert idx.whiten() is not None
    for p in ["skimage/astronaut.png", "pixabay/cat01.jpg"]:
        hit = idx.search(photos / p, k=3)[0]
        assert hit.path == str(photos / p) and hit.score == pytest.approx(1.0, abs=1e-3)
        stored = idx.vector(hit.id)  # what the UI searches with: a stored (raw) vector
        assert idx.search_vectors(stored[None, :], 1)[0][0].path == hit.path


def test_small_collections_fall_back_to_no_whitening(tmp_path, make_index, capsys):
    idx = make_index(tmp_path / "ix")
    x = data(whitening.MIN_VECTORS - 1, seed=5)
    commit(idx, dict(zip(paths(0, len(x)), x)))
    before = ranked(idx, x[:4])
    assert idx.whiten() is None and idx.whitening is None and not files(tmp_path / "ix")
    assert ranked(idx, x[:4]) == before
    assert main(["whiten", "--index", str(tmp_path / "ix")]) == 0
    assert f"needs at least {whitening.MIN_VECTORS}" in capsys.readouterr().out
    assert idx.whiten(force=True) is not None  # an expert may insist


def test_updates_follow_refit_on_growth_and_auto_whiten(tmp_path, big, make_index, monkeypatch):
    idx, x = big
    idx.whiten(beta=0.25, dim_out=256)  # an expert's choice: kept by the refit
    more = data(ENOUGH + 10, seed=6)
    commit(idx, dict(zip(paths(ENOUGH, ENOUGH + 50), more[:50])), delete_paths=paths(0, 5))
    assert idx.whitening.n == ENOUGH and idx.check().ok  # followed, not refitted
    assert ranked(idx, near(more[7:8], 0.95), 1)[0][0][0] == paths(ENOUGH, ENOUGH + 50)[7]
    commit(idx, dict(zip(paths(ENOUGH + 50, 2 * ENOUGH + 10), more[50:])))
    assert idx.whitening.n == idx.count == 2 * ENOUGH + 5 and idx.check().ok  # doubled: refitted
    assert idx.whitening.info["beta"] == 0.25 and idx.whitening.dim == 256
    assert len(files(tmp_path / "ix")) == 2  # the older fit's files are gone

    auto = make_index(tmp_path / "auto")
    monkeypatch.setattr(whitening, "AUTO_WHITEN", True)
    commit(auto, dict(zip(paths(0, ENOUGH - 100), x[:-100])))
    assert auto.whitening is None  # below the minimum: never fitted, even when automatic
    commit(auto, dict(zip(paths(ENOUGH - 100, ENOUGH), x[-100:])))
    assert auto.whitening is not None and auto.whitening.n == ENOUGH and auto.check().ok


def test_a_type_conversion_rebuilds_the_whitened_copy(tmp_path, make_index):
    idx = make_index(tmp_path / "ix", index_options={"flat_limit": ENOUGH + 20})
    x = data(ENOUGH + 20, seed=7)
    commit(idx, dict(zip(paths(0, ENOUGH), x[:ENOUGH])))
    idx.whiten()
    commit(idx, dict(zip(paths(ENOUGH, ENOUGH + 20), x[ENOUGH:])))  # flat -> IVF
    assert idx.vectors_info()["factory"].startswith("IVF")
    copy = idx.committed.whitened.load()[1]
    assert vectors.ivf_of(copy) is not None and copy.ntotal == ENOUGH + 20 and idx.check().ok


def test_a_mixed_model_whitening_is_refused(tmp_path, big, capsys):
    idx, x = big
    idx.whiten()
    meta = idx.store.meta(whitened.META)
    other = whitening.fit(x, "another-model")
    whitening.save(other, tmp_path / "ix" / meta["file"])  # e.g. copied over from another index
    idx.close()
    with Index.open(tmp_path / "ix") as again:
        with pytest.raises(UserError, match="refused for a mixed model"):
            again.search_vectors(x[:1], 1)
        assert any("refused for a mixed model" in p for p in again.check().problems)
    assert main(["info", "--index", str(tmp_path / "ix")]) == 0
    assert "whitening: unusable" in capsys.readouterr().out
    assert main(["whiten", "--index", str(tmp_path / "ix")]) == 0  # fitting again repairs it
    with Index.open(tmp_path / "ix") as again:
        assert again.whitening.model_id == again.spec.model_id and again.check().ok


def test_cli_whiten_info_and_remove(tmp_path, big, capsys):
    idx, x = big
    ix = str(tmp_path / "ix")
    q = x[:3]
    raw = ranked(idx, q)
    idx.close()
    assert main(["whiten", "--index", ix]) == 0
    assert "whitened (centred on the collection's mean" in capsys.readouterr().out
    assert main(["info", "--index", ix]) == 0
    assert f"fitted on {ENOUGH} vectors" in capsys.readouterr().out
    assert main(["whiten", "--index", ix, "--remove"]) == 0
    assert "whitening removed" in capsys.readouterr().out
    assert not files(tmp_path / "ix")
    with Index.open(ix) as again:
        assert again.whitening is None and ranked(again, q) == raw


def test_a_failed_commit_of_a_whitened_index_keeps_the_last_state(tmp_path, big, monkeypatch):
    idx, x = big
    idx.whiten()
    have = files(tmp_path / "ix")
    q = near(x[:4], 0.9)
    before = ranked(idx, q)
    real_save = vectors.save

    def whitened_disk_full(index, directory, generation, prefix="vectors"):
        if prefix == whitened.FAISS_PREFIX:
            raise OSError(28, "No space left on device")
        return real_save(index, directory, generation, prefix)

    monkeypatch.setattr(vectors, "save", whitened_disk_full)
    with pytest.raises(UserError, match="keeps its last saved state"):
        commit(idx, dict(zip(paths(ENOUGH, ENOUGH + 10), data(10, seed=8))))
    monkeypatch.undo()
    assert idx.count == ENOUGH and files(tmp_path / "ix") == have and ranked(idx, q) == before
    assert idx.check().ok


def run_whiten(ix, point):
    return subprocess.run(
        [sys.executable, "-m", "indexer", "whiten", "--index", str(ix)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, ENV: point},
    )


@pytest.mark.parametrize(
    "point,done", [("whitening_fitted", False), ("whitening_saved", False), ("whitening_committed", True)]
)
def test_a_killed_fit_leaves_the_index_as_before(tmp_path, big, point, done):
    idx, x = big
    q = near(x[:4], 0.9)
    before = ranked(idx, q)
    idx.close()
    r = run_whiten(tmp_path / "ix", point)
    assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-500:])
    with Index.open(tmp_path / "ix") as again:
        assert again.check().ok
        assert (again.whitening is not None) == done
        if not done:
            assert ranked(again, q) == before
        assert again.whiten() is not None and not (
            set(files(tmp_path / "ix"))
            - {again.store.meta(whitened.META)["file"], again.store.meta(whitened.META)["vectors_file"]}
        )
