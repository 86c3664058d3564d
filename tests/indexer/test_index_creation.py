"""Creating an index: INT8 by default (calibrated on the photos being indexed), --precision fp32,
an existing index never converted, and a kill at any step of creation leaves a folder that the next
run makes again."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import copy_photos

from indexer import Index
from indexer.cli import main
from indexer.faults import CREATE_POINTS, ENV

PHOTOS = ["pixabay/bird01.jpg", "pixabay/cat01.jpg", "pixabay/dog01.jpg", "sklearn/china.jpg"]
TINY = ["--arch", "vgg11", "--weights", "random", "--size", "64", "--workers", "0", "-q"]
FP32 = [
    *TINY,
    "--precision",
    "fp32",
]  # for the tests about the folder, not the precision: no INT8 calibration


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "photos"
    copy_photos(d, PHOTOS, flat=True)
    return d


def sidecar(ix) -> dict:
    return json.loads((ix / "model" / "model.json").read_text())


@pytest.fixture(scope="module")
def int8_made(module_tmp):
    """An index made once for the module through the CLI at the default precision (INT8), and a
    pristine copy of it; an index stores absolute photo paths, so each test gets its own fresh copy
    at the place it was made (``_int8_copy``)."""
    base = module_tmp("int8")
    folder, ix = base / "work" / "photos", base / "work" / "ix"
    copy_photos(folder, PHOTOS, flat=True)
    assert main(["index", str(folder), "--index", str(ix), *TINY]) == 0
    shutil.copytree(base / "work", base / "pristine", symlinks=True)
    return base


def _int8_copy(base):
    """(photos folder, index) of ``int8_made``, as the CLI made them (copy2 keeps the mtimes)."""
    shutil.rmtree(base / "work")
    shutil.copytree(base / "pristine", base / "work", symlinks=True)
    return base / "work" / "photos", base / "work" / "ix"


def test_a_new_index_gets_an_int8_model_calibrated_on_its_photos(int8_made, capsys):
    assert not [
        p.name for p in (int8_made / "pristine" / "ix").iterdir() if p.name.startswith(".")
    ]  # as made
    folder, ix = _int8_copy(int8_made)
    model = sidecar(ix)
    assert model["precision"] == "int8" and model["quantization"]["calibration_images"] == len(PHOTOS)
    assert model["files"] == {
        "openvino": "model.xml",
        "onnx": "model.onnx",
    }  # FP32 ONNX kept for ONNX Runtime
    with Index.open(ix) as idx:
        assert idx.precision == "int8" and idx.count == len(PHOTOS) and idx.check().ok
        hit = idx.search(folder / "cat01.jpg", k=1)[0]
        assert hit.path.endswith("cat01.jpg") and hit.score > 0.99
    assert main(["info", "--index", str(ix)]) == 0
    assert "precision: INT8" in capsys.readouterr().out
    assert not [p.name for p in ix.iterdir() if p.name.startswith(".")]  # no mark, no temporary folders


def test_precision_fp32_and_an_existing_index_is_never_converted(tmp_path, folder, capsys):
    ix = tmp_path / "ix"
    assert main(["index", str(folder), "--index", str(ix), "--precision", "fp32", *TINY]) == 0
    assert sidecar(ix).get("precision", "fp32") == "fp32"
    before = (ix / "model" / "model.xml").read_bytes()
    (folder / "more").mkdir()
    copy_photos(folder / "more", ["pixabay/ship01.jpg"], flat=True)
    assert main(["index", str(folder), "--index", str(ix), *TINY]) == 0  # default precision: the index's own
    assert (ix / "model" / "model.xml").read_bytes() == before
    capsys.readouterr()
    assert main(["index", str(folder), "--index", str(ix), "--precision", "int8", *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "made with a fp32 model" in err and "never converted" in err
    with Index.open(ix) as idx:
        assert idx.precision == "fp32" and idx.count == len(PHOTOS) + 1


def test_a_missing_model_of_an_int8_index_is_made_again_at_int8(int8_made):
    folder, ix = _int8_copy(int8_made)
    with Index.open(ix) as idx:
        stored = idx.vector(idx.store.row_by_path(str(folder / "dog01.jpg")).id)
    shutil.rmtree(ix / "model")
    with Index.open(ix) as idx:
        fresh = idx.embedder.embed([folder / "dog01.jpg"])[0]
        assert idx.check().ok
    assert sidecar(ix)["precision"] == "int8"
    assert (
        float(np.dot(stored, fresh)) > 0.98
    )  # calibrated again (on the indexed photos): close, not bit-equal


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_a_kill_at_each_step_of_creation_leaves_a_folder_the_next_run_completes(tmp_path, folder, point):
    ix = tmp_path / "ix"
    cmd = [sys.executable, "-m", "indexer", "index", str(folder), "--index", str(ix), *TINY]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, ENV: point})
    assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-800:])
    assert ix.is_dir() and any(ix.iterdir())  # the kill left something behind
    assert not Index.exists(ix)
    assert main(["index", str(folder), "--index", str(ix), *TINY]) == 0
    with Index.open(ix) as idx:
        assert idx.check().ok and idx.count == len(PHOTOS) and idx.precision == "int8"
    assert sorted(p.name for p in ix.iterdir()) == [
        "index.lock",
        "index.sqlite",
        "model",
        "vectors-000001.faiss",
    ]


def test_an_export_killed_by_an_older_version_is_cleared(tmp_path, folder):
    ix = tmp_path / "ix"
    (ix / ".export-k1ll3d").mkdir(parents=True)
    (ix / ".export-k1ll3d" / "model.onnx").write_bytes(b"half")
    assert main(["index", str(folder), "--index", str(ix), *FP32]) == 0
    assert not (ix / ".export-k1ll3d").exists()


def test_a_folder_with_the_users_files_is_never_cleared(tmp_path, folder, capsys):
    ix = tmp_path / "ix"
    ix.mkdir()
    (ix / ".creating").write_text("{}")
    (ix / "notes.txt").write_text("mine")
    assert main(["index", str(folder), "--index", str(ix), *TINY]) == 2
    assert "is not empty and is not an index" in capsys.readouterr().err
    assert (ix / "notes.txt").read_text() == "mine"


def test_a_second_creator_is_refused_while_the_first_runs_and_a_dead_ones_mark_is_cleared(
    tmp_path, folder, capsys
):
    ix = tmp_path / "ix"
    ix.mkdir()
    code = (
        "import sys, time; from pathlib import Path; from indexer.storage.creating import mark; "
        "m = mark(Path(sys.argv[1])); print('marked', flush=True); time.sleep(120)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(ix)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "marked"
        assert main(["index", str(folder), "--index", str(ix), *FP32]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"being created by another process (pid {holder.pid})" in err
        assert (ix / ".creating").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["index", str(folder), "--index", str(ix), *FP32]) == 0  # its creator is gone: made again
    with Index.open(ix) as idx:
        assert idx.check().ok and idx.count == len(PHOTOS)


def test_quiet_creation_prints_no_quantizer_log(tmp_path, folder):
    """``-q`` is quiet: NNCF's own log lines (INFO:nncf:...) go to a logger we control, not the terminal."""
    cmd = [
        sys.executable,
        "-m",
        "indexer",
        "index",
        str(folder),
        "--index",
        str(tmp_path / "ix"),
        "-q",
        *TINY,
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "nncf" not in (r.stdout + r.stderr).lower(), r.stdout + r.stderr
    # a CUDA build of torch without a CUDA runtime: its extension loader's warning, which NNCF set off
    assert "No CUDA runtime" not in r.stderr, r.stderr
    assert json.loads((tmp_path / "ix" / "model" / "model.json").read_text())["precision"] == "int8"


def test_bf16_runs_the_fp32_model_in_bf16_where_the_cpu_can(tmp_path, folder, capsys):
    from retrieval.engines import cpu_runs_bf16

    ix = tmp_path / "bf16"
    if not cpu_runs_bf16():  # AVX2-only CPUs: refused in one line, nothing made
        assert main(["index", str(folder), "--index", str(ix), "--precision", "bf16", *TINY]) == 2
        assert "needs a CPU with AMX or AVX512-BF16" in capsys.readouterr().err
        assert not (ix / "model").exists()
        return
    assert main(["index", str(folder), "--index", str(ix), "--precision", "bf16", *TINY]) == 0
    assert main(["index", str(folder), "--index", str(tmp_path / "fp32"), *FP32]) == 0
    assert sidecar(ix).get("precision", "fp32") == "fp32"  # the files are FP32: only their inference is bf16
    with Index.open(ix) as bf, Index.open(tmp_path / "fp32") as fp:
        assert bf.precision == "bf16" and bf.embedder.config["INFERENCE_PRECISION_HINT"] == "bf16"
        assert fp.embedder.config["INFERENCE_PRECISION_HINT"] == "f32"
        a, b = bf.all_vectors(), fp.all_vectors()
        assert a[0].shape == b[0].shape and bf.check().ok
        cos = (a[1][np.argsort(a[0])] * b[1][np.argsort(b[0])]).sum(1)
        assert cos.min() > 0.98, cos
    assert (
        main(["index", str(folder), "--index", str(ix), "--precision", "fp32", *TINY]) == 2
    )  # never converted


def test_a_small_folder_calibrates_on_a_share_of_its_photos(tmp_path):
    """Calibration runs the FP32 model once a photo: a new index of few photos calibrates on one in
    CALIBRATION_SHARE of them (at least CALIBRATION_FLOOR, at most CALIBRATION_IMAGES), spread over
    the folders, so creating it costs less than INT8 then saves."""
    from PIL import Image

    from indexer.update.calibration import (
        CALIBRATION_FLOOR,
        CALIBRATION_IMAGES,
        CALIBRATION_SHARE,
        calibration_count,
        calibration_images,
    )

    assert calibration_count(5) == CALIBRATION_FLOOR
    assert calibration_count(CALIBRATION_SHARE * 40) == 40
    assert calibration_count(100_000) == CALIBRATION_IMAGES
    rng = np.random.default_rng(0)
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        for i in range(100):
            pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / sub / f"{i:03d}.png")
    picked = calibration_images([tmp_path / "a", tmp_path / "b"])
    assert len(picked) == 200 // CALIBRATION_SHARE
    assert {os.path.basename(os.path.dirname(p)) for p in picked} == {"a", "b"}  # spread, not the first ones
    assert len(calibration_images([tmp_path / "a"], n=7)) == 7


