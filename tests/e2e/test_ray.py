"""``--engine ray``: a real local Ray (2 CPUs) decodes and embeds, the driver writes the index.

The same folder of real photos (and one corrupt file) indexed by the local engine and by Ray gives
the same index: same rows and ids, same error rows, same vectors; an incremental Ray run after
adding, changing and removing files touches only those.
"""

import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLES, copy_photos, reap_ray_processes
from PIL import Image

from indexer.index import Index
from indexer.storage.tables import ErrorRow, ImageRow

ray = pytest.importorskip("ray", reason='Ray is optional: pip install "vgg-retrieval[ray]"')

from indexer.update.ray_embedding import RayOptions, code_modules  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module: 2 CPUs, no dashboard, a small object store."""
    if ray.is_initialized():  # pragma: no cover - a Ray left over by another module
        ray.shutdown()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        object_store_memory=200 * 1024 * 1024,
        runtime_env={"py_modules": code_modules()},
    )
    yield ray
    ray.shutdown()
    reap_ray_processes()  # workers that outlive the shutdown (one once outlived the whole suite)


def _rows(idx):
    with idx.store.session() as s:
        return {
            r.path: (r.id, r.sha256, r.size, r.width, r.height, r.format, r.label) for r in s.query(ImageRow)
        }


def _errors(idx):
    with idx.store.session() as s:
        return {e.path: (e.reason, e.size) for e in s.query(ErrorRow)}


def _vectors(idx):
    return {path: idx.vector(row[0]) for path, row in _rows(idx).items()}


@pytest.fixture
def folder(photos):
    """The conftest photos, a corrupt JPEG and a truncated PNG."""
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + bytes(range(256)) * 4)
    data = (SAMPLES / "skimage" / "coffee.png").read_bytes()
    (photos / "skimage" / "truncated.png").write_bytes(data[: len(data) // 3])
    return photos


def test_cli_engine_ray_starts_its_own_ray(tmp_path, tiny_model, folder, capsys):
    """The command line as a user runs it: no Ray running, so the command starts a private local one
    (shipping this checkout's code to its workers), with ONNX Runtime in the actors."""
    from indexer.cli import main

    _, _, model_dir = tiny_model
    ix = tmp_path / "ix"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "indexer",
            "index",
            str(folder),
            "--index",
            str(ix),
            "--model",
            str(model_dir),
            "--engine",
            "ray",
            "--ray-actors",
            "1",
            "--ray-model-engine",
            "onnxruntime",
            "-q",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "6 added" in p.stdout and "2 errors" in p.stdout and f"skipped {folder / 'broken.jpg'}" in p.stdout
    assert not ray.is_initialized()
    # the command's private Ray (raylet, GCS, actors) is gone with the command: nothing left to kill
    assert reap_ray_processes(grace_s=30.0) == []
    with Index.open(ix) as idx:  # vectors from ONNX Runtime actors match OpenVINO's in this process
        china = folder / "sklearn" / "china.jpg"
        fresh = idx.embedder.embed([china])[0]
        assert float(np.dot(idx.vector(idx.store.row_by_path(str(china)).id), fresh)) >= 0.9999
        assert idx.check().ok and idx.count == 6

    # mistakes are one line each, found before Ray starts
    rc = main(["index", str(folder), "--index", str(ix), "--ray-address", "auto", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == "error: --ray-address only apply with --engine ray"
    rc = main(["index", str(folder), "--index", str(ix), "--engine", "ray", "--ray-actors", "0", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == "error: --ray-actors must be at least 1 (got 0)"
    assert not ray.is_initialized()


def test_ray_index_equals_local_index(tmp_path, make_index, folder, local_ray):
    local = make_index(tmp_path / "local")
    r_local = local.update([folder], workers=0, progress=False)
    distributed = make_index(tmp_path / "ray", ray=RayOptions(actors=1))
    assert distributed.ray is not None and distributed.engine_name == "openvino"
    r_ray = distributed.update([folder], progress=False)

    assert (r_ray.added, r_ray.embedded, r_ray.removed) == (r_local.added, r_local.embedded, 0) == (6, 6, 0)
    assert sorted(r_ray.errors) == sorted(r_local.errors) and len(r_ray.errors) == 2
    # same rows with the same metadata (ids follow commit order: the local path batches photos by
    # input shape, Ray in file order)
    assert {p: r[1:] for p, r in _rows(distributed).items()} == {p: r[1:] for p, r in _rows(local).items()}
    # same error rows with the same reasons
    errors = _errors(distributed)
    assert errors == _errors(local)
    assert set(errors) == {str(folder / "broken.jpg"), str(folder / "skimage" / "truncated.png")}
    # same vectors
    vl, vr = _vectors(local), _vectors(distributed)
    assert set(vl) == set(vr)
    for path in vl:
        assert float(np.dot(vl[path], vr[path])) >= 0.9999, path
    assert distributed.check().ok and local.check().ok
    # and the same search results, up to near-ties (the two runs' vectors agree to cosine 0.9999)
    q = SAMPLES / "pixabay" / "cat01.jpg"
    d_hits, l_hits = distributed.search(q, k=6), local.search(q, k=6)
    assert d_hits[0].path == l_hits[0].path
    assert np.allclose([h.score for h in d_hits], [h.score for h in l_hits], atol=1e-3)
    l_all = {h.path: h.score for h in local.search(q, k=len(vl))}
    assert all(abs(l_all[h.path] - h.score) <= 1e-3 for h in d_hits)


def test_ray_incremental_update_changes_only_what_changed(
    tmp_path, make_index, folder, local_ray, monkeypatch
):
    from indexer.update import updater

    # no commit here counts as slow: on a loaded machine one can pass SLOW_COMMIT and merge the next
    monkeypatch.setattr(updater, "SLOW_COMMIT", 60.0)
    idx = make_index(tmp_path / "ray", ray=RayOptions(actors=1))
    idx.update([folder], progress=False, commit_every=2)  # a commit every 2 images, as the local path does
    assert int(idx.store.meta("generation")) == 3  # 6 images: 3 commits (the errors go with them)
    before = _rows(idx)
    v_before = _vectors(idx)

    added = copy_photos(folder, ["pixabay/ship01.jpg"], flat=True)[0]
    removed = folder / "pixabay" / "dog01.jpg"
    removed.unlink()
    fixed = folder / "broken.jpg"  # the corrupt file becomes a real picture: its error row goes
    Image.open(SAMPLES / "opencv" / "fruits.jpg").save(fixed, format="JPEG")
    r = idx.update([folder], progress=False)
    assert (r.added, r.updated, r.removed, r.unchanged, r.embedded) == (2, 0, 1, 5, 2)
    assert [p for p, _ in r.errors] == []  # the truncated file is unchanged: not retried
    assert set(_errors(idx)) == {str(folder / "skimage" / "truncated.png")}

    after = _rows(idx)
    assert set(after) == set(before) - {str(removed)} | {str(added), str(fixed)}
    v_after = _vectors(idx)
    for path in set(before) - {str(removed)}:
        assert after[path] == before[path]  # same row, same id
        assert np.array_equal(v_after[path], v_before[path])  # vector untouched
    # the new files' vectors are what the local engine makes of them
    fresh = idx.embedder.embed([added, fixed])
    assert float(np.dot(v_after[str(added)], fresh[0])) >= 0.9999
    assert float(np.dot(v_after[str(fixed)], fresh[1])) >= 0.9999
    assert idx.check().ok and idx.count == 7

    r = idx.update([folder], progress=False)  # nothing changed: Ray is not even needed
    assert (r.added, r.updated, r.removed, r.unchanged, r.embedded) == (0, 0, 0, 7, 0)


def test_without_ray_installed_says_how_to_install(tmp_path, photos):
    """Ray made unimportable in a fresh interpreter: one line naming the extra, exit status 2."""
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "from indexer.cli import main\n"
        f"sys.exit(main(['index', {str(photos)!r}, '--index', {str(tmp_path / 'ix')!r}, '--engine', 'ray']))"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        'error: --engine ray needs Ray Data (ray is not installed): pip install "vgg-retrieval[ray]"'
    ]
    assert not (tmp_path / "ix").exists()  # refused before anything was built
