"""The descriptor network written directly as an ONNX graph from numpy weights: no PyTorch needed.

More: docs/design-notes.md (``retrieval.nets.onnx_graph``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from retrieval.spec import DEFAULT_SCALES, ModelSpec

MAX_SIDE = 4096  # longer than any input side (a bucket at the largest input size 2048 is 2720 long)

OPSET = 18
FEATURE_STRIDE = 16  # conv5 (before the last max-pool) is 1/16 of the input, as in retrieval.nets.model
RMAC_LEVELS, RMAC_EPS = 3, 1e-6  # as in retrieval.nets.model
BN_EPS = 1e-5
# torchvision's VGG layer lists ("M" = 2x2 max-pool, ints = conv widths)
VGG_CFGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}
_ARCH_CFG = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def layer_list(arch: str, widths=None) -> list:
    """torchvision's layer list of ``arch`` with ``widths`` overriding the conv widths (pruned models)."""
    cfg = list(VGG_CFGS[_ARCH_CFG[arch.removesuffix("_bn")]])
    if widths is not None:
        it = iter(int(w) for w in widths)
        cfg = [v if v == "M" else next(it) for v in cfg]
    return cfg


@dataclass
class _Graph:
    """Nodes and initializers under construction, with unique names."""

    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    n: int = 0

    def name(self, stem: str) -> str:
        self.n += 1
        return f"{stem}_{self.n}"

    def const(self, value, stem: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(
        self, kind: str, inputs: list[str], stem: str | None = None, outputs: list[str] | None = None, **attrs
    ) -> str:
        from onnx import helper

        outs = outputs or [self.name(stem or kind.lower())]
        self.nodes.append(helper.make_node(kind, inputs, outs, name=self.name(f"n_{kind}"), **attrs))
        return outs[0]


def _conv_params(state: dict, index: int, batch_norm: bool) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of the conv at ``features.{index}``, with its batch norm folded in."""
    w = np.asarray(state[f"features.{index}.weight"], np.float32)
    b = np.asarray(state[f"features.{index}.bias"], np.float32)
    if batch_norm:
        p = f"features.{index + 1}."
        scale = np.asarray(state[p + "weight"], np.float32) / np.sqrt(
            np.asarray(state[p + "running_var"], np.float32) + BN_EPS
        )
        w = w * scale[:, None, None, None]
        b = (b - np.asarray(state[p + "running_mean"], np.float32)) * scale + np.asarray(
            state[p + "bias"], np.float32
        )
    return w, b


def _prepare(g: _Graph, spec: ModelSpec) -> tuple[str, str, str]:
    """uint8 NHWC -> normalised float NCHW with padded pixels zeroed; also the valid h and w [N,1,1,1]."""
    s = spec.input_size
    x = g.op("Transpose", [g.op("Cast", ["image"], to=1)], perm=[0, 3, 1, 2])
    mean = (np.array(spec.mean, np.float32) * 255.0).reshape(1, 3, 1, 1)
    std = (np.array(spec.std, np.float32) * 255.0).reshape(1, 3, 1, 1)
    x = g.op("Div", [g.op("Sub", [x, g.const(mean, "mean")]), g.const(std, "std")])
    shape = g.const(np.array([-1, 1, 1, 1], np.int64), "shape")
    valid_h = g.op(
        "Reshape",
        [
            g.op(
                "Slice",
                [
                    "size",
                    g.const(np.array([0], np.int64)),
                    g.const(np.array([1], np.int64)),
                    g.const(np.array([1], np.int64)),
                ],
            ),
            shape,
        ],
        "valid_h",
    )
    valid_w = g.op(
        "Reshape",
        [
            g.op(
                "Slice",
                [
                    "size",
                    g.const(np.array([1], np.int64)),
                    g.const(np.array([2], np.int64)),
                    g.const(np.array([1], np.int64)),
                ],
            ),
            shape,
        ],
        "valid_w",
    )
    mask = _mask(g, valid_h, valid_w, s, s, 1, like=x if _dynamic(spec) else None)
    return g.op("Mul", [x, mask]), valid_h, valid_w


def _dynamic(spec: ModelSpec) -> bool:
    """The buckets policy: height and width come with each batch (one graph for every bucket)."""
    return spec.input_policy != "square"


def _mask(g: _Graph, valid_h: str, valid_w: str, h: int, w: int, stride: int, like: str | None = None) -> str:
    """float [N,1,h,w]: 1 where row*stride < valid_h and col*stride < valid_w. With ``like`` (a
    [N,C,H,W] tensor of a dynamic-shape graph) h and w are that tensor's, read at run time."""
    if like is not None:
        h = w = MAX_SIDE // stride  # index ranges long enough for any input, cut to the map's size
    rows = g.const((np.arange(h, dtype=np.int64) * stride).reshape(1, 1, h, 1), "rows")
    cols = g.const((np.arange(w, dtype=np.int64) * stride).reshape(1, 1, 1, w), "cols")
    if like is not None:
        shape = g.op("Shape", [like])
        for axis in (2, 3):
            n = g.op("Slice", [shape, g.const(_ints(axis)), g.const(_ints(axis + 1))])
            cut = g.op("Slice", [rows if axis == 2 else cols, g.const(_ints(0)), n, g.const(_ints(axis))])
            rows, cols = (cut, cols) if axis == 2 else (rows, cut)
    inside = g.op("And", [g.op("Less", [rows, valid_h]), g.op("Less", [cols, valid_w])])
    return g.op("Cast", [inside], to=1)


def _trunk(g: _Graph, x: str, spec: ModelSpec, state: dict) -> tuple[str, int, int]:
    """The conv layers up to the last block's ReLU (the final max-pool dropped); (output, width, side)."""
    batch_norm = spec.arch.endswith("_bn")
    cfg = layer_list(spec.arch, spec.widths)
    index, side, width = 0, spec.input_size, 3
    for i, v in enumerate(cfg):
        if v == "M":
            if i == len(cfg) - 1:
                break
            x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
            side //= 2
            index += 1
            continue
        w, b = _conv_params(state, index, batch_norm)
        if w.shape[:2] != (v, width):
            raise ValueError(
                f"features.{index}.weight has shape {tuple(w.shape)}, the model needs ({v}, {width}, 3, 3)"
            )
        x = g.op(
            "Conv",
            [x, g.const(w, f"features_{index}_w"), g.const(b, f"features_{index}_b")],
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        )
        x = g.op("Relu", [x])
        index += 3 if batch_norm else 2
        width = v
    return x, width, side


def _pool(g: _Graph, f: str, spec: ModelSpec, valid_h: str, valid_w: str, side: int) -> str:
    """Masked global pooling of the conv5 map [N,C,side,side] -> [N,C] (not normalised)."""
    mask = _mask(g, valid_h, valid_w, side, side, FEATURE_STRIDE, like=f if _dynamic(spec) else None)
    axes = g.const(np.array([2, 3], np.int64), "axes")
    if spec.pooling == "rmac":
        return _rmac(g, f, valid_h, valid_w, side, dynamic=_dynamic(spec))
    if spec.pooling == "mac":
        return g.op("ReduceMax", [g.op("Mul", [f, mask]), axes], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [mask, axes], keepdims=0), g.const(np.float32(1.0))])
    if spec.pooling == "gem":
        p = float(spec.gem_p)
        powered = g.op("Pow", [g.op("Max", [f, g.const(np.float32(1e-6))]), g.const(np.float32(p))])
        mean = g.op("Div", [g.op("ReduceSum", [g.op("Mul", [powered, mask]), axes], keepdims=0), count])
        return g.op("Pow", [mean, g.const(np.float32(1.0 / p))])
    return g.op("Div", [g.op("ReduceSum", [g.op("Mul", [f, mask]), axes], keepdims=0), count])


