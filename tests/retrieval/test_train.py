"""Fine-tuning pipeline on tiny nets and a small real subset of flowers5: schedule, stats, freezing,
loss going down, checkpoints, resume, the classifier head in the exported model."""

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from conftest import FLOWERS, WIDTHS, tiny_net

from retrieval.nets.model import build_descriptor_net
from retrieval.spec import ModelSpec
from retrieval.training.data import channel_stats, load_split
from retrieval.training.recipe import freeze_prefix, lr_at
from retrieval.training.train import TrainConfig, fit, load_checkpoint_model


@pytest.fixture(scope="module")
def split():
    return load_split(FLOWERS, limit_per_class=10)  # 40 train / 10 val real photos


def test_schedule_matches_formulas():
    cfg = TrainConfig(epochs=20, lr=0.01, warmup_epochs=5, warmup_start_lr=1e-4, min_lr=1e-5)
    spe = 10
    assert lr_at(0, spe, cfg) == pytest.approx(1e-4)
    assert lr_at(25, spe, cfg) == pytest.approx(1e-4 + (0.01 - 1e-4) * 2.5 / 5)
    assert lr_at(50, spe, cfg) == pytest.approx(0.01)
    for step in (50, 80, 125, 170, 200):
        p = (step / spe - 5) / 15
        assert lr_at(step, spe, cfg) == pytest.approx(
            1e-5 + 0.5 * (0.01 - 1e-5) * (1 + math.cos(math.pi * p))
        )
    assert lr_at(125, spe, cfg) == pytest.approx((0.01 + 1e-5) / 2)
    assert lr_at(200, spe, cfg) == pytest.approx(1e-5)
    lrs = [lr_at(s, spe, cfg) for s in range(201)]
    assert np.all(np.diff(lrs[:51]) > 0) and np.all(np.diff(lrs[50:]) <= 1e-15)


def test_split_is_seeded_stratified_and_disjoint():
    a, b = load_split(FLOWERS, seed=0), load_split(FLOWERS, seed=0)
    assert (
        a.train == b.train
        and a.val == b.val
        and a.classes == ("daisy", "dandelion", "rose", "sunflower", "tulip")
    )
    assert len(a.train) + len(a.val) == 4317 and not set(a.train) & set(a.val)
    assert abs(len(a.val) / 4317 - 0.2) < 0.01
    assert load_split(FLOWERS, seed=1).val != a.val


def test_channel_stats_are_exact(split):
    from PIL import Image

    paths = [f for f, _ in split.train[:6]]
    mean, std, n = channel_stats(paths)
    allpix = np.concatenate(
        [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64).reshape(-1, 3) for p in paths]
    )
    assert n == len(allpix)
    np.testing.assert_allclose(mean, allpix.mean(0) / 255, rtol=0, atol=1e-12)
    np.testing.assert_allclose(std, allpix.std(0) / 255, rtol=0, atol=1e-10)


def test_freezing_freezes(split, tmp_path):
    spec, net = tiny_net(split.classes)
    assert freeze_prefix(net, 4) == 4
    assert not any(p.requires_grad for p in net.features[:4].parameters())
    assert all(p.requires_grad for p in net.features[4:].parameters())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    fit(
        net,
        spec,
        split,
        tmp_path,
        TrainConfig(epochs=1, warmup_epochs=0, lr=0.05, freeze=4, batch_size=8, workers=0, cache=False),
        log=lambda *a: None,
    )
    after = net.state_dict()
    for k in before:
        if k in ("mean", "std"):
            continue
        changed = not torch.equal(before[k], after[k])
        layer = int(k.split(".")[1]) if k.startswith("features.") else 99
        assert changed == (layer >= 4), k


