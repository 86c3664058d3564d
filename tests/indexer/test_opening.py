"""The Python API under ``vgg-retrieval index`` and ``dedup`` (indexer.opening, indexer.dedup.run),
called without the CLI: real tiny VGG11 models, real SQLite + FAISS indexes."""

from __future__ import annotations

import json

import pytest
from conftest import copy_photos

from indexer import Index
from indexer.opening import ModelChoice, open_or_create, ray_settings, resolve_index_type
from retrieval.errors import ModelMismatchError, UserError

TINY = {"arch": "vgg11", "weights": "random", "input_size": 64}


def test_open_or_create_creates_then_reopens_with_the_index_model(tmp_path, photos, tiny_model):
    spec, _, model_dir = tiny_model
    said = []
    with open_or_create(
        tmp_path / "ix", [photos], model=ModelChoice(model_dir=model_dir), index_type="flat", log=said.append
    ) as idx:
        assert idx.spec.model_id == spec.model_id and idx.count == 0
        idx.update([photos], workers=0, progress=False)
        assert idx.count == 6
    assert said == [
        f"created index {tmp_path / 'ix'} with {spec.describe()}, FP32"
    ]  # an exported model as it is
    with open_or_create(tmp_path / "ix", log=said.append) as idx:  # no folders, no model options: the index's
        assert (
            idx.count == 6
            and idx.spec.model_id == spec.model_id
            and idx.vectors_info()["index_type"] == "flat"
        )
    with open_or_create(
        tmp_path / "ix", model=ModelChoice(model_dir=model_dir)
    ) as idx:  # the same exported model is fine
        assert idx.count == 6
    assert len(said) == 1
    assert resolve_index_type("flat", tmp_path / "ix") == "flat"
    with pytest.raises(UserError, match="the type is chosen when an index is created"):
        resolve_index_type("hnsw", tmp_path / "ix")


def test_open_or_create_model_options_against_an_existing_index(tmp_path):
    photos = tmp_path / "photos"
    copy_photos(photos, ["skimage/coffee.png", "skimage/chelsea.png"])
    # about the model options, not the precision: FP32 (no INT8 calibration)
    with open_or_create(
        tmp_path / "ix", [photos], model=ModelChoice(trim_borders=False, precision="fp32", **TINY)
    ) as idx:
        assert idx.spec.trim_borders is False
        idx.update([photos], workers=0, progress=False)
    with open_or_create(
        tmp_path / "ix", [photos], model=ModelChoice(**TINY)
    ) as idx:  # unset --trim-borders: the index's policy
        assert idx.spec.trim_borders is False
        report = idx.update([photos], workers=0, progress=False)
        assert report.unchanged == 2 and idx.count == 2
    with pytest.raises(ModelMismatchError, match="refusing to mix in descriptors"):
        open_or_create(tmp_path / "ix", [photos], model=ModelChoice(trim_borders=True, **TINY))
    with pytest.raises(ModelMismatchError):
        open_or_create(
            tmp_path / "ix", [photos], model=ModelChoice(arch="vgg13", weights="random", input_size=64)
        )
    with Index.open(tmp_path / "ix") as idx:
        assert idx.count == 2 and idx.check().ok


def test_open_or_create_refuses_before_building_anything(tmp_path, photos, tiny_model):
    _, _, model_dir = tiny_model
    with pytest.raises(UserError, match="name the FOLDER"):
        open_or_create(tmp_path / "ix")
    with pytest.raises(UserError, match="folder not found"):
        open_or_create(tmp_path / "ix", [tmp_path / "nope"])
    with pytest.raises(UserError, match="exclude each other"):
        open_or_create(tmp_path / "ix", [photos], model=ModelChoice(model_dir=model_dir, arch="vgg11"))
    with pytest.raises(UserError, match="model.json missing"):
        open_or_create(tmp_path / "ix", [photos], model=ModelChoice(model_dir=tmp_path / "photos"))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(UserError, match="is not empty and is not an index"):
        open_or_create(tmp_path / "full", [photos], model=ModelChoice(model_dir=model_dir))
    assert not (tmp_path / "ix").exists() and sorted(p.name for p in (tmp_path / "full").iterdir()) == [
        "x.txt"
    ]


def test_ray_settings_only_with_the_ray_engine():
    assert ray_settings("onnxruntime") is None
    with pytest.raises(UserError, match="--ray-address, --ray-actors only apply with --engine ray"):
        ray_settings("openvino", address="auto", actors=2)


def test_dedup_index_writes_the_three_report_files(tmp_path, photos, make_index):
    from indexer.dedup.run import dedup_index

    copy_photos(photos / "copies", ["skimage/coffee.png"])
    with make_index(tmp_path / "ix") as idx:
        idx.update([photos], workers=0, progress=False)
    stages = []
    report, paths = dedup_index(
        tmp_path / "ix",
        tmp_path / "out" / "rep.html",
        verify=False,
        progress=lambda stage, done, total: stages.append(stage),
    )
    assert [p.name for p in paths] == ["rep.json", "rep.csv", "rep.html"] and all(p.is_file() for p in paths)
    assert "search" in stages
    saved = json.loads(paths[0].read_text())
    coffee = {
        str((photos / "skimage" / "coffee.png").resolve()),
        str((photos / "copies" / "skimage" / "coffee.png").resolve()),
    }
    assert [g for g in report.groups if {m.path for m in g.files} >= coffee]  # the byte-identical copy
    assert len(saved["groups"]) == len(report.groups) >= 1
