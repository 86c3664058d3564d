"""The TensorRT engine: parity with ONNX Runtime where an NVIDIA GPU and TensorRT exist; a clear
one-line refusal everywhere else (this part runs on every machine)."""

import numpy as np
import pytest
from conftest import SAMPLES

from retrieval.engines import load_embedder
from retrieval.engines.tensorrt_engine import gpu_available, tensorrt_routes
from retrieval.errors import UserError

HAVE_TRT = gpu_available() and bool(tensorrt_routes())
PHOTOS = [
    SAMPLES / p
    for p in (
        "skimage/astronaut.png",
        "skimage/coffee.png",
        "skimage/chelsea.png",
        "opencv/fruits.jpg",
        "pixabay/cat01.jpg",
    )
]


@pytest.mark.skipif(HAVE_TRT, reason="this machine has a GPU and TensorRT: the parity test runs instead")
def test_tensorrt_engine_refuses_clearly_without_gpu(tiny_model, tmp_path):
    from indexer.cli import main

    spec, net, model_dir = tiny_model
    with pytest.raises(UserError, match="NVIDIA GPU|TensorRT"):
        load_embedder("tensorrt", spec, model_dir)
    photo = tmp_path / "p"
    photo.mkdir()
    (photo / "a.png").write_bytes((SAMPLES / "skimage/coffee.png").read_bytes())
    assert (
        main(
            [
                "index",
                str(photo),
                "--index",
                str(tmp_path / "ix"),
                "--model",
                str(model_dir),
                "--engine",
                "tensorrt",
                "-q",
            ]
        )
        == 2
    )


@pytest.mark.skipif(
    not HAVE_TRT,
    reason="needs an NVIDIA GPU with TensorRT (the tensorrt package or onnxruntime-gpu's TensorRT provider)",
)
@pytest.mark.parametrize("precision,min_cos", [("fp32", 0.999), ("fp16", 0.99)])
def test_tensorrt_matches_onnxruntime(vgg16_model, precision, min_cos):
    spec, net, model_dir = vgg16_model
    ref = load_embedder("onnxruntime", spec, model_dir, batch_size=4).embed(PHOTOS)
    trt = load_embedder("tensorrt", spec, model_dir, batch_size=4, precision=precision)
    got = trt.embed(PHOTOS)
    assert got.shape == ref.shape
    cos = (got * ref).sum(1)
    assert cos.min() >= min_cos, cos
    again = load_embedder("tensorrt", spec, model_dir, batch_size=4, precision=precision).embed(
        PHOTOS
    )  # cached plan
    np.testing.assert_allclose(again, got, atol=1e-3)
