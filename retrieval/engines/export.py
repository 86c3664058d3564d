"""Export a descriptor network to ONNX and OpenVINO IR, with a JSON sidecar that describes it.

A model folder holds ``model.onnx``, ``model.xml`` + ``model.bin`` and ``model.json``; the sidecar
has the full ``ModelSpec`` (architecture, pooling, input policy, normalisation, weights fingerprint)
and the tensor interface, so the folder is usable without the original weights file or torch.
``model.onnx`` comes from torch's exporter for a torch network, or (no torch installed) is written
by ``retrieval.nets.onnx_graph`` from ``retrieval.nets.builder.GraphWeights``: the same descriptors.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from retrieval.errors import UserError
from retrieval.spec import ModelSpec

SIDECAR = "model.json"
ONNX_FILE = "model.onnx"
IR_FILE = "model.xml"
OPSET = 18


def export_model(spec: ModelSpec, net, out_dir: str | os.PathLike, formats=("onnx", "openvino")) -> Path:
    """Write the model files into ``out_dir`` (replaced atomically as a whole). ``net``: a torch
    network, or ``retrieval.nets.builder.GraphWeights`` (no torch needed)."""
    from retrieval.nets.builder import GraphWeights  # lazy: keeps the command line's start light

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir.parent))
    try:
        s = spec.input_size
        dynamic = spec.input_policy != "square"
        onnx_path = tmp / ONNX_FILE
        if isinstance(net, GraphWeights):
            with_logits = _write_graph_onnx(spec, net, onnx_path)
        else:
            with_logits = _write_torch_onnx(spec, net, onnx_path)
        files = {"onnx": ONNX_FILE}
        if "openvino" in formats:
            import openvino as ov

            ov_model = ov.convert_model(str(onnx_path))
            ov.save_model(ov_model, str(tmp / IR_FILE), compress_to_fp16=False)
            files["openvino"] = IR_FILE
        if "onnx" not in formats:
            onnx_path.unlink()
            files.pop("onnx")
        sidecar = {
            "spec": spec.to_dict(),
            "model_id": spec.model_id,
            "files": files,
            "exported_by": "retrieval.nets.onnx_graph" if isinstance(net, GraphWeights) else "torch.onnx",
            "inputs": {
                "image": (
                    f"uint8 [N,H,W,3] RGB, picture top-left, zero padded; (H, W) one of the buckets "
                    f"{[list(x) for x in spec.input_shapes()]}"
                    if dynamic
                    else f"uint8 [N,{s},{s},3] RGB, picture top-left, zero padded"
                ),
                "size": "int64 [N,2] valid (height, width) of each picture",
            },
            "outputs": {
                "descriptor": f"float32 [N,{spec.descriptor_dim}] L2-normalised",
                **(
                    {
                        "logits": f"float32 [N,{len(spec.class_names)}] class scores ({spec.head} head; "
                        f"spec.class_names order)"
                    }
                    if with_logits
                    else {}
                ),
            },
            "normalisation": "inside the graph: (x/255 - mean) / std, padded pixels zeroed",
            "preprocessing": (
                "outside the graph: uniform border bands trimmed off the picture, which is then "
                "resized back to the full input (retrieval.preprocess.trim_prepared; "
                "spec.trim_borders)"
            )
            if spec.trim_borders
            else "outside the graph: none beyond the resize and padding",
        }
        (tmp / SIDECAR).write_text(json.dumps(sidecar, indent=2))
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_graph_onnx(spec: ModelSpec, weights, onnx_path: Path) -> bool:
    """model.onnx written from numpy weights (no torch); True when it has the ``logits`` output. What
    the graph writer cannot do (the ``vgg`` head at an input size not a multiple of 224) is one line."""
    import onnx

    from retrieval.nets.onnx_graph import build_onnx  # lazy: keeps the command line's start light

    try:
        model = build_onnx(spec, weights.state)
    except ValueError as e:
        raise UserError(f"cannot write the model without torch: {e}") from None
    onnx.save(model, str(onnx_path))
    return bool(spec.head)


def _write_torch_onnx(spec: ModelSpec, net, onnx_path: Path) -> bool:
    """model.onnx from a torch network; True when it has the ``logits`` output."""
    import torch

    dynamic = spec.input_policy != "square"
    h, w = max(
        spec.input_shapes(), key=lambda hw: (hw[0] != hw[1], hw[0] * hw[1])
    )  # oblong when there is one
    example = (
        torch.zeros(2, h, w, 3, dtype=torch.uint8),
        torch.tensor([[h, w], [h // 2, w]], dtype=torch.int64),
    )
    with_logits = getattr(net, "head", None) is not None
    if with_logits:
        from retrieval.nets.model import BothOutputs  # lazy: loads torch only when used

        _export_onnx(BothOutputs(net.eval()).eval(), example, onnx_path, ("descriptor", "logits"), dynamic)
    else:
        _export_onnx(net.eval(), example, onnx_path, dynamic=dynamic)
    return with_logits


def replace_dir(new: Path, dst: Path) -> None:
    """Put the complete folder ``new`` in the place of ``dst`` (renames: a reader sees the old
    folder or the new one; a kill between the two renames leaves ``dst.old`` and no ``dst``)."""
    if dst.exists():
        old = dst.with_name(dst.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
        os.replace(new, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, dst)


def _export_onnx(net, example, onnx_path: Path, outputs=("descriptor",), dynamic: bool = False) -> None:
    """TorchScript-based exporter (about 1 s here, against 8-12 s for the dynamo exporter); the
    dynamo exporter (needs onnxscript) where the TorchScript one is gone or fails. ``dynamic``: the
    image's height and width are dynamic axes too (the buckets input policy)."""
    import warnings

    import torch

    names = dict(input_names=["image", "size"], output_names=list(outputs))
    with torch.no_grad():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    net,
                    example,
                    str(onnx_path),
                    opset_version=OPSET,
                    dynamo=False,
                    dynamic_axes={
                        "image": {0: "batch", **({1: "height", 2: "width"} if dynamic else {})},
                        "size": {0: "batch"},
                        **{o: {0: "batch"} for o in outputs},
                    },
                    **names,
                )
            return
        except Exception:
            if onnx_path.exists():
                onnx_path.unlink()
        batch = torch.export.Dim("batch", min=1, max=4096)
        image_dims = {0: batch}
        if dynamic:
            image_dims.update(
                {
                    1: torch.export.Dim("height", min=16, max=4096),
                    2: torch.export.Dim("width", min=16, max=4096),
                }
            )
        torch.onnx.export(
            net,
            example,
            str(onnx_path),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            dynamic_shapes={"image": image_dims, "size": {0: batch}},
            **names,
        )


def read_sidecar(model_dir: str | os.PathLike) -> tuple[ModelSpec, dict]:
    data = json.loads((Path(model_dir) / SIDECAR).read_text())
    return ModelSpec.from_dict(data["spec"]), data
