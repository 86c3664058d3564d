"""L1 channel pruning: channels are physically removed, the pruned net runs, loads and exports."""

import numpy as np
import pytest
import torch
from conftest import FLOWERS, WIDTHS, tiny_net
from torch import nn

from retrieval.compress.prune import conv_positions, count_params, gflops, l1_prune, parse_layers
from retrieval.nets.weights import save_checkpoint

CLASSES = ("daisy", "dandelion", "rose", "sunflower", "tulip")


def _io():
    torch.manual_seed(1)
    return torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8), torch.tensor([[32, 32], [32, 24]])


def test_pruning_removes_lowest_l1_channels_exactly():
    spec, net = tiny_net(CLASSES)
    pos = conv_positions(net.features)
    # zero the 4 weakest filters of conv 5: removing exactly them must not change any output
    conv = net.features[pos[5]]
    with torch.no_grad():
        conv.weight[[1, 7, 20, 30]] = 0
        conv.bias[[1, 7, 20, 30]] = 0
    x, s = _io()
    with torch.no_grad():
        d0, l0 = net.forward_both(x, s)
    p0, g0 = count_params(net), gflops(net, 32)
    widths = l1_prune(net, 4 / 32, [5])
    assert widths == WIDTHS[:5] + (28,) + WIDTHS[6:]
    assert net.features[pos[5]].out_channels == 28 and net.features[pos[6]].in_channels == 28
    with torch.no_grad():
        d1, l1 = net.forward_both(x, s)
    torch.testing.assert_close(d1, d0)
    torch.testing.assert_close(l1, l0)
    assert count_params(net) < p0 and gflops(net, 32) < g0


def test_prune_all_layers_runs_round_trips_and_exports(tmp_path):
    from retrieval.engines import load_embedder
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    spec, net = tiny_net(CLASSES)
    layers = parse_layers("all", 8)
    assert layers == list(range(7))  # the last conv (the descriptor) is kept
    widths = l1_prune(net, 0.3, layers)
    assert widths == tuple(round(w * 0.7) for w in WIDTHS[:7]) + (WIDTHS[-1],)
    assert [m.out_channels for m in net.features if isinstance(m, nn.Conv2d)] == list(widths)
    # the last conv pruned too: the head's inputs follow
    widths = l1_prune(net, 0.5, [7])
    assert widths[-1] == 16 and net.head.fc.in_features == 16
    pspec = spec.replace(widths=widths, descriptor_dim=16)
    x, s = _io()
    with torch.no_grad():
        d, lg = net.forward_both(x, s)
    assert d.shape == (2, 16) and lg.shape == (2, 5)
    ck = tmp_path / "p.pt"
    save_checkpoint(
        ck, pspec, {k: v for k, v in net.state_dict().items() if k.startswith(("features.", "head."))}
    )
    spec2, net2 = build("vgg11", str(ck), "gap", 32)
    assert spec2.widths == widths and spec2.head == "gap-linear"
    with torch.no_grad():
        torch.testing.assert_close(net2.forward_both(x, s)[1], lg)
    emb = load_embedder("onnxruntime", spec2, export_model(spec2, net2, tmp_path / "m", formats=("onnx",)))
    np.testing.assert_allclose(emb.logits_batch(x.numpy(), s.numpy()), lg.numpy(), atol=1e-3)


def test_vgg_head_prunes_and_bn_arch(tmp_path):
    from retrieval.nets.model import build_descriptor_net
    from retrieval.spec import ModelSpec

    spec = ModelSpec(
        arch="vgg11_bn",
        input_size=32,
        weights="random",
        widths=WIDTHS,
        descriptor_dim=32,
        head="vgg",
        class_names=CLASSES,
    )
    torch.manual_seed(0)
    net = build_descriptor_net(spec, None)
    widths = l1_prune(net, 0.5, [3, 7])
    assert (
        widths[3] == 8
        and widths[7] == 16
        and net.features[conv_positions(net.features)[3] + 1].num_features == 8
    )
    x, s = _io()
    with torch.no_grad():
        assert net.forward_both(x, s)[1].shape == (2, 5)


def test_prune_checkpoint_with_recovery(tmp_path):
    from retrieval.compress.prune import prune_checkpoint
    from retrieval.training.data import load_split
    from retrieval.training.train import TrainConfig, fit

    split = load_split(FLOWERS, limit_per_class=6)
    spec, net = tiny_net(split.classes)
    fit(
        net,
        spec,
        split,
        tmp_path / "run",
        TrainConfig(epochs=2, warmup_epochs=0, lr=0.01, freeze=-1, workers=0, extra={"data": str(FLOWERS)}),
        log=lambda *a: None,
    )
    out = tmp_path / "pruned"
    lines = []
    got = prune_checkpoint(
        tmp_path / "run" / "best.pt",
        out,
        ratio=0.3,
        layers="5-6",
        recover_epochs=1,
        limit_per_class=6,
        cache_dir=tmp_path / "cache",
        log=lines.append,
    )
    import json

    rep = json.loads((out / "prune_report.json").read_text())
    assert rep == json.loads(json.dumps(got)) and rep["layers"] == [5, 6]
    assert lines[0].startswith("before: ") and lines[-1] == f"wrote {out / 'pruned.pt'}"
    assert rep["widths"][5] == 22 and rep["after"]["params"] < rep["before"]["params"]
    assert (out / "pruned.pt").exists()