def _ints(*values) -> np.ndarray:
    return np.array(values, np.int64)


def _region_bands(
    g: _Graph, cells: str, longer: str, side: str, level: int, length: int, cut: str | None = None
) -> tuple[str, str]:
    """retrieval.nets.model._region_bands: (masks float [N, level+1, length], active bool [N, level+1]) of
    one R-MAC level along one axis; ``cells``, ``side`` int64 [N,1], ``longer`` bool [N,1]. ``cut``
    (int64 [1], a dynamic-shape graph's map length along the axis): the masks' length, read at run time."""
    k = g.const(np.arange(level + 1, dtype=np.int64).reshape(1, -1), "k")
    count = g.op("Add", [g.const(_ints(level)), g.op("Cast", [longer], to=7)])
    step = g.op(
        "Div",
        [
            g.op("Cast", [g.op("Sub", [cells, side])], to=1),
            g.op("Cast", [g.op("Max", [g.op("Sub", [count, g.const(_ints(1))]), g.const(_ints(1))])], to=1),
        ],
    )
    half = g.op("Sub", [g.op("Div", [side, g.const(_ints(2))]), g.const(_ints(1))])
    start = g.op("Add", [g.op("Cast", [half], to=1), g.op("Mul", [g.op("Cast", [k], to=1), step])])
    start = g.op("Sub", [g.op("Cast", [g.op("Floor", [start])], to=7), half])  # [N, level+1]
    idx = g.const(np.arange(length, dtype=np.int64).reshape(1, 1, length), "idx")
    two = g.const(_ints(2))
    if cut is not None:
        idx = g.op("Slice", [idx, g.const(_ints(0)), cut, two])
    inside = g.op(
        "And",
        [
            g.op("GreaterOrEqual", [idx, g.op("Unsqueeze", [start, two])]),
            g.op("Less", [idx, g.op("Unsqueeze", [g.op("Add", [start, side]), two])]),
        ],
    )
    return g.op("Cast", [inside], to=1), g.op("Less", [k, count])


