"""The torch-free graph (retrieval.nets.onnx_graph) gives the torch model's descriptors and logits."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DISTRACTORS, SAMPLES, VGG16_WEIGHTS


def _batch(size: int):
    from retrieval.preprocess import load_and_prepare

    prepared = [load_and_prepare(SAMPLES / name, size) for name in DISTRACTORS[:4]]
    return np.stack([p.array for p in prepared]), np.array([p.valid for p in prepared], np.int64)


def _run(model, engine: str, images, sizes):
    if engine == "onnxruntime":
        import onnxruntime as ort

        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"image": images, "size": sizes})
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(model.SerializeToString(), b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    result = compiled({"image": images, "size": sizes})
    return [np.asarray(result[o]) for o in compiled.outputs]


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_shared_vgg16_descriptors_match_the_torch_model(engine):
    import torch

    from retrieval.nets.builder import build
    from retrieval.nets.onnx_graph import build_onnx

    spec, net = build("vgg16", str(VGG16_WEIGHTS), input_size=160, pooling="gap", input_policy="square")
    images, sizes = _batch(160)
    assert len(set(map(tuple, sizes.tolist()))) > 1  # photos of several shapes: the padding masks matter
    with torch.no_grad():
        expected = net(torch.from_numpy(images), torch.from_numpy(sizes)).numpy()
    got = _run(build_onnx(spec, {k: v.numpy() for k, v in net.state_dict().items()}), engine, images, sizes)[
        0
    ]
    assert got.shape == expected.shape
    assert (got * expected).sum(1).min() >= 0.9999
    # the photos differ from each other: a graph that ignored its input would fail this
    assert (got @ got.T)[~np.eye(len(got), dtype=bool)].max() < 0.99


@pytest.mark.parametrize(
    "arch,pooling,head",
    [("vgg11_bn", "gem", "vgg"), ("vgg11", "mac", "gap-linear"), ("vgg11", "rmac", "gap-linear")],
)
def test_batch_norm_pooling_and_heads_match(arch, pooling, head):
    import torch

    from retrieval.nets.model import build_descriptor_net
    from retrieval.nets.onnx_graph import build_onnx
    from retrieval.spec import ModelSpec

    spec = ModelSpec(
        arch=arch,
        pooling=pooling,
        input_size=224,
        head=head,
        class_names=("a", "b", "c"),
        input_policy="square",
    )
    torch.manual_seed(1)
    net = build_descriptor_net(spec, None)
    for m in net.modules():  # batch-norm statistics away from the identity, so folding them is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    images, sizes = _batch(224)
    with torch.no_grad():
        d, logits = net.forward_both(torch.from_numpy(images), torch.from_numpy(sizes))
    got_d, got_logits = _run(
        build_onnx(spec, {k: v.numpy() for k, v in net.state_dict().items()}), "onnxruntime", images, sizes
    )
    assert (got_d * d.numpy()).sum(1).min() >= 0.9999
    assert np.allclose(got_logits, logits.numpy(), rtol=1e-3, atol=1e-3 * float(np.abs(logits.numpy()).max()))


@pytest.mark.parametrize(
    "engine,pooling",
    [("onnxruntime", "gem"), ("openvino", "gem"), ("onnxruntime", "rmac"), ("openvino", "rmac")],
)
def test_buckets_models_match_torch_in_every_bucket(engine, pooling):
    """The default model (GeM, shape buckets) and R-MAC with buckets (its regions placed on each
    photo's valid cells): one graph takes every bucket's height and width."""
    import torch

    from retrieval.nets.builder import build
    from retrieval.nets.onnx_graph import build_onnx
    from retrieval.preprocess import load_and_prepare

    spec, net = build(
        "vgg16", str(VGG16_WEIGHTS), input_size=96 if pooling == "gem" else 160, pooling=pooling
    )
    assert spec.input_policy == "buckets" and spec.pooling == pooling
    model = build_onnx(spec, {k: v.numpy() for k, v in net.state_dict().items()})
    names = ["skimage/astronaut.png", "skimage/coffee.png", "pixabay/cat01.jpg", "pixabay/horse03.jpg"]
    prepared = [load_and_prepare(SAMPLES / n, spec.input_geometry) for n in names]
    assert len({p.array.shape for p in prepared}) >= 3  # square, landscape and portrait buckets
    for p in prepared:
        images, sizes = p.array[None], np.array([p.valid], np.int64)
        with torch.no_grad():
            expected = net(torch.from_numpy(images), torch.from_numpy(sizes)).numpy()
        got = _run(model, engine, images, sizes)[0]
        assert float((got * expected).sum()) >= 0.9999, p.array.shape


def test_multi_scale_and_buckets_with_the_vgg_head_are_refused():
    from retrieval.nets.onnx_graph import build_onnx
    from retrieval.spec import ModelSpec

    with pytest.raises(ValueError, match="needs torch"):
        build_onnx(ModelSpec(arch="vgg11", input_size=64, scales=(1.0, 0.5)), {})
    with pytest.raises(ValueError, match="square input policy"):  # nowhere: fc6 takes a 7x7 map
        ModelSpec(arch="vgg11", input_size=224, head="vgg", class_names=("a",), input_policy="buckets")


def test_weights_of_the_wrong_shape_are_refused():
    from retrieval.nets.onnx_graph import build_onnx
    from retrieval.spec import ModelSpec

    spec = ModelSpec(arch="vgg11", input_size=64)
    state = {
        "features.0.weight": np.zeros((32, 3, 3, 3), np.float32),
        "features.0.bias": np.zeros(32, np.float32),
    }
    with pytest.raises(ValueError, match="features.0.weight"):
        build_onnx(spec, state)
