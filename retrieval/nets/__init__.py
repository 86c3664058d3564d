"""The networks: VGG descriptor nets and heads (``model``, ``heads``), building one from a spec
(``builder``), its weights from files or the hub (``weights``, ``hub_weights``), and the ONNX graph written
straight from the weights without torch (``onnx_graph``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrieval.lazy import lazy_names

if TYPE_CHECKING:  # for readers and type checkers; at run time each name loads on first use
    from .builder import GraphWeights, build, load_model, load_net
    from .heads import HEADS, build_head
    from .model import FEATURE_STRIDE, DescriptorNet, build_descriptor_net, build_trunk, trunk_widths, vgg_cfg
    from .onnx_graph import build_onnx
    from .weights import classifier_names, fingerprint, load_weights, save_checkpoint, torch_load

_NAMES = {
    "build": ".builder",
    "load_net": ".builder",
    "load_model": ".builder",
    "GraphWeights": ".builder",
    "DescriptorNet": ".model",
    "build_descriptor_net": ".model",
    "build_trunk": ".model",
    "vgg_cfg": ".model",
    "trunk_widths": ".model",
    "FEATURE_STRIDE": ".model",
    "build_head": ".heads",
    "HEADS": ".heads",
    "load_weights": ".weights",
    "fingerprint": ".weights",
    "save_checkpoint": ".weights",
    "torch_load": ".weights",
    "classifier_names": ".weights",
    "build_onnx": ".onnx_graph",
}
__getattr__ = lazy_names(__name__, _NAMES)
__all__ = [
    "DescriptorNet",
    "FEATURE_STRIDE",
    "GraphWeights",
    "HEADS",
    "build",
    "build_descriptor_net",
    "build_head",
    "build_onnx",
    "build_trunk",
    "classifier_names",
    "fingerprint",
    "load_model",
    "load_net",
    "load_weights",
    "save_checkpoint",
    "torch_load",
    "trunk_widths",
    "vgg_cfg",
]
