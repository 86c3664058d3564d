"""INT8 post-training quantization (NNCF) of an exported model, and the benchmark command."""

import json

import nncf  # noqa: F401  (a test dependency: no skipping)
import numpy as np
import pytest
from conftest import FLOWERS, tiny_net


@pytest.fixture(scope="module")
def trained(module_tmp):
    """A tiny net with a head, briefly trained on real photos, its checkpoint and FP32 export."""
    from retrieval.engines.export import export_model
    from retrieval.training.data import load_split
    from retrieval.training.train import TrainConfig, fit

    tmp = module_tmp("q")
    split = load_split(FLOWERS, limit_per_class=5)
    spec, net = tiny_net(split.classes)
    fit(
        net,
        spec,
        split,
        tmp / "run",
        TrainConfig(epochs=3, warmup_epochs=0, lr=0.01, freeze=-1, workers=0),
        log=lambda *a: None,
    )
    return split, spec, net, tmp / "run" / "last.pt", export_model(spec, net, tmp / "fp32")


def test_int8_ir_loads_and_agrees_with_fp32(trained, tmp_path):
    import openvino as ov

    from retrieval.compress.quantize import calibration_items, evaluate_embedder, quantize_ir
    from retrieval.engines import load_embedder
    from retrieval.engines.export import read_sidecar

    split, spec, net, _, fp32 = trained
    d = quantize_ir(fp32, tmp_path / "int8", calibration_items(split, 12), 12)
    s2, side = read_sidecar(d)
    assert side["precision"] == "int8" and s2.model_id == spec.model_id
    ops = {op.get_type_name() for op in ov.Core().read_model(str(d / "model.xml")).get_ops()}
    assert "FakeQuantize" in ops or "FakeConvert" in ops
    fp = load_embedder("openvino", spec, fp32, batch_size=4)
    q = load_embedder("openvino", s2, d, batch_size=4)
    assert q.has_logits
    t_fp, d_fp = evaluate_embedder(fp, split.val)
    t_q, d_q = evaluate_embedder(q, split.val)
    np.testing.assert_allclose(np.linalg.norm(d_q, axis=1), 1.0, atol=1e-5)
    cos = np.sum(d_fp * d_q, axis=1)
    assert cos.min() > 0.98, cos
    assert abs(t_fp - t_q) <= 0.25


def test_quantize_model_and_benchmark_variants(trained, tmp_path):
    from retrieval.compress.bench import benchmark_variants
    from retrieval.compress.quantize import quantize_model

    split, spec, net, ckpt, fp32 = trained
    out = tmp_path / "q"
    got = quantize_model(fp32, FLOWERS / ".." / "flowers5", out, subset=8, val_limit=5, log=lambda line: None)
    rep = json.loads((out / "quantize_report.json").read_text())
    assert rep == json.loads(json.dumps(got))
    assert rep["val_images"] == 5 and rep["descriptor_cosine_mean"] > 0.98
    md, js = benchmark_variants(
        [
            f"torch={'torch'}:{ckpt}",
            f"fp32=openvino:{fp32}",
            f"ort=onnxruntime:{fp32}",
            f"int8=openvino:{out / 'int8'}",
        ],
        FLOWERS,
        tmp_path / "bench",
        limit=8,
        latency_runs=2,
        throughput_batches=1,
        log=lambda line: None,
    )
    assert (md, js) == (tmp_path / "bench.md", tmp_path / "bench.json")
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["torch", "fp32", "ort", "int8"]
    assert rows[0]["latency_ratio"] == 1.0 and all(r["agreement"] > 0.98 for r in rows)
    assert "| int8 | openvino |" in (tmp_path / "bench.md").read_text()


def test_onnx_int8_qdq_model_runs_in_onnxruntime_and_agrees(trained, tmp_path):
    import onnx

    from retrieval.compress.quantize import calibration_items, evaluate_embedder, quantize_onnx
    from retrieval.engines import load_embedder
    from retrieval.engines.export import read_sidecar

    split, spec, net, _, fp32 = trained
    for symmetric in (False, True):
        d = quantize_onnx(
            fp32, tmp_path / f"int8-{symmetric}", calibration_items(split, 12), 12, for_tensorrt=symmetric
        )
        s2, side = read_sidecar(d)
        assert (
            side["precision"] == "int8"
            and side["files"] == {"onnx": "model.onnx"}
            and s2.model_id == spec.model_id
        )
        graph = onnx.load(str(d / "model.onnx")).graph
        q_nodes = [n for n in graph.node if n.op_type == "QuantizeLinear"]
        assert q_nodes, "no QDQ nodes: nothing was quantized"
        zero_points = [
            i for i in graph.initializer if i.name in {n.input[2] for n in q_nodes if len(n.input) > 2}
        ]
        zp = np.concatenate([onnx.numpy_helper.to_array(z).ravel().astype(np.int64) for z in zero_points])
        if symmetric:  # TensorRT's explicit quantization: int8, zero point 0
            assert (zp == 0).all() and all(z.data_type == onnx.TensorProto.INT8 for z in zero_points)
        else:  # x86 CPUs: u8 activations
            assert any(z.data_type == onnx.TensorProto.UINT8 for z in zero_points)
        fp = load_embedder("onnxruntime", spec, fp32, batch_size=4)
        q = load_embedder("onnxruntime", s2, d, batch_size=4)
        assert q.has_logits
        t_fp, d_fp = evaluate_embedder(fp, split.val)
        t_q, d_q = evaluate_embedder(q, split.val)
        cos = np.sum(d_fp * d_q, axis=1)
        assert cos.min() > 0.97, (symmetric, cos)
        assert abs(t_fp - t_q) <= 0.25


def test_quantize_cli_onnx_format(trained, tmp_path, capsys):
    from indexer.cli import main

    split, spec, net, ckpt, fp32 = trained
    out = tmp_path / "q"
    assert (
        main(
            [
                "quantize",
                str(fp32),
                "--calib",
                str(FLOWERS / ".." / "flowers5"),
                "--out",
                str(out),
                "--subset",
                "8",
                "--val-limit",
                "5",
                "--format",
                "onnx",
            ]
        )
        == 0
    )
    assert "ONNX Runtime: 8 calibration images" in capsys.readouterr().out
    rep = json.loads((out / "quantize_report.json").read_text())
    assert rep["int8_onnx_engine"] == "onnxruntime" and rep["int8_onnx_descriptor_cosine_mean"] > 0.97
    assert (out / "int8-onnx" / "model.onnx").is_file() and not (out / "int8").exists()


def test_quantize_cli_refuses_a_folder_without_a_model_in_one_line(tmp_path, capsys):
    from indexer.cli import main

    (tmp_path / "empty").mkdir()
    assert (
        main(["quantize", str(tmp_path / "empty"), "--calib", str(FLOWERS), "--out", str(tmp_path / "q")])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'empty'} is neither a checkpoint nor an exported model folder"]