def test_prune_cli_refuses_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    from indexer.cli import main

    assert main(["prune", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: checkpoint not found: {tmp_path / 'nope.pt'}"]
    assert not (tmp_path / "out").exists()


def test_flops_target_is_met_and_every_layer_loses_channels():
    from retrieval.compress.prune import prune_model, ratios_for_flops, widths_gflops
    from retrieval.nets.model import trunk_widths

    # the real VGG16 at 224 px, widths in multiples of 8: analytic, no network built
    full = trunk_widths("vgg16")
    assert widths_gflops("vgg16", full, 224) == pytest.approx(30.69, abs=0.01)
    for target in (0.5, 0.35):
        r = ratios_for_flops("vgg16", full, 224, target, list(range(12)))
        assert len(set(r.values())) == 1 and sorted(r) == list(range(12))
        from retrieval.compress.prune import _keep_counts

        keep = _keep_counts(list(full), r, 8)
        widths = [keep.get(k, w) for k, w in enumerate(full)]
        assert all(w % 8 == 0 for w in widths) and widths[-1] == 512
        assert widths_gflops("vgg16", widths, 224) / widths_gflops("vgg16", full, 224) == pytest.approx(
            target, abs=0.02
        )
    with pytest.raises(ValueError, match="cannot reach"):
        ratios_for_flops("vgg16", full, 224, 0.01, [12])

    # a real (tiny) network, the last conv pruned too: every conv layer is narrower, the head follows
    spec, net = tiny_net(CLASSES)
    student, pspec, kept = prune_model(net, spec, flops=0.5, keep_last=False, round_to=1)
    widths = [m.out_channels for m in student.features if isinstance(m, nn.Conv2d)]
    assert all(w < o for w, o in zip(widths, WIDTHS)) and sorted(kept) == list(range(8))
    assert gflops(student, 32) == pytest.approx(0.5 * gflops(net, 32), rel=0.1)
    assert (
        pspec.widths == tuple(widths)
        and pspec.descriptor_dim == widths[-1]
        and student.head.fc.in_features == widths[-1]
    )
    assert pspec.model_id != spec.model_id
    # the original is untouched (prune_model works on a copy)
    assert [m.out_channels for m in net.features if isinstance(m, nn.Conv2d)] == list(WIDTHS)


def test_l1_ranking_uses_the_unpruned_network():
    """Each layer's filters are ranked by their L1 norm in the network as given, not after the
    previous layer's channels went."""
    from retrieval.compress.prune import l1_prune_layers

    spec, net = tiny_net(CLASSES)
    pos = conv_positions(net.features)
    norms = [net.features[i].weight.detach().abs().sum(dim=(1, 2, 3)) for i in pos]
    kept = l1_prune_layers(net, {3: 0.5, 4: 0.5})
    for k in (3, 4):
        assert kept[k].tolist() == sorted(torch.topk(norms[k], len(kept[k])).indices.tolist())


def test_pruned_model_exports_and_embeds_through_the_engines(tmp_path):
    from retrieval.compress.prune import prune_model
    from retrieval.engines import load_embedder
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    spec, net = tiny_net(CLASSES)
    student, pspec, kept = prune_model(net, spec, flops=0.4, round_to=1)
    assert pspec.descriptor_dim == WIDTHS[-1]  # the last conv kept: 32-d descriptors as before
    ck = tmp_path / "p.pt"
    save_checkpoint(
        ck, pspec, {k: v for k, v in student.state_dict().items() if k.startswith(("features.", "head."))}
    )
    spec2, net2 = build("vgg11", str(ck), "gap", 32)
    assert spec2.widths == pspec.widths and spec2.model_id == pspec.model_id != spec.model_id
    x, s = _io()
    with torch.no_grad():
        d, lg = net2.forward_both(x, s)
    model_dir = export_model(spec2, net2, tmp_path / "m")
    for engine in ("onnxruntime", "openvino"):
        emb = load_embedder(engine, spec2, model_dir)
        got_d, got_l = emb.embed_with_logits(x.numpy(), s.numpy())
        np.testing.assert_allclose(got_d, d.numpy(), atol=1e-4)
        np.testing.assert_allclose(got_l, lg.numpy(), atol=1e-3)
        emb.close()