def _rmac(g: _Graph, f: str, valid_h: str, valid_w: str, side: int, dynamic: bool = False) -> str:
    """retrieval.nets.model.rmac of the conv5 map [N,C,side,side] over its valid cells -> [N,C].
    ``dynamic`` (the buckets policy): the map is [N,C,H,W] with H and W read at run time."""
    flat = g.const(_ints(-1, 1), "shape")
    if dynamic:
        shape = g.op("Shape", [f])
        dims = [g.op("Slice", [shape, g.const(_ints(axis)), g.const(_ints(axis + 1))]) for axis in (2, 3)]
        length, cuts = MAX_SIDE // FEATURE_STRIDE, dims
    else:
        dims, length, cuts = [g.const(_ints(side))] * 2, side, [None, None]
    stride = g.const(_ints(FEATURE_STRIDE))
    ceil = [
        g.op("Div", [g.op("Add", [v, g.const(_ints(FEATURE_STRIDE - 1))]), stride])
        for v in (valid_h, valid_w)
    ]
    cells = [
        g.op("Reshape", [g.op("Min", [c, dim]), flat]) for c, dim in zip(ceil, dims)
    ]  # valid cells per axis
    short = g.op("Min", cells)
    total = None
    for level in range(1, RMAC_LEVELS + 1):
        size = g.op(
            "Max",
            [
                g.op("Div", [g.op("Mul", [short, g.const(_ints(2))]), g.const(_ints(level + 1))]),
                g.const(_ints(1)),
            ],
        )
        rows, rows_on = _region_bands(
            g, cells[0], g.op("Greater", [cells[0], cells[1]]), size, level, length, cuts[0]
        )
        cols, cols_on = _region_bands(
            g, cells[1], g.op("Greater", [cells[1], cells[0]]), size, level, length, cuts[1]
        )
        rows = g.op("Unsqueeze", [rows, g.const(_ints(2, 4))])  # [N, R, 1, H, 1]
        cols = g.op("Unsqueeze", [cols, g.const(_ints(1, 3))])  # [N, 1, R, 1, W]
        by_rows = g.op(
            "ReduceMax",
            [g.op("Mul", [g.op("Unsqueeze", [f, g.const(_ints(1))]), rows]), g.const(_ints(3))],
            keepdims=0,
        )  # [N, R, C, W]
        regions = g.op(
            "ReduceMax",
            [g.op("Mul", [g.op("Unsqueeze", [by_rows, g.const(_ints(2))]), cols]), g.const(_ints(4))],
            keepdims=0,
        )  # [N, R, R, C]
        norm = g.op(
            "Max", [g.op("ReduceL2", [regions, g.const(_ints(3))], keepdims=1), g.const(np.float32(RMAC_EPS))]
        )
        on = g.op(
            "And",
            [
                g.op("Unsqueeze", [rows_on, g.const(_ints(2))]),
                g.op("Unsqueeze", [cols_on, g.const(_ints(1))]),
            ],
        )
        weight = g.op("Unsqueeze", [g.op("Cast", [on], to=1), g.const(_ints(3))])  # [N, R, R, 1]
        level_sum = g.op(
            "ReduceSum",
            [g.op("Mul", [g.op("Div", [regions, norm]), weight]), g.const(_ints(1, 2))],
            keepdims=0,
        )
        total = level_sum if total is None else g.op("Add", [total, level_sum])
    return total