def test_training_lowers_loss_checkpoints_round_trip_and_resume(split, tmp_path):
    spec, net = tiny_net(split.classes)
    net.head.dropout.p = 0.0
    cfg = TrainConfig(
        epochs=12,
        warmup_epochs=1,
        lr=0.03,
        batch_size=8,
        freeze=-1,
        workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    rows = fit(net, spec, split, tmp_path / "run", cfg, log=lambda *a: None, stop_after=5)
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ck["epoch"] == 5 and len(ck["metrics"]) == 5
    # each checkpoint carries the best val top-1 including its own epoch (not the one before it)
    assert ck["best_top1"] == max(r["val_top1"] for r in rows)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert best["best_top1"] == rows[best["epoch"] - 1]["val_top1"] == ck["best_top1"]
    # resume in a fresh net continues at epoch 6 with the same weights/optimizer
    spec2, net2 = tiny_net(split.classes, seed=1)
    net2.head.dropout.p = 0.0
    rows = fit(net2, spec2, split, tmp_path / "run", cfg, resume=True, log=lambda *a: None)
    assert [r["epoch"] for r in rows] == list(range(1, 13))
    losses = [r["train_loss"] for r in rows]
    assert min(losses[-3:]) < losses[0] - 0.05, losses
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 13
    # the checkpoint carries the spec and loads into an equal network (weights_only)
    s3, net3 = load_checkpoint_model(tmp_path / "run" / "last.pt")
    assert (
        s3.widths == WIDTHS
        and s3.head == "gap-linear"
        and s3.class_names == split.classes
        and s3.input_size == 32
    )
    x = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    sz = torch.tensor([[32, 32], [20, 32]])
    with torch.no_grad():
        d2, l2 = net2.eval().forward_both(x, sz)
        d3, l3 = net3.forward_both(x, sz)
    torch.testing.assert_close(d2, d3)
    torch.testing.assert_close(l2, l3)


def test_train_classifier_no_cache_augmented(tmp_path):
    from retrieval.training.pipeline import train_classifier

    out, lines = tmp_path / "run", []
    rows = train_classifier(
        FLOWERS,
        out,
        arch="vgg11",
        weights="random",
        input_size=32,
        limit_per_class=4,
        epochs=1,
        freeze="none",
        cache=False,
        workers=0,
        batch_size=8,
        log=lines.append,
    )
    assert len(rows) == 1 and (out / "best.pt").exists() and (out / "metrics.csv").exists()
    classes = sorted(p.name for p in FLOWERS.iterdir() if p.is_dir())
    assert f" val images, {len(classes)} classes; " in lines[0]
    assert lines[-1].startswith("done in ") and lines[-1].endswith(str(out / "best.pt"))


def test_stats_cli_json(capsys):
    from indexer.cli import main
    from retrieval.training.pipeline import dataset_stats

    assert main(["stats", str(FLOWERS / "rose"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = dataset_stats(FLOWERS / "rose")
    assert got["images"] == want["images"] == len(list((FLOWERS / "rose").glob("*.jpg")))
    assert got["mean"] == want["mean"] and got["std"] == want["std"] and 0 < min(got["std"])
    assert main(["stats", str(FLOWERS / "nope")]) == 2


def test_head_travels_in_export_and_engines_agree(split, tmp_path):
    from retrieval.engines import load_embedder
    from retrieval.engines.export import export_model, read_sidecar

    spec, net = tiny_net(split.classes)
    assert spec.input_policy == "square" and spec.scales == (1.0,)  # hashed as before these fields existed
    old_id = hashlib.sha256(
        json.dumps(
            {
                k: v
                for k, v in spec.to_dict().items()
                if k not in ("weights", "class_names", "head", "input_policy", "scales")
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    assert spec.model_id == old_id == spec.replace(head="", class_names=()).model_id
    assert ModelSpec().model_id == ModelSpec(head="gap-linear", class_names=("a", "b")).model_id
    d = export_model(spec, net, tmp_path / "m")
    s2, side = read_sidecar(d)
    assert s2 == spec and "logits" in side["outputs"]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    sizes = np.array([[32, 32], [32, 20], [16, 32]], dtype=np.int64)
    ref = load_embedder("torch", spec, net=net)
    rd, rl = ref.embed_with_logits(images, sizes)
    assert rl.shape == (3, 5)
    for engine in ("onnxruntime", "openvino"):
        emb = load_embedder(engine, s2, d, batch_size=2)
        dd, ll = emb.embed_with_logits(images, sizes)
        np.testing.assert_allclose(dd, rd, atol=1e-4)
        np.testing.assert_allclose(ll, rl, atol=1e-3)
        np.testing.assert_allclose(emb.logits_batch(images, sizes), rl, atol=1e-3)
        np.testing.assert_allclose(emb.embed_batch(images, sizes), rd, atol=1e-4)
    from retrieval.classes import top_classes_of_files

    top = top_classes_of_files(emb, [split.val[0][0], split.val[-1][0]], k=3)
    assert len(top) == 2 and len(top[0]) == 3 and all(name in split.classes for name, _ in top[0])
    assert top[0][0][1] >= top[0][1][1] >= top[0][2][1]
    assert (
        top_classes_of_files(
            load_embedder(
                "onnxruntime",
                spec,
                export_model(
                    spec.replace(head="", class_names=()),
                    build_descriptor_net(spec.replace(head="", class_names=()), None),
                    tmp_path / "nohead",
                    formats=("onnx",),
                ),
            ),
            [split.val[0][0]],
        )
        is None
    )


def test_resume_from_a_damaged_checkpoint_is_one_line(split, tmp_path):
    from retrieval.errors import UserError

    spec, net = tiny_net(split.classes)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"not a checkpoint")
    cfg = TrainConfig(epochs=1, batch_size=8, workers=0)
    with pytest.raises(UserError, match=r"^cannot load checkpoint .*last\.pt: "):
        fit(net, spec, split, tmp_path / "run", cfg, resume=True, log=lambda *a: None)
