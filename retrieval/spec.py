"""ModelSpec: everything that determines which descriptor a model produces.

A spec is plain data (JSON-serialisable, no torch import), so the index side can compare the model that
built an index with the one a user asks for, and the exported model carries it in its JSON sidecar.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field

ARCHS = ("vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn")
POOLINGS = ("gap", "mac", "gem")
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
    pooling: str = "gap"
    gem_p: float = 3.0
    # Input policy: the longer side is resized to input_size (aspect ratio kept) and the image is
    # padded to input_size x input_size; pooling ignores the padded cells, so every image has one
    # fixed tensor shape (fast in OpenVINO) without distorting or cropping it.
    input_size: int = DEFAULT_INPUT_SIZE
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
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def describe(self) -> str:
        """One line: architecture, pooling, input, the weights (a file by its name: ``weights`` holds
        the full path), the hash of their tensors (not of the file: see ``weights_file_sha256``)."""
        w = os.path.basename(self.weights) if os.path.isabs(self.weights) else self.weights
        trim = "+trim" if self.trim_borders else ""
        return (f"{self.arch}/{self.pooling}@{self.input_size}{trim} weights={w} "
                f"(tensors sha256 {self.weights_sha256[:12]}, model id {self.model_id})")

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
        return cls(**d)

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)