def _linear(g: _Graph, x: str, state: dict, prefix: str) -> str:
    w = np.asarray(state[prefix + ".weight"], np.float32)
    b = np.asarray(state[prefix + ".bias"], np.float32)
    return g.op(
        "Gemm",
        [x, g.const(w, prefix.replace(".", "_") + "_w"), g.const(b, prefix.replace(".", "_") + "_b")],
        transB=1,
    )


def _head(g: _Graph, spec: ModelSpec, f: str, pooled: str, side: int, state: dict) -> str:
    """Class scores of the ``gap-linear`` or ``vgg`` head (retrieval.nets.heads), inference mode."""
    if spec.head == "gap-linear":
        return _linear(g, pooled, state, "head.fc")
    if spec.head != "vgg":
        raise ValueError(f"unknown head {spec.head!r}")
    x = g.op("MaxPool", [f], kernel_shape=[2, 2], strides=[2, 2])
    side //= 2
    if side % 7:
        raise ValueError(
            f"the vgg head needs a conv5 map divisible by 7 after pooling (input {spec.input_size} "
            f"gives {side}); use an input size that is a multiple of 224"
        )
    if side != 7:  # AdaptiveAvgPool2d((7, 7)) of an evenly divisible map is a plain average pool
        k = side // 7
        x = g.op("AveragePool", [x], kernel_shape=[k, k], strides=[k, k])
    x = g.op("Flatten", [x], axis=1)
    x = g.op("Relu", [_linear(g, x, state, "head.classifier.0")])
    x = g.op("Relu", [_linear(g, x, state, "head.classifier.3")])
    return _linear(g, x, state, "head.classifier.6")


def build_onnx(spec: ModelSpec, state: dict):
    """The ONNX ModelProto of ``spec`` with weights ``state`` (see the module doc)."""
    from onnx import TensorProto, checker, helper

    if tuple(spec.scales) != DEFAULT_SCALES or (_dynamic(spec) and spec.head == "vgg"):
        raise ValueError(
            f"the torch-free graph has one scale, and no vgg head with the buckets policy; "
            f"{spec.describe()} needs torch (pip install 'vgg-retrieval[train]')"
        )
    g = _Graph()
    x, valid_h, valid_w = _prepare(g, spec)
    f, width, side = _trunk(g, x, spec, state)
    if width != spec.descriptor_dim:
        raise ValueError(
            f"the last conv has {width} channels, the spec's descriptor has {spec.descriptor_dim}"
        )
    pooled = _pool(g, f, spec, valid_h, valid_w, side)
    norm = g.op(
        "Max",
        [
            g.op("ReduceL2", [pooled, g.const(np.array([1], np.int64))], keepdims=1),
            g.const(np.float32(1e-12)),
        ],
    )
    g.op("Div", [pooled, norm], outputs=["descriptor"])
    outputs = [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["batch", spec.descriptor_dim])]
    if spec.head:
        g.op("Identity", [_head(g, spec, f, pooled, side, state)], outputs=["logits"])
        outputs.append(
            helper.make_tensor_value_info(
                "logits", TensorProto.FLOAT, ["batch", max(1, len(spec.class_names))]
            )
        )
    s = spec.input_size
    hw = ["height", "width"] if _dynamic(spec) else [s, s]
    inputs = [
        helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", *hw, 3]),
        helper.make_tensor_value_info("size", TensorProto.INT64, ["batch", 2]),
    ]
    graph = helper.make_graph(g.nodes, "vgg_retrieval_descriptor", inputs, outputs, g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="vgg-retrieval"
    )
    model.ir_version = min(model.ir_version, 9)  # readable by older ONNX Runtime/OpenVINO builds
    checker.check_model(model)
    return model
