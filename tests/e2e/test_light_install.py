"""The base install (no torch): index, search, dedup and the UI's imports work with torch and
torchvision unimportable, the model then being written as an ONNX graph from safetensors weights; it
gives the torch-built index's descriptors (cosine >= 0.9999) and the same tensor fingerprint.

torch is blocked in the subprocesses by a ``sitecustomize`` that puts ``None`` in ``sys.modules``
for torch, torchvision and onnxscript (as if they were not installed: imports fail and
``importlib.util.find_spec`` says "not there"); the embedding workers, started with spawn, inherit it
through PYTHONPATH. The parent process, with torch, writes the safetensors trunk and builds the
reference index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLES, VGG16_WEIGHTS
from PIL import Image

PHOTOS = ["cat01.jpg", "cat02.jpg", "dog01.jpg", "car01.jpg", "ship01.jpg", "bird01.jpg"]
SIZE = "64"
BLOCK_TORCH = (
    'import sys\nfor _name in ("torch", "torchvision", "onnxscript"):\n'
    "    sys.modules[_name] = None  # as if not installed\n"
)
LIGHT_RUN = (
    """
import json, sys
from indexer.cli import main
photos, ix, weights, report = sys.argv[1:5]
codes = {"index": main(["index", photos, "--index", ix, "--weights", weights, "--size", "%s", "--precision", "fp32",
                        "--workers", "0"]),
         "search": main(["search", "--index", ix, photos + "/cat02.jpg", "-k", "3"]),
         "dedup": main(["dedup", "--index", ix, "--out", report])}
