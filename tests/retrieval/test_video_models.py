"""Video classifiers on small clips made from real photos (pans and zooms): I3D inflation is exact on
static clips (tiny nets and the shared VGG16), both models learn held-out clip classes, VGG-LSTM
tells clips apart that differ only in frame order, clip reading (frame folders and real video files),
one-line errors for corrupt clips, checkpoints and resume, the train-video/classify-video CLI."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SAMPLES, VGG16_WEIGHTS

from retrieval.errors import UserError
from retrieval.nets.model import build_trunk
from retrieval.video.clips import collate, load_clip_split, read_clip, sample_indices
from retrieval.video.models import VGG3D, VideoSpec, build_video_net, inflate_state_dict, time_pool_kernels
from retrieval.video.synth import make_motion_dataset, motion_frames, write_frames, write_video
from retrieval.video.train import (
    VideoTrainConfig,
    evaluate_clips,
    fit_video,
    load_video_checkpoint,
    predict_clips,
    prepare_video_model,
)

PHOTOS = sorted((SAMPLES / "vacation").glob("*.jpg"))  # 148 real travel photos, 300 px
TINY = (4, 8, 8, 8, 16, 16, 16, 16)  # a tiny vgg11
SMALL = (8, 16, 16, 16, 32, 32, 32, 32)
FRAMES, SIZE = 8, 32  # conv5 of VGG3D: 1 x 2 x 2


def quiet(*_):
    pass


def clip_of(img: torch.Tensor, frames: int) -> torch.Tensor:
    return img[:, None].expand(img.shape[0], frames, *img.shape[1:]).contiguous()


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("arch", ["vgg11", "vgg11_bn"])
def test_inflated_vgg3d_reproduces_2d_activations_on_a_static_clip(arch):
    torch.manual_seed(0)
    trunk2d = build_trunk(arch, TINY).eval()
    if arch.endswith("_bn"):  # non-trivial running statistics
        for m in trunk2d.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
    sd2d = {f"features.{k}": v for k, v in trunk2d.state_dict().items()}
    spec = VideoSpec(
        model="vgg3d", arch=arch, widths=TINY, frames=FRAMES, input_size=SIZE, class_names=("a", "b")
    )
    net = build_video_net(spec).eval()
    net.load_2d(sd2d)
    w2, w3 = sd2d["features.0.weight"], net.features[0].weight
    assert w3.shape == (*w2.shape[:2], 3, *w2.shape[2:])
    torch.testing.assert_close(w3.sum(2), w2, rtol=0, atol=1e-6)

    images = torch.from_numpy(
        np.stack([np.asarray(motion_frames(_photo(i), "pan-right", 1, SIZE)[0]) for i in range(3)])
    )
    with torch.no_grad():
        f3 = net.conv_features(clip_of(images, FRAMES))  # [N, C, T', h, w]
        x = (images.permute(0, 3, 1, 2).float() - net.mean.view(1, 3, 1, 1)) / net.std.view(1, 3, 1, 1)
        f2 = trunk2d(x)
    assert f3.shape[2] == FRAMES // 8 and f3.shape[3:] == f2.shape[2:]
    for t in range(f3.shape[2]):  # every time step is the 2D network's conv5
        torch.testing.assert_close(f3[:, :, t], f2, rtol=1e-4, atol=1e-5)

    # C3D's zero time padding breaks this at the clip's ends: replicate padding is what makes it exact
    zeros = build_video_net(spec.replace(time_padding="zeros")).eval()
    zeros.load_2d(sd2d)
    with torch.no_grad():
        fz = zeros.conv_features(clip_of(images, FRAMES))
    assert (fz[:, :, 0] - f2).abs().max() > 1e-2


def test_shared_vgg16_inflates_into_vgg3d_exactly():
    """Real ImageNet-like weights: the inflated VGG16 gives the image model's conv5 on a static clip."""
    from retrieval.nets.builder import build

    spec, net = prepare_video_model(
        VideoSpec(model="vgg3d", arch="vgg16", frames=2, input_size=SIZE, class_names=("a", "b")),
        str(VGG16_WEIGHTS),
    )
    assert spec.weights.endswith("vgg16_features_imagenet_like.pth") and len(spec.weights_sha256) == 64
    _, net2d = build("vgg16", str(VGG16_WEIGHTS), input_size=SIZE)
    images = torch.from_numpy(np.stack([motion_frames(_photo(i), "zoom-in", 1, SIZE)[0] for i in (3, 4)]))
    net.eval()
    with torch.no_grad():
        f3 = net.conv_features(clip_of(images, 2))
        f2 = net2d.features(net2d.prepare(images, torch.tensor([[SIZE, SIZE]] * 2)))
    assert f2.abs().max() > 1.0  # real, non-trivial activations
    for t in range(f3.shape[2]):
        torch.testing.assert_close(f3[:, :, t], f2, rtol=1e-4, atol=1e-4)


