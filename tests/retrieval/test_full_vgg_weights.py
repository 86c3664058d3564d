"""A whole torchvision VGG16 state_dict (fc6-fc8 included) keeps its classifier: the model's `vgg` head,
with class names, exported next to the descriptor in one graph, giving torchvision's own logits in
every engine."""

import numpy as np
import pytest
import torch

from retrieval.errors import UserError
from retrieval.nets.builder import build, load_net
from retrieval.nets.weights import imagenet_categories

SIZE = 224  # torchvision's 7x7 grid before fc6 is then the trunk's own: no adaptive resampling


@pytest.fixture(scope="module")
def full_vgg16(module_tmp):
    """(path, torchvision model): a random-weight torchvision vgg16 and its whole state_dict on disk."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    ref = vgg16(weights=None).eval()
    path = module_tmp("full") / "vgg16_full.pth"
    torch.save(ref.state_dict(), path)
    return path, ref


def _torchvision_logits(ref, images: np.ndarray, spec) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        return ref(x).numpy()


def test_full_torchvision_vgg16_keeps_its_classifier_in_every_engine(full_vgg16, tmp_path):
    from retrieval.engines import load_embedder
    from retrieval.engines.export import export_model, read_sidecar

    path, ref = full_vgg16
    spec, net = build("vgg16", str(path), input_size=SIZE)
    assert spec.head == "vgg" and spec.class_names == imagenet_categories()  # 1,000 outputs: ImageNet's names
    assert spec.class_names[:2] == ("tench", "goldfish")
    spec = spec.replace(trim_borders=False)  # the engines then see exactly the pixels torchvision sees
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    sizes = np.full((2, 2), SIZE, np.int64)
    want = _torchvision_logits(ref, images, spec)
    model_dir = export_model(spec, net, tmp_path / "model")
    sidecar = read_sidecar(model_dir)[1]
    assert set(sidecar["outputs"]) == {"descriptor", "logits"}
    scale = np.abs(want).max()
    descriptors = {}
    for engine in ("torch", "onnxruntime", "openvino"):
        emb = load_embedder(engine, spec, model_dir, net=net)
        d, logits = emb.embed_with_logits(images, sizes)
        emb.close()
        assert logits.shape == (2, 1000), engine
        assert np.abs(logits - want).max() <= 1e-4 * scale, engine
        descriptors[engine] = d
    assert np.allclose(descriptors["onnxruntime"], descriptors["torch"], atol=1e-4)
    assert np.allclose(descriptors["openvino"], descriptors["torch"], atol=1e-4)
    # rebuilt from the stored spec (what an index does), the same head and names
    again = load_net(spec)
    assert again.head is not None
    assert torch.equal(
        again.state_dict()["head.classifier.6.weight"], ref.state_dict()["classifier.6.weight"]
    )


def test_class_names_file_names_the_classifier(full_vgg16, tmp_path):
    path, _ = full_vgg16
    names = tmp_path / "names.txt"
    names.write_text("".join(f"thing {i}\n" for i in range(1000)))
    spec, _ = build("vgg16", str(path), input_size=64, class_names_file=names)
    assert spec.class_names[0] == "thing 0" and len(spec.class_names) == 1000

    names.write_text("cat\ndog\n")
    with pytest.raises(UserError) as e:
        build("vgg16", str(path), input_size=64, class_names_file=names)
    assert str(names) in str(e.value) and "2 names" in str(e.value) and "\n" not in str(e.value)


def test_trunk_only_weights_have_no_classifier_and_refuse_class_names(tmp_path):
    from conftest import VGG16_WEIGHTS

    spec, net = build("vgg16", str(VGG16_WEIGHTS), input_size=64)
    assert spec.head == "" and net.head is None and spec.class_names == ()
    names = tmp_path / "names.txt"
    names.write_text("a\nb\n")
    with pytest.raises(UserError, match="no torchvision classifier"):
        build("vgg16", str(VGG16_WEIGHTS), input_size=64, class_names_file=names)


def test_a_replaced_classifier_is_left_out_not_an_error(full_vgg16, tmp_path):
    """A fine-tuned VGG whose classifier is another layout (here fc8 only): descriptors as before."""
    path, _ = full_vgg16
    sd = torch.load(path, weights_only=True)
    odd = {k: v for k, v in sd.items() if k.startswith("features.")}
    odd["classifier.weight"], odd["classifier.bias"] = torch.zeros(10, 25088), torch.zeros(10)
    torch.save(odd, tmp_path / "odd.pth")
    spec, net = build("vgg16", str(tmp_path / "odd.pth"), input_size=64)
    assert spec.head == "" and net.head is None


def test_class_names_on_the_command_line(full_vgg16, tmp_path, capsys):
    """`export --class-names` with the wrong count, and `index --class-names` on an existing index
    (whose model keeps its classes), are one line each with exit status 2."""
    from conftest import SAMPLES

    from indexer.cli import main

    path, _ = full_vgg16
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\n")
    assert (
        main(
            [
                "export",
                "--out",
                str(tmp_path / "m"),
                "--weights",
                str(path),
                "--size",
                "64",
                "--class-names",
                str(names),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(names) in err[0] and "1000 classes" in err[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "coffee.png").write_bytes((SAMPLES / "skimage" / "coffee.png").read_bytes())
    ix = str(tmp_path / "ix")
    assert (
        main(
            [
                "index",
                str(photos),
                "--index",
                ix,
                "--arch",
                "vgg11",
                "--weights",
                "random",
                "--size",
                "32",
                "--precision",
                "fp32",
                "--workers",
                "0",
                "-q",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["index", "--index", ix, "--class-names", str(names)]) == 2
    assert "--class-names applies when an index is made" in capsys.readouterr().err