import ui.logic.service  # noqa: F401  (the web UI's service layer)
codes["torch_loaded"] = any(m.split(".")[0] in ("torch", "torchvision") and sys.modules[m] for m in sys.modules)
print("RESULT " + json.dumps(codes))
"""
    % SIZE
)


@pytest.fixture(scope="module")
def light(module_tmp):
    """A folder of real photos (one of them also as a smaller copy), the shared trunk as safetensors
    (written here, with torch), and the environment that blocks torch in a subprocess."""
    from retrieval.nets.weights import convert_to_safetensors

    root = module_tmp("light")
    photos = root / "photos"
    photos.mkdir()
    for name in PHOTOS:
        shutil.copy(SAMPLES / "pixabay" / name, photos / name)
    with Image.open(photos / "ship01.jpg") as im:  # a near duplicate for dedup to find
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4)).save(
            photos / "ship01_small.jpg", quality=90
        )
    convert_to_safetensors(VGG16_WEIGHTS, root / "trunk.safetensors")
    block = root / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(block), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return {"root": root, "photos": photos, "weights": root / "trunk.safetensors", "env": env}


def _run_without_torch(light, *args, code=None):
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "indexer"]
    return subprocess.run(
        [*cmd, *map(str, args)],
        env=light["env"],
        cwd=light["root"],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def light_index(light):
    """The index made, searched and deduplicated in one torch-less process; (index folder, results)."""
    ix = light["root"] / "ix-light"
    p = _run_without_torch(
        light, light["photos"], ix, light["weights"], light["root"] / "report", code=LIGHT_RUN
    )
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, p.stdout[-2000:] + p.stderr[-3000:]
    return ix, json.loads(line[len("RESULT ") :]), p.stdout


def _descriptors(ix) -> tuple[dict, object]:
    from indexer.index import Index

    with Index.open(ix) as idx:
        ids, vectors = idx.all_vectors()
        rows = idx.store.rows_by_id(ids)
        return {os.path.basename(rows[int(i)].path): v for i, v in zip(ids, vectors)}, idx.spec


def test_index_search_dedup_and_ui_run_without_torch(light, light_index):
    ix, codes, out = light_index
    assert codes == {"index": 0, "search": 0, "dedup": 0, "torch_loaded": False}
    sidecar = json.loads((ix / "model" / "model.json").read_text())
    assert sidecar["exported_by"] == "retrieval.nets.onnx_graph"  # the torch-free path, not a leftover export
    results = out.split("cat02.jpg\n", 1)[1].splitlines()
    assert "cat02.jpg" in results[0]  # the photo itself first
    report = json.loads((light["root"] / "report.json").read_text())
    groups = [{os.path.basename(m["path"]) for m in [g["keeper"], *g["members"]]} for g in report["groups"]]
    assert groups == [{"ship01.jpg", "ship01_small.jpg"}]


def test_same_descriptors_and_fingerprint_as_the_torch_built_index(light, light_index, tmp_path):
    from indexer.cli import main

    ix_torch = tmp_path / "ix-torch"
    assert (
        main(
            [
                "index",
                str(light["photos"]),
                "--index",
                str(ix_torch),
                "--weights",
                str(VGG16_WEIGHTS),
                "--size",
                SIZE,
                "--precision",
                "fp32",
                "--workers",
                "0",
            ]
        )
        == 0
    )
    assert json.loads((ix_torch / "model" / "model.json").read_text())["exported_by"] == "torch.onnx"
    light_vectors, light_spec = _descriptors(light_index[0])
    torch_vectors, torch_spec = _descriptors(ix_torch)
    assert (
        light_spec.weights_sha256 == torch_spec.weights_sha256
    )  # .safetensors without torch == .pth with it
    assert light_spec.model_id == torch_spec.model_id
    assert light_spec.weights_file_sha256 != torch_spec.weights_file_sha256  # two different files
    assert sorted(light_vectors) == sorted(torch_vectors) and len(light_vectors) == len(PHOTOS) + 1
    names = sorted(light_vectors)
    a = np.stack([light_vectors[n] for n in names])
    b = np.stack([torch_vectors[n] for n in names])
    assert (a * b).sum(1).min() >= 0.9999
    assert (a @ a.T)[~np.eye(len(a), dtype=bool)].min() < 0.9  # different photos differ: not a constant graph


def test_an_rmac_index_without_torch_matches_the_torch_built_one(light, tmp_path):
    """R-MAC with the buckets policy (the best settings' pooling) is built by the torch-free graph too,
    with the torch-exported model's descriptors."""
    from indexer.cli import main

    common = ["--size", SIZE, "--pooling", "rmac", "--precision", "fp32", "--workers", "0", "-q"]
    p = _run_without_torch(
        light, "index", light["photos"], "--index", tmp_path / "light", "--weights", light["weights"], *common
    )
    assert p.returncode == 0, p.stderr
    sidecar = json.loads((tmp_path / "light" / "model" / "model.json").read_text())
    assert sidecar["exported_by"] == "retrieval.nets.onnx_graph" and sidecar["spec"]["pooling"] == "rmac"
    args = [
        "index",
        str(light["photos"]),
        "--index",
        str(tmp_path / "torch"),
        "--weights",
        str(VGG16_WEIGHTS),
    ]
    assert main([*args, *common]) == 0
    light_vectors, light_spec = _descriptors(tmp_path / "light")
    torch_vectors, torch_spec = _descriptors(tmp_path / "torch")
    assert light_spec.model_id == torch_spec.model_id and sorted(light_vectors) == sorted(torch_vectors)
    names = sorted(light_vectors)
    a = np.stack([light_vectors[n] for n in names])
    b = np.stack([torch_vectors[n] for n in names])
    assert (a * b).sum(1).min() >= 0.9999
    assert (a @ a.T)[~np.eye(len(a), dtype=bool)].min() < 0.9


def test_pth_and_torch_only_parts_without_torch_are_one_line(light, light_index):
    p = _run_without_torch(
        light,
        "index",
        light["photos"],
        "--index",
        light["root"] / "ix-pth",
        "--weights",
        VGG16_WEIGHTS,
        "--precision",
        "fp32",
    )
    assert p.returncode != 0 and "Traceback" not in p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and str(VGG16_WEIGHTS) in lines[0]
    assert (
        "reading .pth needs torch: pip install 'vgg-retrieval[train]' or convert to safetensors" in lines[0]
    )
    assert not (light["root"] / "ix-pth").exists() or not any((light["root"] / "ix-pth").iterdir())
    p = _run_without_torch(
        light, "search", "--index", light_index[0], "--engine", "torch", light["photos"] / "cat01.jpg"
    )
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode != 0 and len(lines) == 1 and "the torch engine needs torch" in lines[0], p.stderr


def test_named_weights_without_torch_come_from_the_hub(light, tmp_path):
    """IMAGENET1K_V1 without torch is timm's copy of torchvision's weights on the Hugging Face hub;
    offline with nothing cached, that is one line naming the repository."""
    env = {**light["env"], "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "indexer",
            "export",
            "--out",
            str(tmp_path / "m"),
            "--arch",
            "vgg11",
            "--weights",
            "IMAGENET1K_V1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode != 0 and len(lines) == 1, p.stderr
    assert "timm/vgg11.tv_in1k" in lines[0] and "Hugging Face hub" in lines[0]


def test_timm_layout_reads_as_torchvision(tmp_path):
    """A safetensors file in timm's VGG layout (classifier as pre_logits conv + head.fc) loads as the
    same tensors as torchvision's layout: the same fingerprint and the ``vgg`` classifier head."""
    from safetensors.numpy import save_file

    from retrieval.nets.weights import fingerprint, load_weights, trunk_shapes

    widths = (8, 8, 16, 16, 16, 16, 16, 16)
    rng = np.random.default_rng(0)
    tv = {k: rng.standard_normal(s).astype(np.float32) for k, s in trunk_shapes("vgg11", widths).items()}
    tv.update(
        {
            "classifier.0.weight": rng.standard_normal((12, 16 * 49)).astype(np.float32),
            "classifier.3.weight": rng.standard_normal((12, 12)).astype(np.float32),
            "classifier.6.weight": rng.standard_normal((3, 12)).astype(np.float32),
            **{
                f"classifier.{i}.bias": rng.standard_normal(n).astype(np.float32)
                for i, n in ((0, 12), (3, 12), (6, 3))
            },
        }
    )
    timm = {k: v for k, v in tv.items() if not k.startswith("classifier.")}
    timm.update(
        {
            "pre_logits.fc1.weight": tv["classifier.0.weight"].reshape(12, 16, 7, 7),
            "pre_logits.fc1.bias": tv["classifier.0.bias"],
            "pre_logits.fc2.weight": tv["classifier.3.weight"].reshape(12, 12, 1, 1),
            "pre_logits.fc2.bias": tv["classifier.3.bias"],
            "head.fc.weight": tv["classifier.6.weight"],
            "head.fc.bias": tv["classifier.6.bias"],
        }
    )
    save_file(tv, str(tmp_path / "tv.safetensors"))
    save_file(timm, str(tmp_path / "timm.safetensors"))
    a = load_weights("vgg11", str(tmp_path / "tv.safetensors"), widths)
    b = load_weights("vgg11", str(tmp_path / "timm.safetensors"), widths)
    assert a.vgg_classifier and b.vgg_classifier and fingerprint(a.features) == fingerprint(b.features)
    assert fingerprint(a.features) == fingerprint({k: v for k, v in tv.items() if k.startswith("features.")})
    assert (
        set(a.head)
        == set(b.head)
        == {f"head.classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    )
    for k in a.head:
        assert np.array_equal(np.asarray(a.head[k]), np.asarray(b.head[k]))
    assert a.file_sha256 != b.file_sha256 and len(a.file_sha256) == 64


def test_shipped_imagenet_names_and_trunk_shapes_are_torchvision_s():
    import torch
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    from retrieval.nets.model import build_trunk
    from retrieval.nets.weights import imagenet_categories, trunk_shapes

    assert imagenet_categories() == tuple(_IMAGENET_CATEGORIES)
    for arch, widths in (("vgg16", None), ("vgg19_bn", None), ("vgg11_bn", (8, 8, 16, 16, 16, 16, 32, 32))):
        with torch.device("meta"):
            state = build_trunk(arch, widths).state_dict()
        assert list(trunk_shapes(arch, widths).items()) == [
            (f"features.{k}", tuple(v.shape)) for k, v in state.items()
        ]


def test_describe_names_the_weights_file_and_says_what_the_hash_is_of():
    from retrieval.spec import ModelSpec

    spec = ModelSpec(
        weights="/a/long/folder/name/that/goes/on/and/on/shared/weights/my_vgg16_trunk.safetensors",
        weights_sha256="ab" * 32,
        weights_file_sha256="cd" * 32,
    )
    line = spec.describe()
    assert "weights=my_vgg16_trunk.safetensors " in line and "tensors sha256 abababababab" in line
    assert (
        spec.describe_weights().startswith(spec.weights)
        and "file sha256 " + "cd" * 32 in spec.describe_weights()
    )
    assert spec.model_id == spec.replace(weights_file_sha256="").model_id  # display only
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert "weights_file_sha256" not in ModelSpec().to_dict()  # unknown: stored specs read as before
    assert ModelSpec(weights="hf:timm/vgg16.tv_in1k").describe().split()[1] == "weights=hf:timm/vgg16.tv_in1k"


def test_a_torch_only_command_on_the_base_install_is_one_line():
    from retrieval.torch_extra import missing_torch

    said = missing_torch(ModuleNotFoundError("import of torch halted; None in sys.modules", name="torch.nn"))
    assert said == "this needs torch, which the base install leaves out: pip install 'vgg-retrieval[train]'"
    assert missing_torch(ModuleNotFoundError("No module named 'faiss'", name="faiss")) is None
    assert (
        missing_torch(ImportError("cannot import name 'x'", name="torch")) is None
    )  # a broken torch: a real error


def test_a_classifier_without_torch_is_exported_with_its_scores(tmp_path, monkeypatch):
    """timm-layout weights with a classifier, built as without torch (GraphWeights; fc6/fc7 narrowed
    to 16 units to keep the file small, which torch's fixed 4096-unit head could not load) and
    exported with the graph writer: the ``vgg`` head with ImageNet's names, the trunk's descriptors
    as torch computes them, and class scores that depend on the photo."""
    import onnxruntime as ort
    import torch
    from safetensors.numpy import save_file

    import retrieval.nets.builder as builder
    import retrieval.nets.weights as weights
    from retrieval.engines.export import export_model
    from retrieval.nets.model import build_descriptor_net
    from retrieval.preprocess import load_and_prepare

    rng = np.random.default_rng(1)
    state = {
        k: (rng.standard_normal(s) * np.sqrt(2.0 / np.prod(s[1:]))).astype(np.float32)
        if len(s) == 4
        else np.full(s, 0.01, np.float32)
        for k, s in weights.trunk_shapes("vgg11").items()
    }
    trunk = dict(state)
    for name, shape in (
        ("pre_logits.fc1", (16, 512, 7, 7)),
        ("pre_logits.fc2", (16, 16, 1, 1)),
        ("head.fc", (1000, 16)),
    ):
        state[f"{name}.weight"] = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(
            np.float32
        )
        state[f"{name}.bias"] = rng.standard_normal(shape[0]).astype(np.float32) * 0.1
    path = tmp_path / "vgg11_timm.safetensors"
    save_file(state, str(path))
    for module in (builder, weights):
        monkeypatch.setattr(module, "torch_available", lambda: False)
    spec, light = builder.build("vgg11", str(path))
    assert isinstance(light, builder.GraphWeights) and isinstance(
        light.state["head.classifier.0.weight"], np.ndarray
    )
    assert spec.head == "vgg" and spec.class_names == weights.imagenet_categories()
    assert spec.weights_sha256 == weights.fingerprint(
        trunk
    ) and spec.weights_file_sha256 == weights.file_sha256(path)
    export_model(spec, light, tmp_path / "m", formats=("onnx",))
    sidecar = json.loads((tmp_path / "m" / "model.json").read_text())
    assert sidecar["exported_by"] == "retrieval.nets.onnx_graph" and "logits" in sidecar["outputs"]
    prepared = [load_and_prepare(SAMPLES / "pixabay" / n, 224) for n in ("cat01.jpg", "ship01.jpg")]
    images, sizes = np.stack([p.array for p in prepared]), np.array([p.valid for p in prepared], np.int64)
    session = ort.InferenceSession(str(tmp_path / "m" / "model.onnx"), providers=["CPUExecutionProvider"])
    got_d, logits = session.run(["descriptor", "logits"], {"image": images, "size": sizes})
    net = build_descriptor_net(
        spec.replace(head="", class_names=()), {k: torch.from_numpy(v) for k, v in trunk.items()}
    )
    with torch.no_grad():
        d = net.eval()(torch.from_numpy(images), torch.from_numpy(sizes)).numpy()
    assert (got_d * d).sum(1).min() >= 0.9999
    assert (
        logits.shape == (2, 1000) and np.isfinite(logits).all() and np.abs(logits[0] - logits[1]).max() > 1e-3
    )
