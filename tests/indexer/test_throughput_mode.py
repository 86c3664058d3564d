"""OpenVINO's throughput mode (several batches in flight) gives the latency mode's descriptors, in order."""

import os

import numpy as np
import pytest
from conftest import SAMPLES, copy_photos

from retrieval.engines import load_embedder
from retrieval.preprocess import load_and_prepare

# portrait, landscape and square photos: several bucket shapes in one batch
NAMES = [
    "skimage/astronaut.png",
    "skimage/chelsea.png",
    "opencv/leuvenA.jpg",
    "pixabay/bird01.jpg",
    "sklearn/china.jpg",
    "opencv/left01.jpg",
    "skimage/rocket.jpg",
    "opencv/messi5.jpg",
    "pixabay/dog01.jpg",
    "opencv/building.jpg",
    "skimage/coffee.png",
    "pixabay/horse01.jpg",
]


def _batches(spec, batch: int):
    prepared = [load_and_prepare(SAMPLES / n, spec.input_geometry) for n in NAMES]
    out = [([], np.zeros((0, 2), np.int64))]  # an empty batch (all of its items were problems) too
    for i in range(0, len(prepared), batch):
        part = prepared[i : i + batch]
        out.append(([p.array for p in part], np.array([p.valid for p in part], dtype=np.int64)))
    return out


def test_throughput_mode_matches_latency_mode_in_order(vgg16_model):
    spec, _, model_dir = vgg16_model
    batches = _batches(spec, 5)
    assert spec.input_policy == "buckets"
    assert len({a.shape for images, _ in batches for a in images}) >= 3  # mixed bucket shapes
    latency = load_embedder("openvino", spec, model_dir, batch_size=5)
    want = [latency.embed_batch(*b) for b in batches]
    fast = load_embedder("openvino", spec, model_dir, batch_size=5, performance="THROUGHPUT")
    got = list(fast.embed_stream(iter(batches)))
    assert fast.in_flight >= 1 and len(got) == len(want)
    assert got[0].shape == (0, 512)
    ref, out = np.concatenate(want), np.concatenate(got)
    assert out.shape == (len(NAMES), 512)
    assert (ref * out).sum(1).min() >= 0.9999
    sims = ref @ ref.T  # the photos differ, so a row out of order would fail the line above
    assert sims[~np.eye(len(NAMES), dtype=bool)].max() < 0.99


def test_index_updates_in_throughput_mode(tmp_path, tiny_model):
    from indexer import Index

    spec, net, model_dir = tiny_model
    folder = tmp_path / "photos"
    files = copy_photos(folder, NAMES, flat=True)
    (folder / "broken.jpg").write_bytes(b"not an image")  # a problem item among the batches
    with Index.create(
        tmp_path / "ix", spec, model_dir=model_dir, batch_size=3, engine_options={"performance": "THROUGHPUT"}
    ) as idx:
        assert idx.embedder.throughput
        report = idx.update([folder], workers=0, progress=False)
        assert report.added == len(files) and idx.count == len(files)
        want = load_embedder("openvino", spec, model_dir).embed(files)
        got = np.stack([idx.vector(idx.store.row_by_path(os.path.realpath(f)).id) for f in files])
    assert (want * got).sum(1).min() >= 0.9999


def test_unknown_performance_mode_is_refused(tiny_model):
    spec, _, model_dir = tiny_model
    with pytest.raises(ValueError, match="THROUGHPUT"):
        load_embedder("openvino", spec, model_dir, performance="fastest")


def test_index_cli_throughput_flag(tmp_path, tiny_model):
    from click.testing import CliRunner

    from indexer import Index
    from indexer.cli import cli
    from retrieval.errors import UserError

    _, _, model_dir = tiny_model
    folder = tmp_path / "photos"
    copy_photos(folder, NAMES[:4], flat=True)
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "index",
            str(folder),
            "--index",
            str(tmp_path / "ix"),
            "--model",
            str(model_dir),
            "--throughput",
            "--workers",
            "0",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    with Index.open(tmp_path / "ix") as idx:
        assert idx.count == 4
    res = runner.invoke(
        cli,
        [
            "index",
            str(folder),
            "--index",
            str(tmp_path / "ix2"),
            "--model",
            str(model_dir),
            "--throughput",
            "--engine",
            "onnxruntime",
        ],
    )
    assert isinstance(res.exception, UserError) and "--engine openvino" in str(res.exception)
    assert not (tmp_path / "ix2").exists()


def test_photos_of_mixed_aspects_fill_every_batch(tmp_path, tiny_model):
    """Indexing batches photos by input shape (bucket): landscape and portrait photos interleaved
    still run in full batches (3 inferences for 16 + 8 photos at batch 8, where batches of
    consecutive files split by shape ran 6), and every photo gets its own vector."""
    from PIL import Image

    from indexer import Index
    from retrieval.engines.openvino_engine import OpenVinoEmbedder

    spec, net, model_dir = tiny_model
    rng = np.random.default_rng(0)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i in range(24):
        size = (48, 64) if i % 3 == 2 else (64, 48)  # (width, height): every third photo portrait
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            folder / f"{i:02d}.png"
        )
    runs = []
    real = OpenVinoEmbedder._run

    def counted(self, images, sizes):
        runs.append(len(images))
        return real(self, images, sizes)

    with Index.create(tmp_path / "ix", spec, model_dir=model_dir, batch_size=8) as idx:
        OpenVinoEmbedder._run = counted
        try:
            report = idx.update([folder], workers=0, progress=False)
        finally:
            OpenVinoEmbedder._run = real
        assert report.added == 24 and not report.errors
        assert sorted(runs) == [8, 8, 8]
        for name in ("02.png", "03.png"):  # a portrait and a landscape photo find themselves first
            assert idx.search(folder / name, k=1)[0].path.endswith(name)
