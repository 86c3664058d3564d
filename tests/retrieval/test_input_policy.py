"""The "buckets" input policy (aspect buckets at a pixel budget), R-MAC pooling and multi-scale
descriptors: preprocessing, batching of mixed shapes, the engines' agreement, INT8, model ids."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, TINY_SIZE
from PIL import Image

from retrieval.preprocess import load_and_prepare, prepare
from retrieval.spec import InputBuckets, ModelSpec, bucket_shapes

# 4:3, 3:4, ~16:9 (1.72), 1:1 and 3:2-ish (1.45) photos
PHOTOS = [
    "opencv/aero1.jpg",
    "opencv/ellipses.jpg",
    "opencv/imageTextR.png",
    "opencv/baboon.jpg",
    "opencv/building.jpg",
]


@pytest.fixture(scope="module")
def buckets_model(module_tmp):
    """(spec, net, model_dir): the tiny random VGG11 with buckets, R-MAC and scales (1, 1/sqrt 2), exported."""
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    spec, net = build(
        "vgg11", "random", pooling="rmac", input_size=TINY_SIZE, input_policy="buckets", scales=(1.0, 0.7071)
    )
    return spec, net, export_model(spec, net, module_tmp("buckets") / "model")


@pytest.mark.parametrize(
    "size,expect",
    [
        ((400, 300), (192, 256)),
        ((300, 400), (256, 192)),
        ((1920, 1080), (160, 288)),
        ((500, 500), (224, 224)),
    ],
)
def test_a_photo_lands_in_its_bucket_filling_one_side_with_its_aspect_kept(size, expect):
    buckets = ModelSpec(input_policy="buckets").input_geometry
    assert isinstance(buckets, InputBuckets) and expect in buckets.shapes
    p = prepare(Image.new("RGB", size, (200, 10, 10)), buckets)
    (vh, vw), (h, w) = p.valid, p.array.shape[:2]
    assert (h, w) == expect and h % 16 == 0 and w % 16 == 0 and h * w <= 224 * 224
    assert vh == h or vw == w  # fills the bucket on one side
    assert abs(vw - vh * size[0] / size[1]) <= 1 and abs(vh - vw * size[1] / size[0]) <= 1
    assert (p.array[:vh, :vw] == (200, 10, 10)).all() and not p.array[vh:].any() and not p.array[:, vw:].any()


def test_bucket_shapes_and_the_square_policy_unchanged():
    for s in (64, 224, 384):
        shapes = bucket_shapes(s)
        assert (s // 16 * 16, s // 16 * 16) in shapes
        assert all(h % 16 == 0 and w % 16 == 0 and h * w <= s * s for h, w in shapes)
        assert {(w, h) for h, w in shapes} == set(shapes)  # portrait buckets mirror landscape ones
    p = load_and_prepare(SAMPLES / PHOTOS[0], ModelSpec(input_policy="square").input_geometry)
    assert p.array.shape == (224, 224, 3) and p.valid == (168, 224)


def _old_model_id(d: dict) -> str:
    """model_id as computed before input_policy/scales existed."""
    d = dict(d)
    for key in ("weights", "class_names", "head"):
        d.pop(key)
    if not d["trim_borders"]:
        d.pop("trim_borders")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def test_old_spec_dicts_keep_their_model_id_and_new_settings_change_it():
    square = ModelSpec(input_policy="square", pooling="gap")  # the defaults before buckets and GeM
    for old in (square, ModelSpec(input_policy="square", pooling="gem", input_size=320, trim_borders=False)):
        d = old.to_dict()
        del d["input_policy"], d["scales"]  # as stored before the fields existed
        loaded = ModelSpec.from_dict(d)
        assert loaded.input_policy == "square" and loaded.scales == (1.0,)
        assert loaded.model_id == _old_model_id(d) == old.model_id
    base = square
    ids = {
        base.model_id,
        base.replace(input_policy="buckets").model_id,
        base.replace(scales=(1.0, 0.7071)).model_id,
        base.replace(pooling="rmac").model_id,
    }
    assert len(ids) == 4
    new = base.replace(input_policy="buckets", scales=(1.0, 0.7071), pooling="rmac")
    assert ModelSpec.from_dict(json.loads(json.dumps(new.to_dict()))) == new
    assert "rmac@224/bucketsx1,0.7071" in new.describe() and "buckets" not in base.describe()


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"input_policy": "round"}, "unknown input policy 'round'"),
        ({"scales": (0.5, 1.0)}, "the first must be 1.0"),
        ({"scales": (1.0, 0.1)}, "in 0.25..1.0"),
    ],
)
def test_bad_policy_or_scales_are_one_clear_error(changes, message):
    from retrieval.errors import UserError
    from retrieval.nets.builder import build

    with pytest.raises(ValueError, match=message):
        ModelSpec(**changes)
    with pytest.raises(UserError, match=message):  # before any weights are loaded
        build("vgg11", "random", input_size=TINY_SIZE, **changes)


def _rmac_reference(fmap: np.ndarray, cells_h: int, cells_w: int, levels: int = 3) -> np.ndarray:
    """R-MAC of one conv5 map (C, H, W) over its top-left valid cells, written with plain loops:
    square regions of side floor(2 min / (l + 1)), l per axis (l + 1 along the longer one), start
    positions as in Tolias' code, each region's max L2-normalised, all summed."""
    total = np.zeros(fmap.shape[0], np.float64)
    short = min(cells_h, cells_w)
    for level in range(1, levels + 1):
        side = max(1, 2 * short // (level + 1))
        half = side // 2 - 1

        def starts(cells, n):
            step = (cells - side) / (n - 1) if n > 1 else 0.0
            return [math.floor(half + k * step) - half for k in range(n)]

        for y in starts(cells_h, level + (cells_h > cells_w)):
            for x in starts(cells_w, level + (cells_w > cells_h)):
                v = fmap[:, y : y + side, x : x + side].max(axis=(1, 2)).astype(np.float64)
                total += v / max(np.linalg.norm(v), 1e-6)
    return total


def test_rmac_equals_a_plain_numpy_reference_on_the_same_conv5_map(buckets_model):
    import torch

    from retrieval.nets.model import build_descriptor_net

    # the fixture's weights, one scale, at 128 px (conv5 maps of 5x9 .. 8x8 cells)
    spec = buckets_model[0].replace(input_size=128, scales=(1.0,))
    net = build_descriptor_net(spec, buckets_model[1].state_dict())
    prepared = [load_and_prepare(SAMPLES / name, spec.input_geometry) for name in PHOTOS]
    assert len({p.array.shape for p in prepared}) >= 4
    for p in prepared:
        image = torch.from_numpy(p.array[None])
        size = torch.tensor([p.valid], dtype=torch.int64)
        with torch.no_grad():
            fmap = net.features(net.prepare(image, size))
            pooled = net.pool(fmap, size)[0].numpy()
            desc = net(image, size)[0].numpy()
        fmap = fmap[0].numpy()
        cells = [min(-(-v // 16), n) for v, n in zip(p.valid, fmap.shape[1:])]
        ref = _rmac_reference(fmap, *cells)
        np.testing.assert_allclose(pooled, ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(desc, ref / np.linalg.norm(ref), atol=1e-5)


def _photos_prepared(spec):
    return [load_and_prepare(SAMPLES / name, spec.input_geometry) for name in PHOTOS + PHOTOS[:2]]


def test_mixed_buckets_batch_together_and_equal_one_by_one(buckets_model):
    from retrieval.engines import load_embedder

    spec, net, model_dir = buckets_model
    prepared = _photos_prepared(spec)
    assert len({p.array.shape for p in prepared}) >= 4
    emb = load_embedder("torch", spec, net=net, batch_size=2)  # (OpenVINO's compiled shapes: the next test)
    together = emb.embed_prepared(prepared)
    alone = np.concatenate([emb.embed_prepared([p]) for p in prepared])
    assert together.shape == (len(prepared), spec.descriptor_dim)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert float((together[0] @ together[1])) < 0.9999  # different photos, different rows (order kept)
    np.testing.assert_allclose(together[-2:], together[:2], atol=1e-5)  # same photos again, same descriptors
    with pytest.raises(ValueError, match="expected images"):
        emb.embed_batch(np.zeros((1, 64, 32, 3), np.uint8), np.array([[64, 32]]))  # not a bucket shape
    # a picture prepared for the square policy is moved into its bucket (same pixels here: 64 x 44 both ways)
    square = load_and_prepare(SAMPLES / "opencv/box.png", TINY_SIZE)
    bucket = load_and_prepare(SAMPLES / "opencv/box.png", spec.input_geometry)
    assert (
        square.array.shape == (64, 64, 3)
        and bucket.array.shape == (48, 64, 3)
        and square.valid == bucket.valid
    )
    np.testing.assert_allclose(emb.embed_prepared([square]), emb.embed_prepared([bucket]), atol=1e-6)


def test_engines_agree_on_a_buckets_rmac_multiscale_model(buckets_model):
    from retrieval.engines import load_embedder

    spec, net, model_dir = buckets_model
    prepared = _photos_prepared(spec)
    out = {
        name: load_embedder(name, spec, model_dir, net=net, batch_size=4).embed_prepared(prepared)
        for name in ("torch", "onnxruntime", "openvino")
    }
    for name in ("onnxruntime", "openvino"):
        cos = np.sum(out["torch"] * out[name], axis=1)
        assert cos.min() > 0.999, (name, cos)


def test_openvino_compiles_one_model_per_bucket_whatever_the_batch(buckets_model):
    """The batch size is dynamic: batches of every size share their bucket's compiled model (a
    static batch compiled one per (batch size, bucket): 24 for 200 photos, a quarter of the run)."""
    from retrieval.engines import load_embedder

    spec, net, model_dir = buckets_model
    prepared = _photos_prepared(spec)
    emb = load_embedder("openvino", spec, model_dir, batch_size=4)
    together = emb.embed_prepared(prepared)  # chunks of 1 to 4 photos per bucket
    alone = np.concatenate([emb.embed_prepared([p]) for p in prepared])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert sorted(emb._requests) == sorted({p.array.shape[:2] for p in prepared})


def test_an_int8_buckets_model_embeds(buckets_model, tmp_path):
    from retrieval.compress.quantize import quantize_ir
    from retrieval.engines import load_embedder

    spec, net, model_dir = buckets_model
    calib = [SAMPLES / name for name in PHOTOS[:3]]  # three bucket shapes
    int8_dir = quantize_ir(
        model_dir, tmp_path / "int8", calib, subset_size=len(calib), progress=lambda d, n: None
    )
    prepared = _photos_prepared(spec)
    got = load_embedder("openvino", spec, int8_dir, batch_size=4).embed_prepared(prepared)
    fp32 = load_embedder("openvino", spec, model_dir, batch_size=4).embed_prepared(prepared)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    assert np.sum(got * fp32, axis=1).mean() > 0.9


def test_an_index_of_a_buckets_model_finds_each_photo_first(buckets_model, tmp_path):
    from conftest import copy_photos

    from indexer.opening import ModelChoice, open_or_create

    spec, _, model_dir = buckets_model
    photos = tmp_path / "photos"
    copy_photos(photos, PHOTOS)
    with open_or_create(
        tmp_path / "ix", [photos], model=ModelChoice(model_dir=model_dir), index_type="flat"
    ) as idx:
        assert idx.spec.model_id == spec.model_id and idx.spec.input_policy == "buckets"
        report = idx.update([photos], workers=0, progress=False)
        assert idx.count == len(PHOTOS), report.errors
        for path in sorted(photos.rglob("*.*")):
            hits = idx.search(path, k=2)
            assert Path(hits[0].path).name == path.name and hits[0].score > 0.99
