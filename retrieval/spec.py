"""ModelSpec: everything that determines which descriptor a model produces.

A spec is plain data (JSON-serialisable, no torch import), so the index side can compare the model that
built an index with the one a user asks for, and the exported model carries it in its JSON sidecar.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field

ARCHS = ("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn")
POOLINGS = ("gap", "mac", "gem", "rmac")
INPUT_POLICIES = ("square", "buckets")
# New models: shape buckets at the pixel budget of a 224 square, GeM (p=3) pooling. Chosen by
# benchmarks/retrieval_quality.py (README "Descriptor quality"): at the compute of the old padded
# 224 square, +0.05-0.07 mAP on paris5, and every other set as good or better.
DEFAULT_INPUT_POLICY = "buckets"
DEFAULT_POOLING = "gem"
DEFAULT_SCALES = (1.0,)
# The aspect ratios (width / height) of the "buckets" input policy; each becomes one fixed input
# shape (H, W), both multiples of BUCKET_MULTIPLE, with H * W <= input_size ** 2 (``bucket_shapes``).
BUCKET_ASPECTS = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16)
BUCKET_MULTIPLE = 16  # the conv5 stride: every bucket maps to whole feature cells
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Chosen by benchmarks/input_size.py: see the README ("Input size").
DEFAULT_INPUT_SIZE = 224
SPEC_FORMAT = 1
# New models trim uniform borders (benchmarks/dedup_eval.py: border and screenshot copies, docs/dedup.md).
DEFAULT_TRIM_BORDERS = True


@dataclass(frozen=True)
class ModelSpec:
    """What a descriptor model is. Two specs with the same ``model_id`` give the same descriptors."""

    arch: str = "vgg16"
    # The dataclass defaults are the original model (GAP, square) so that partial and old spec dicts
    # keep their meaning; a new model takes DEFAULT_POOLING / DEFAULT_INPUT_POLICY (retrieval.nets.builder).
    pooling: str = "gap"
    gem_p: float = 3.0
    # Input policy "square": the longer side is resized to input_size (aspect ratio kept) and the
    # image is padded to input_size x input_size; pooling ignores the padded cells, so every image has
    # one fixed tensor shape (fast in OpenVINO) without distorting or cropping it.
    # "buckets": a pixel budget of input_size ** 2; the image goes to the bucket (BUCKET_ASPECTS,
    # ``bucket_shapes``) whose aspect is nearest its own, resized (aspect kept) to fit inside it and
    # padded by the small remainder: a handful of fixed shapes, far less padding. Specs stored before
    # the field existed load as "square", which is left out of model_id (old ids unchanged).
    input_size: int = DEFAULT_INPUT_SIZE
    input_policy: str = "square"
    # Multi-scale descriptors: the input is also run at each further scale (resized inside the
    # graph), each scale's pooled vector L2-normalised, summed, normalised again. (1.0,) = one scale,
    # left out of model_id.
    scales: tuple[float, ...] = DEFAULT_SCALES
    # Cut near-uniform border bands (solid padding, letterboxing, a screenshot's canvas and bars)
    # off the picture before the network; see retrieval.preprocess (trim_prepared), applied by every
    # engine in Embedder.embed_batch. Specs stored before this field existed
    # load with False (their old behaviour), and False is left out of model_id, so the model ids of
    # existing indexes do not change.
    trim_borders: bool = DEFAULT_TRIM_BORDERS
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Where the weights came from (a name like IMAGENET1K_V1, "random", or an absolute file path)
    # and a fingerprint of the tensors actually loaded into the descriptor trunk.
    weights: str = "IMAGENET1K_V1"
    weights_sha256: str = ""
    # sha256 of the weights file's bytes (what `sha256sum FILE` prints), "" for named torchvision
    # weights; for display only, so left out of model_id (the same tensors in a .pth or a .safetensors
    # file give the same model), and out of to_dict when "" (specs stored before it read the same).
    weights_file_sha256: str = ""
    # Conv widths when they differ from the architecture's (pruned models; later issues).
    widths: tuple[int, ...] | None = None
    class_names: tuple[str, ...] = field(default_factory=tuple)
    descriptor_dim: int = 512
    # Classifier head on the pooled conv features ("" none, "gap-linear", "vgg"); like class_names it
    # does not change the descriptors, so it is left out of model_id.
    head: str = ""

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of {', '.join(POOLINGS)}")
        if not 32 <= int(self.input_size) <= 2048:
            raise ValueError(f"input size {self.input_size} is out of range (32..2048)")
        if self.input_policy not in INPUT_POLICIES:
            raise ValueError(
                f"unknown input policy {self.input_policy!r}; choose one of {', '.join(INPUT_POLICIES)}"
            )
        scales = tuple(float(x) for x in self.scales)
        object.__setattr__(self, "scales", scales)
        if (
            not scales
            or scales[0] != 1.0
            or len(set(scales)) != len(scales)
            or not all(0.25 <= float(x) <= 1.0 for x in scales)
        ):
            raise ValueError(
                f"scales {list(scales)}: the first must be 1.0, the others distinct, in 0.25..1.0"
            )
        if self.head == "vgg" and self.input_policy != "square":
            # torchvision's fc6 takes a 7x7 map; its adaptive pooling of other shapes does not export
            raise ValueError(
                "a model with torchvision's classifier (the vgg head) takes the square input policy"
            )

    @property
    def input_geometry(self) -> "int | InputBuckets":
        """What ``retrieval.preprocess.prepare``/``load_and_prepare`` take as ``size`` for this model:
        ``input_size`` (an int) for the square policy, an ``InputBuckets`` for buckets."""
        return InputBuckets(int(self.input_size)) if self.input_policy == "buckets" else int(self.input_size)

    def input_shapes(self) -> tuple[tuple[int, int], ...]:
        """Every (H, W) input shape the model is fed."""
        s = int(self.input_size)
        return bucket_shapes(s) if self.input_policy == "buckets" else ((s, s),)

    @property
    def model_id(self) -> str:
        """A short hash of every field that changes the descriptors (not where weights came from)."""
        d = self.to_dict()
        d.pop("weights")
        d.pop("weights_file_sha256", None)
        d.pop("class_names")
        d.pop("head")
        if not d["trim_borders"]:  # hashed as before the field existed: old indexes keep their model_id
            d.pop("trim_borders")
        if d["input_policy"] == "square":  # likewise
            d.pop("input_policy")
        if tuple(d["scales"]) == DEFAULT_SCALES:
            d.pop("scales")
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe(self) -> str:
        """One line: architecture, pooling, input, the weights (a file by its name: ``weights`` holds
        the full path), the hash of their tensors (not of the file: see ``weights_file_sha256``)."""
        w = os.path.basename(self.weights) if os.path.isabs(self.weights) else self.weights
        trim = "+trim" if self.trim_borders else ""
        policy = "" if self.input_policy == "square" else f"/{self.input_policy}"
        scales = "" if tuple(self.scales) == DEFAULT_SCALES else "x" + ",".join(f"{x:g}" for x in self.scales)
        return (
            f"{self.arch}/{self.pooling}@{self.input_size}{policy}{scales}{trim} weights={w} "
            f"(tensors sha256 {self.weights_sha256[:12]}, model id {self.model_id})"
        )

    def describe_weights(self) -> str:
        """The weights in full: where they came from, the file's sha256 (compare with ``sha256sum``)
        when they came from a file, and the sha256 of their tensors (what ``model_id`` depends on)."""
        file = f"file sha256 {self.weights_file_sha256}, " if self.weights_file_sha256 else ""
        return f"{self.weights} ({file}tensors sha256 {self.weights_sha256})"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["widths"] = list(self.widths) if self.widths is not None else None
        d["scales"] = [float(x) for x in self.scales]
        d["class_names"] = list(self.class_names)
        if not self.weights_file_sha256:
            del d["weights_file_sha256"]
        d["format"] = SPEC_FORMAT
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        d = dict(d)
        d.pop("format", None)
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["trim_borders"] = bool(d.get("trim_borders", False))  # absent: a spec from before the field
        for key in ("mean", "std", "class_names"):
            if key in d and d[key] is not None:
                d[key] = tuple(d[key])
        if d.get("widths") is not None:
            d["widths"] = tuple(d["widths"])
        d["input_policy"] = d.get("input_policy") or "square"  # absent: a spec from before the field
        d["scales"] = tuple(float(x) for x in (d.get("scales") or DEFAULT_SCALES))
        return cls(**d)

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)


BUCKET_ASPECT_TOLERANCE = 0.04  # a bucket's W/H may miss its nominal aspect by this (log ratio)
BUCKET_MIN_FILL = 0.6  # a bucket using less of the budget is left out (small sizes): its neighbours serve


def _bucket_shape(budget: int, aspect: float) -> tuple[int, int]:
    """The largest (H, W), multiples of BUCKET_MULTIPLE with H * W <= budget, whose W / H is within
    BUCKET_ASPECT_TOLERANCE of ``aspect`` (the nearest aspect when none is)."""
    import math

    m = BUCKET_MULTIPLE
    candidates = []
    for h in range(m, int((budget / aspect) ** 0.5) + 2 * m, m):
        for w in (max(m, int(h * aspect // m) * m), max(m, -(-int(h * aspect) // m) * m)):
            if h * w <= budget:
                candidates.append((abs(math.log(w / h / aspect)), h, w))
    if not candidates:
        return m, m
    close = [c for c in candidates if c[0] <= BUCKET_ASPECT_TOLERANCE]
    if close:
        _, h, w = max(close, key=lambda c: (c[1] * c[2], -c[0]))
    else:
        _, h, w = min(candidates)
    return h, w


@functools.lru_cache(maxsize=64)  # asked for every photo (``InputBuckets.shape_for``); ~1.7 ms to work out
def bucket_shapes(size: int) -> tuple[tuple[int, int], ...]:
    """The (H, W) input shapes of the buckets policy at a pixel budget of ``size ** 2``: one per
    BUCKET_ASPECTS entry (duplicates merged, and ones under BUCKET_MIN_FILL of the budget left out, as
    at small sizes; 1:1 is always there), both sides multiples of BUCKET_MULTIPLE, H * W <= size ** 2."""
    shapes = []
    for aspect in BUCKET_ASPECTS:  # portrait buckets mirror the landscape ones
        h, w = _bucket_shape(int(size) * int(size), max(aspect, 1 / aspect))
        shape = (h, w) if aspect >= 1 else (w, h)
        if (aspect == 1 or h * w >= BUCKET_MIN_FILL * size * size) and shape not in shapes:
            shapes.append(shape)
    return tuple(shapes)


@dataclass(frozen=True)
class InputBuckets:
    """The buckets input policy at ``size ** 2`` pixels (``ModelSpec.input_geometry``); plain data, so
    it travels to decoding processes like the int of the square policy."""

    size: int

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        return bucket_shapes(self.size)

    def shape_for(self, width: float, height: float) -> tuple[int, int]:
        """The (H, W) bucket whose aspect (W / H) is nearest to ``width / height`` in log ratio."""
        import math

        r = math.log(max(0.5, width) / max(0.5, height))
        return min(self.shapes, key=lambda hw: abs(math.log(hw[1] / hw[0]) - r))