def test_int8_gain_is_measured_on_int8_and_fp32_convolutions(monkeypatch):
    """The probe behind the default precision: what it times really runs as INT8 convolutions in
    OpenVINO (FakeQuantize fused, u8 activations) against f32 ones, and gives a plausible gain."""
    import openvino as ov

    probe = importlib.import_module(
        "retrieval.engines.int8_gain"
    )  # the module (its function shares the name)

    monkeypatch.delenv(probe.ENV)
    probe.int8_gain.cache_clear()
    try:
        gain = probe.int8_gain()
    finally:
        probe.int8_gain.cache_clear()
    assert 0.3 < gain < 50, gain
    core = ov.Core()
    for int8, precisions in ((True, ("u8", "i8")), (False, ("f32",))):
        compiled = core.compile_model(probe._convolutions(int8), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        convs = [
            op.get_rt_info()["runtimePrecision"].astype(str)
            for op in compiled.get_runtime_model().get_ordered_ops()
            if op.get_rt_info()["layerType"].astype(str) == "Convolution"
        ]
        assert len(convs) == 3 and all(p in precisions for p in convs), (int8, convs)


@pytest.mark.parametrize("gain, expected", [("1.05", "fp32"), ("2.5", "int8")])
def test_the_default_precision_is_int8_only_where_it_pays(
    tmp_path, folder, monkeypatch, capsys, gain, expected
):
    from indexer.opening import default_precision

    probe = importlib.import_module(
        "retrieval.engines.int8_gain"
    )  # the module (its function shares the name)

    monkeypatch.setenv(probe.ENV, gain)
    probe.int8_gain.cache_clear()
    try:
        assert default_precision("openvino") == expected
        assert default_precision("openvino", ray=type("Ray", (), {"model_engine": "openvino"})()) == "int8"
        assert default_precision("onnxruntime") == "fp32"
        ix = tmp_path / "ix"
        assert main(["index", str(folder), "--index", str(ix), *[a for a in TINY if a != "-q"]]) == 0
    finally:
        probe.int8_gain.cache_clear()
    assert sidecar(ix).get("precision", "fp32") == expected
    out = capsys.readouterr()
    said = "FP32, not INT8: this CPU runs INT8 convolutions 1.05x as fast as FP32"
    assert (said in out.out + out.err) == (expected == "fp32"), out
    with Index.open(ix) as idx:
        assert idx.precision == expected and idx.count == len(PHOTOS)


def test_a_probe_that_cannot_run_leaves_the_default_at_int8(monkeypatch):
    """Where OpenVINO's CPU plugin cannot compile or run the probe's models, making an index does
    not fail: the default is INT8, as before the probe."""
    from indexer.opening import default_precision

    probe = importlib.import_module("retrieval.engines.int8_gain")

    def broken(*args, **kwargs):
        raise RuntimeError("this plugin does not run FakeQuantize")

    monkeypatch.delenv(probe.ENV)
    monkeypatch.setattr(probe, "_request", broken)
    probe.int8_gain.cache_clear()
    try:
        assert probe.int8_gain() == probe.INT8_PAYS and default_precision("openvino") == "int8"
    finally:
        probe.int8_gain.cache_clear()
