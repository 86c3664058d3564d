"""The three engines give the same descriptors: on real photos with the shared VGG16."""

import json

import numpy as np
import pytest
from conftest import SAMPLES

from retrieval.engines import load_embedder
from retrieval.engines.export import read_sidecar

PHOTOS = [
    SAMPLES / p
    for p in (
        "skimage/astronaut.png",
        "skimage/chelsea.png",
        "opencv/leuvenA.jpg",
        "pixabay/bird01.jpg",
        "sklearn/china.jpg",
        "opencv/left01.jpg",
    )
]


def test_three_engines_agree_on_real_photos(vgg16_model):
    spec, net, model_dir = vgg16_model
    out = {}
    for engine in ("torch", "onnxruntime", "openvino"):
        emb = load_embedder(engine, spec, model_dir, net=net, batch_size=4)
        out[engine] = emb.embed(PHOTOS)  # 6 images, batches of 4 and 2
        assert out[engine].shape == (len(PHOTOS), 512)
    for engine in ("onnxruntime", "openvino"):
        cos = (out[engine] * out["torch"]).sum(1)
        assert cos.min() >= 0.9999, (engine, cos)
    # and they are real descriptors: different photos differ
    sims = out["torch"] @ out["torch"].T
    assert sims[~np.eye(len(PHOTOS), dtype=bool)].max() < 0.95


@pytest.mark.parametrize("pooling", ["mac", "gem"])
def test_engines_agree_for_other_poolings(tmp_path, pooling):
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    spec, net = build("vgg11", "random", pooling=pooling, input_size=64)
    export_model(spec, net, tmp_path / "m")
    ref = load_embedder("torch", spec, net=net).embed(PHOTOS[:3])
    for engine in ("onnxruntime", "openvino"):
        got = load_embedder(engine, spec, tmp_path / "m").embed(PHOTOS[:3])
        assert (got * ref).sum(1).min() >= 0.9999


def test_sidecar_describes_the_model(vgg16_model):
    spec, _, model_dir = vgg16_model
    stored, raw = read_sidecar(model_dir)
    assert stored == spec and raw["model_id"] == spec.model_id
    for key in ("arch", "pooling", "input_size", "mean", "std", "weights_sha256"):
        assert key in raw["spec"]
    assert json.loads((model_dir / "model.json").read_text())["files"]["openvino"] == "model.xml"
    assert (model_dir / "model.bin").stat().st_size > 50e6  # FP32 weights, not compressed to FP16


def test_openvino_keeps_compiled_models_beside_the_ir(vgg16_model, tmp_path):
    """A second engine on the same model loads the compiled blobs the first one wrote (OpenVINO's
    model cache in model/.compiled), with the same descriptors."""
    import shutil

    from retrieval.engines.openvino_engine import CACHE_DIR

    spec, net, model_dir = vgg16_model
    own = tmp_path / "model"
    shutil.copytree(model_dir, own, ignore=shutil.ignore_patterns(CACHE_DIR))
    first = load_embedder("openvino", spec, own, batch_size=2).embed(PHOTOS[:2])
    blobs = sorted(p.name for p in (own / CACHE_DIR).iterdir())
    assert blobs, "nothing cached"
    second = load_embedder("openvino", spec, own, batch_size=2).embed(PHOTOS[:2])
    assert sorted(p.name for p in (own / CACHE_DIR).iterdir()) == blobs  # loaded, not compiled again
    assert float((first * second).sum(1).min()) >= 0.9999