def test_vgg3d_shapes_and_c3d_pooling():
    assert time_pool_kernels(4, 16) == [1, 2, 2, 2]
    assert time_pool_kernels(4, 2) == [1, 2, 1, 1]
    spec = VideoSpec(model="vgg3d", arch="vgg16", frames=16, input_size=112, class_names=("a", "b", "c"))
    with torch.device("meta"):
        net = VGG3D(spec)
        f = net.features(torch.empty(1, 3, 16, 112, 112))
    assert tuple(f.shape) == (1, 512, 2, 7, 7)  # 16x112x112 -> conv5 of 2x7x7
    sd = inflate_state_dict(
        {"features.0.weight": torch.ones(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
    )
    assert sd["features.0.weight"].shape == (64, 3, 3, 3, 3) and torch.allclose(
        sd["features.0.weight"], torch.tensor(1 / 3)
    )


def test_lstm_handles_variable_lengths_without_leaking_padding():
    spec = VideoSpec(
        model="vgg-lstm",
        arch="vgg11",
        widths=TINY,
        frames=FRAMES,
        input_size=SIZE,
        hidden=8,
        class_names=("a", "b"),
    )
    net = build_video_net(spec).eval()
    short = torch.from_numpy(np.stack(motion_frames(_photo(0), "zoom-in", 5, SIZE)))
    long = torch.from_numpy(np.stack(motion_frames(_photo(1), "pan-left", 8, SIZE)))
    batch = collate([(short, torch.tensor([SIZE, SIZE]), 5, 0), (long, torch.tensor([SIZE, SIZE]), 8, 1)])
    assert batch[0].shape == (2, 8, SIZE, SIZE, 3) and batch[2].tolist() == [5, 8]
    with torch.no_grad():
        both = net(batch[0], batch[1], batch[2])
        alone = net(short[None], None, torch.tensor([5]))
        garbage = batch[0].clone()
        garbage[0, 5:] = 255  # whatever sits after a clip's length is ignored
        again = net(garbage, batch[1], batch[2])
        reversed_ = net(short.flip(0)[None], None, torch.tensor([5]))
    torch.testing.assert_close(both[0], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both, again, rtol=0, atol=0)
    assert (reversed_ - alone).abs().max() > 1e-4  # the order of frames matters


def test_padded_frames_are_masked_out():
    spec = VideoSpec(
        model="vgg3d", arch="vgg11", widths=TINY, frames=4, input_size=SIZE, class_names=("a", "b")
    )
    net = build_video_net(spec).eval()
    clip = torch.zeros(1, 4, SIZE, SIZE, 3, dtype=torch.uint8)
    clip[:, :, :20, :] = torch.randint(0, 256, (1, 4, 20, SIZE, 3), dtype=torch.uint8)
    sizes = torch.tensor([[20, SIZE]])
    noisy = clip.clone()
    noisy[:, :, 20:, :] = torch.randint(0, 256, (1, 4, SIZE - 20, SIZE, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(net(clip, sizes), net(noisy, sizes), rtol=0, atol=0)
        assert (net(noisy, sizes) - net(noisy)).abs().max() > 1e-6


# ---------------------------------------------------------------- clips


def _photo(i):
    from PIL import Image

    with Image.open(PHOTOS[i]) as im:
        return im.convert("RGB")


def test_sampling_is_uniform_strided_and_handles_short_clips():
    assert sample_indices(32, 8) == [2, 6, 10, 14, 18, 22, 26, 30]
    assert sample_indices(8, 8) == list(range(8))
    assert sample_indices(4, 8) == [0, 0, 1, 1, 2, 2, 3, 3]  # stretched: VGG3D needs 8
    assert sample_indices(4, 8, fixed=False) == [0, 1, 2, 3]  # as it is: VGG-LSTM
    assert sample_indices(40, 4, "stride", 3) == [15, 18, 21, 24]
    assert sample_indices(5, 4, "stride", 3, fixed=False) == [0, 3]
    rng = random.Random(0)
    picks = [sample_indices(32, 8, rng=rng) for _ in range(20)]
    assert len({tuple(p) for p in picks}) > 1
    assert all(4 * i <= p[i] < 4 * (i + 1) for p in picks for i in range(8))  # one per segment


def test_frame_folders_read_in_natural_order_and_split_is_seeded(tmp_path):
    arrays = motion_frames(_photo(0), "zoom-in", 12, 48)
    folder = write_frames(arrays, tmp_path / "data" / "zoom-in" / "clip1")  # frame1 .. frame12
    clip, valid, n = read_clip(folder, 12, 48, fixed=False)
    assert n == 12 and valid == (48, 48) and clip.shape == (12, 48, 48, 3)
    err = [np.abs(clip[i].astype(int) - arrays[i].astype(int)).mean() for i in range(12)]
    assert max(err) < 4  # frame10 after frame9, not after frame1 (JPEG error only)

    make_motion_dataset(PHOTOS[:10], tmp_path / "data", ("pan-left", "zoom-in"), frames=4, size=32)
    a, b = load_clip_split(tmp_path / "data", seed=0), load_clip_split(tmp_path / "data", seed=0)
    assert a.classes == ("pan-left", "zoom-in") and a.train == b.train and a.val == b.val
    assert len(a.train) + len(a.val) == 21 and not set(a.train) & set(a.val)
    assert load_clip_split(tmp_path / "data", seed=1).val != a.val


def test_video_files_decode_through_pyav(tmp_path):
    arrays = motion_frames(_photo(2), "pan-right", 10, 64)
    for ext in ("mp4", "avi"):
        path = write_video(arrays, tmp_path / f"clip.{ext}")
        clip, valid, n = read_clip(path, 10, 64, fixed=False)
        assert n == 10 and clip.shape == (10, 64, 64, 3) and valid == (64, 64)
        err = np.abs(clip.astype(float) - np.stack(arrays).astype(float)).mean()
        assert err < 12, (ext, err)  # lossy codecs, same frames in the same order
        sub, _, _ = read_clip(path, 4, 32)
        assert sub.shape == (4, 32, 32, 3)
    # the pad fit keeps the aspect ratio: a 2:1 video fills the top half
    wide = [np.concatenate([a, a], axis=1) for a in arrays]
    clip, valid, _ = read_clip(write_video(wide, tmp_path / "wide.mp4"), 4, 64, fit="pad")
    assert valid == (32, 64) and clip[:, 32:].max() == 0 and clip[:, :32].mean() > 20


def test_corrupt_clips_give_one_line_errors_naming_the_file(tmp_path):
    bad = tmp_path / "data"
    make_motion_dataset(PHOTOS[:3], bad, ("pan-left", "pan-right"), frames=4, size=32)
    garbage = bad / "pan-left" / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 20)
    empty = bad / "pan-right" / "empty.webm"
    empty.write_bytes(b"")
    frames_dir = bad / "pan-right" / PHOTOS[1].stem
    truncated = frames_dir / "frame2.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    for path, named in ((garbage, garbage), (empty, empty), (frames_dir, truncated)):
        with pytest.raises(UserError) as e:
            read_clip(path, 4, 32)
        msg = str(e.value)
        assert str(named) in msg and "\n" not in msg and len(msg) < 400, msg
    # a whole training run stops with the same one line
    split = load_clip_split(bad, val_fraction=0.0)
    spec, net = prepare_video_model(
        VideoSpec(
            model="vgg3d", arch="vgg11", widths=TINY, frames=4, input_size=SIZE, class_names=split.classes
        ),
        "random",
    )
    for workers in (0, 1):  # a loader worker's error stays one line too
        with pytest.raises(UserError, match="cannot read clip") as e:
            fit_video(
                net,
                spec,
                split,
                tmp_path / "run",
                VideoTrainConfig(epochs=1, warmup_epochs=0, workers=workers),
                log=quiet,
            )
        assert "\n" not in str(e.value) and str(bad) in str(e.value)


# ---------------------------------------------------------------- training on clips from real photos


@pytest.fixture(scope="module")
def pans(module_tmp):
    """Pan left vs pan right: the same frames in opposite orders; held-out photos for val."""
    root = module_tmp("pans")
    make_motion_dataset(PHOTOS[:32], root / "train", ("pan-left", "pan-right"), FRAMES, 40)
    make_motion_dataset(PHOTOS[100:112], root / "val", ("pan-left", "pan-right"), FRAMES, 40)
    return root


@pytest.fixture(scope="module")
def zooms(module_tmp):
    """Digital zoom in vs zoom out (a 48 px camera, so zooming in softens): order-only classes."""
    root = module_tmp("zooms")
    make_motion_dataset(
        PHOTOS[:48], root / "train", ("zoom-in", "zoom-out"), FRAMES, 48, zoom=0.25, source=48
    )
    make_motion_dataset(
        PHOTOS[100:124], root / "val", ("zoom-in", "zoom-out"), FRAMES, 48, zoom=0.25, source=48
    )
    return root


def test_vgg3d_learns_pan_direction_on_held_out_photos(pans, tmp_path):
    split = load_clip_split(pans)
    assert split.classes == ("pan-left", "pan-right") and len(split.train) == 64 and len(split.val) == 24
    spec, net = prepare_video_model(
        VideoSpec(
            model="vgg3d",
            arch="vgg11_bn",
            widths=SMALL,
            frames=FRAMES,
            input_size=SIZE,
            dropout=0.1,
            class_names=split.classes,
        ),
        "random",
    )
    cfg = VideoTrainConfig(epochs=8, lr=0.02, head_lr_mult=1.0, warmup_epochs=1, batch_size=8)
    rows = fit_video(net, spec, split, tmp_path, cfg, log=quiet)
    assert rows[-1]["train_loss"] < 0.85 * rows[0]["train_loss"]
    best = max(r["val_top1"] for r in rows)
    assert best >= 0.7, rows  # chance is 0.5; the frames of both classes are the same
    bspec, bnet, _ = load_video_checkpoint(tmp_path / "best.pt")
    assert evaluate_clips(bnet, bspec, split.val) == pytest.approx(best)


def test_lstm_tells_clips_apart_by_frame_order_alone(zooms, tmp_path):
    split = load_clip_split(zooms)
    spec, net = prepare_video_model(
        VideoSpec(
            model="vgg-lstm",
            arch="vgg11",
            widths=SMALL,
            frames=FRAMES,
            input_size=SIZE,
            hidden=32,
            dropout=0.1,
            class_names=split.classes,
        ),
        "random",
    )
    cfg = VideoTrainConfig(epochs=20, lr=0.01, warmup_epochs=1, freeze=-1, batch_size=8)
    rows = fit_video(net, spec, split, tmp_path, cfg, log=quiet)
    assert rows[-1]["train_loss"] < 0.6 * rows[0]["train_loss"]
    assert rows[-1]["train_top1"] >= 0.9
    assert max(r["val_top1"] for r in rows) >= 0.75, rows
    # held-out photos: the zoom-in and zoom-out clip of one photo hold the same frames; any
    # order-blind model (mean of frame descriptors, bag of frames) gives them the same answer
    bspec, bnet, _ = load_video_checkpoint(tmp_path / "best.pt")
    stems = sorted(p.name for p in (zooms / "val" / "zoom-in").iterdir())
    p_in = predict_clips(bnet, bspec, [zooms / "val" / "zoom-in" / s for s in stems])
    p_out = predict_clips(bnet, bspec, [zooms / "val" / "zoom-out" / s for s in stems])
    differ = (p_in.argmax(1) != p_out.argmax(1)).float().mean().item()
    assert differ >= 0.6, differ


def test_checkpoint_round_trip_and_resume_continue_the_same_run(zooms, tmp_path):
    split = load_clip_split(zooms / "val", val_fraction=0.25)  # 24+24 clips: quick
    spec = VideoSpec(
        model="vgg-lstm",
        arch="vgg11",
        widths=TINY,
        frames=FRAMES,
        input_size=SIZE,
        hidden=16,
        rnn="gru",
        class_names=split.classes,
    )
    cfg = VideoTrainConfig(epochs=3, lr=0.01, warmup_epochs=1, freeze=-1, batch_size=8)
    spec, straight = prepare_video_model(spec, "random")
    rows = fit_video(straight, spec, split, tmp_path / "a", cfg, log=quiet)

    spec_b, net_b = prepare_video_model(spec, "random")
    fit_video(net_b, spec_b, split, tmp_path / "b", cfg, log=quiet, stop_after=2)
    ck = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert ck["epoch"] == 2 and ck["format"] == "vgg-retrieval-checkpoint" and ck["spec"]["rnn"] == "gru"
    spec_c, net_c, _ = load_video_checkpoint(tmp_path / "b" / "last.pt")  # everything rebuilt from the file
    assert spec_c.replace(weights_sha256="") == spec.replace(weights_sha256="")
    lines = []
    rows_c = fit_video(net_c, spec_c, split, tmp_path / "b", cfg, resume=True, log=lines.append)
    assert any("resumed" in line for line in lines)
    assert [r["epoch"] for r in rows_c] == [1, 2, 3]
    assert [round(r["train_loss"], 6) for r in rows_c] == [round(r["train_loss"], 6) for r in rows]
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(net_c.state_dict()[k], v, rtol=0, atol=1e-6, msg=k)
    csv = (tmp_path / "b" / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("epoch,lr,train_loss") and len(csv) == 4
    # a reloaded checkpoint predicts exactly what the trained net did
    spec_l, net_l, _ = load_video_checkpoint(tmp_path / "a" / "last.pt")
    clips = [f for f, _ in split.val[:4]]
    torch.testing.assert_close(predict_clips(net_l, spec_l, clips), predict_clips(straight, spec, clips))
    with pytest.raises(UserError, match="not a video classifier checkpoint"):
        load_video_checkpoint(VGG16_WEIGHTS)


def test_train_video_and_classify_video_cli(zooms, tmp_path):
    from indexer.cli import cli

    runner = CliRunner()
    out = tmp_path / "run"
    args = [
        "train-video",
        str(zooms / "val"),
        "--out",
        str(out),
        "--model",
        "vgg-lstm",
        "--arch",
        "vgg11",
        "--widths",
        ",".join(map(str, TINY)),
        "--weights",
        "random",
        "--frames",
        "6",
        "--size",
        "32",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--warmup-epochs",
        "0",
    ]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "epoch 2/2" in res.output and (out / "best.pt").is_file() and (out / "metrics.csv").is_file()
    res = runner.invoke(cli, args[:-4] + ["--epochs", "3", "--warmup-epochs", "0", "--resume"])
    assert res.exit_code == 0 and "resumed" in res.output and "epoch 3/3" in res.output, res.output
    clip = zooms / "val" / "zoom-in" / PHOTOS[100].stem
    res = runner.invoke(
        cli, ["classify-video", str(clip), "--model", str(out / "last.pt"), "--json", "--top-k", "2"]
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.output.splitlines()[0])
    assert obj["clip"] == str(clip) and {c["class"] for c in obj["classes"]} == {"zoom-in", "zoom-out"}
    assert sum(c["p"] for c in obj["classes"]) == pytest.approx(1.0, abs=1e-4)
    res = runner.invoke(cli, ["train-video", str(tmp_path / "nope"), "--out", str(out)])
    assert isinstance(res.exception, UserError) and "clip folder not found" in str(res.exception)
