"""The engine registry: a new engine is one decorated loader, then every listing and loader knows it.

The engine registered here is real: ONNX Runtime on one thread over the tiny model's export."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import SAMPLES, copy_photos

import retrieval.engines as engines
from retrieval.engines import load_embedder, register_engine
from retrieval.errors import UserError

PHOTOS = [SAMPLES / p for p in ("pixabay/cat01.jpg", "skimage/coffee.png", "sklearn/china.jpg")]

# what a plugin (or a new *_engine module) writes; the CLI test runs it before importing the CLI
NEW_ENGINE = """
from retrieval.engines import exported_file, register_engine
from retrieval.engines.onnxruntime_engine import OnnxRuntimeEmbedder
from retrieval.engines.export import ONNX_FILE

@register_engine("ort-single", model_files=(ONNX_FILE,))
def load_single(spec, model_dir, *, net=None, batch_size=8, threads=None, **options):
    emb = OnnxRuntimeEmbedder(spec, exported_file(model_dir, ONNX_FILE, "ONNX model"), batch_size=batch_size,
                              threads=1)
    emb.name = "ort-single"
    return emb
"""


@pytest.fixture
def new_engine():
    namespace: dict = {}
    exec(NEW_ENGINE, namespace)
    yield namespace["load_single"]
    engines.unregister_engine("ort-single")


def test_the_built_in_engines_in_their_order():
    assert engines.ENGINES == ("openvino", "onnxruntime", "torch", "tensorrt")
    assert engines.DEFAULT_ENGINE == engines.ENGINES[0]
    assert engines.ray_engine_names() == ("openvino", "onnxruntime")
    from indexer.update.ray_embedding import MODEL_ENGINES

    assert MODEL_ENGINES == ("openvino", "onnxruntime")
    assert engines.engine_entry("openvino").model_files == ("model.xml", "model.bin")
    assert not engines.engine_entry("torch").needs_export


def test_a_registered_engine_is_listed_and_loads(tiny_model, new_engine):
    spec, net, model_dir = tiny_model
    assert engines.engine_entry("ort-single").load is new_engine
    from retrieval.engines import ENGINES  # read on access: engines registered after import are listed

    assert ENGINES == ("openvino", "onnxruntime", "torch", "tensorrt", "ort-single")
    assert engines.ray_engine_names() == ("openvino", "onnxruntime")  # not registered with ray=True
    emb = load_embedder("ort-single", spec, model_dir, batch_size=2)
    assert emb.name == "ort-single" and emb.session.get_session_options().intra_op_num_threads == 1
    got = emb.embed(PHOTOS)
    ref = load_embedder("torch", spec, net=net).embed(PHOTOS)
    assert got.shape == (3, spec.descriptor_dim) and (got * ref).sum(1).min() >= 0.9999
    # the registry's checks apply to it like to the built-in ones
    with pytest.raises(UserError, match="the ort-single engine needs an exported model folder"):
        load_embedder("ort-single", spec)
    # a second registration under the same name is a programming error, not a silent replacement
    with pytest.raises(ValueError, match="already registered"):
        register_engine("ort-single")(lambda *a, **k: None)


def test_unknown_engine_is_one_line(tiny_model):
    spec, _, model_dir = tiny_model
    with pytest.raises(UserError) as e:
        load_embedder("tensorflow", spec, model_dir)
    assert str(e.value) == "unknown engine 'tensorflow'; choose one of openvino, onnxruntime, torch, tensorrt"
    from retrieval.compress.bench import parse_variant

    with pytest.raises(UserError, match=r"with ENGINE openvino\|onnxruntime\|torch\|tensorrt$"):
        parse_variant("x=tensorflow:/tmp")
    assert parse_variant("fast=onnxruntime:/m")[:2] == ("fast", "onnxruntime")


def test_the_cli_offers_and_runs_a_registered_engine(tiny_model, tmp_path):
    """Registered before the CLI is imported (as a plugin would be), the name is an --engine choice
    and a search runs on it."""
    from indexer import Index

    spec, _, model_dir = tiny_model
    photos = tmp_path / "photos"
    copy_photos(photos, ["pixabay/cat01.jpg", "skimage/coffee.png", "sklearn/china.jpg"], flat=True)
    with Index.create(tmp_path / "index", spec, model_dir=model_dir) as idx:
        idx.update([photos], workers=0, progress=False)
    code = NEW_ENGINE + ("import sys\nfrom indexer.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    run = [sys.executable, "-c", code]
    r = subprocess.run(run + ["search", "--help"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "openvino|onnxruntime|torch|tensorrt|ort-single" in r.stdout.replace(
        "\n", ""
    ), r
    r = subprocess.run(
        run
        + [
            "search",
            str(photos / "coffee.png"),
            "--index",
            str(tmp_path / "index"),
            "--engine",
            "ort-single",
            "--json",
            "-k",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout.splitlines()[0])["results"]
    assert hits[0]["path"].endswith("coffee.png") and np.isclose(hits[0]["score"], 1.0, atol=1e-4)
