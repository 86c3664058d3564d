"""The descriptor network and weights loading, on tiny inputs."""

import numpy as np
import pytest
import torch
from conftest import VGG16_WEIGHTS

from retrieval.errors import UserError
from retrieval.nets.builder import build, load_net
from retrieval.nets.model import build_descriptor_net, build_vgg, conv_trunk
from retrieval.nets.weights import ENV_VAR, fingerprint, load_weights, save_checkpoint
from retrieval.spec import ModelSpec


def _batch(n=3, s=64, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, s, s, 3), dtype=np.uint8)), torch.tensor(
        [[64, 64], [40, 64], [64, 17]][:n], dtype=torch.int64
    )


@pytest.mark.parametrize("pooling", ["gap", "mac", "gem"])
def test_descriptors_are_unit_512d_and_ignore_padding(pooling):
    spec = ModelSpec(arch="vgg11", pooling=pooling, input_size=64)
    torch.manual_seed(0)
    net = build_descriptor_net(spec, None)
    x, sizes = _batch()
    with torch.no_grad():
        d = net(x, sizes)
        noisy = x.clone()
        noisy[1, 40:] = 255  # garbage in the padded area of image 1 (valid height 40)
        noisy[2, :, 17:] = 7
        d2 = net(noisy, sizes)
    assert d.shape == (3, 512)
    assert torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(d, d2, atol=1e-6)


def test_poolings_differ():
    x, sizes = _batch()
    out = {}
    for pooling in ("gap", "mac", "gem"):
        torch.manual_seed(0)
        net = build_descriptor_net(ModelSpec(arch="vgg11", pooling=pooling, input_size=64), None)
        with torch.no_grad():
            out[pooling] = net(x, sizes)
    assert not torch.allclose(out["gap"], out["mac"], atol=1e-3)
    assert not torch.allclose(out["gem"], out["gap"], atol=1e-4)


def test_shared_trunk_loads_and_fingerprint_is_stable():
    a = load_weights("vgg16", str(VGG16_WEIGHTS))
    assert len(a.features) == 26 and a.source == str(VGG16_WEIGHTS.resolve())
    assert fingerprint(a.features) == fingerprint(load_weights("vgg16", str(VGG16_WEIGHTS)).features)


def test_state_dict_layouts_are_accepted(tmp_path):
    torch.manual_seed(1)
    vgg = build_vgg("vgg11")
    full = tmp_path / "full.pth"
    torch.save(vgg.state_dict(), full)
    trunk = tmp_path / "trunk.pth"
    torch.save(conv_trunk(vgg).state_dict(), trunk)  # bare "0.weight" keys
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in vgg.state_dict().items()}}, wrapped)
    prints = {fingerprint(load_weights("vgg11", str(p)).features) for p in (full, trunk, wrapped)}
    assert len(prints) == 1


def test_project_checkpoint_round_trip(tmp_path):
    spec, net = build("vgg11", "random", input_size=64)
    ckpt = tmp_path / "ckpt.pth"
    save_checkpoint(ckpt, spec.replace(class_names=("ant", "bee")), net.state_dict())
    spec2, net2 = build("vgg11", str(ckpt), input_size=64)
    assert spec2.weights_sha256 == spec.weights_sha256 and spec2.class_names == ("ant", "bee")
    x, sizes = _batch()
    with torch.no_grad():
        assert torch.allclose(net(x, sizes), net2(x, sizes))
    with pytest.raises(UserError, match="is a vgg11, not a vgg13"):
        build("vgg13", str(ckpt), input_size=64)


def test_weights_errors_are_one_line_user_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="weights file not found"):
        load_weights("vgg16", str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="cannot load weights"):
        load_weights("vgg16", str(junk))
    with pytest.raises(UserError, match="do not fit vgg19"):
        load_weights("vgg19", str(VGG16_WEIGHTS))
    with pytest.raises(UserError, match="unknown weights name"):
        load_weights("vgg16", "IMAGENET9K_V7")
    # pickled code is refused (weights_only=True), not executed
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": ModelSpec()}, evil)
    with pytest.raises(UserError, match="cannot load weights"):
        load_weights("vgg16", str(evil))


def test_no_weights_anywhere_says_how_to_provide_them(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(UserError) as e:
        load_weights("vgg11", None)  # IMAGENET1K_V1: not cached, and no network here
    msg = str(e.value)
    assert "--weights" in msg and ENV_VAR in msg and "\n" not in msg


def test_env_var_is_used(monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(VGG16_WEIGHTS))
    assert load_weights("vgg16").source == str(VGG16_WEIGHTS.resolve())


def test_load_net_checks_the_fingerprint(tmp_path):
    spec, _ = build("vgg11", "random", input_size=64)
    load_net(spec)  # the seeded random weights rebuild identically
    with pytest.raises(UserError, match="changed"):
        load_net(spec.replace(weights_sha256="0" * 64))
