"""Build a descriptor model from user choices or from a stored spec: a torch network where torch is
installed, else ``GraphWeights`` (the numpy weights ``retrieval.engines.export`` writes as an ONNX graph with
``retrieval.nets.onnx_graph``, which gives the same descriptors: tests/retrieval/test_onnx_graph.py)."""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.errors import UserError
from retrieval.spec import (
    DEFAULT_INPUT_POLICY,
    DEFAULT_INPUT_SIZE,
    DEFAULT_POOLING,
    DEFAULT_SCALES,
    ModelSpec,
)
from retrieval.torch_extra import require_torch, torch_available

from .weights import classifier_names, fingerprint, load_weights


@dataclass(frozen=True)
class GraphWeights:
    """The descriptor model without torch: ``state`` maps torchvision's names (``features.*`` and,
    with a classifier, ``head.*``) to numpy arrays; ``retrieval.engines.export.export_model`` takes it in
    place of a torch network."""

    state: dict

    def eval(self) -> "GraphWeights":
        return self


def _model(spec: ModelSpec, state: dict):
    if not torch_available():
        return GraphWeights(state)
    from .model import build_descriptor_net  # lazy: loads torch and torchvision only when used

    return build_descriptor_net(spec, state)


def build(
    arch: str = "vgg16",
    weights: str | None = None,
    pooling: str | None = None,
    input_size: int = DEFAULT_INPUT_SIZE,
    gem_p: float = 3.0,
    class_names_file=None,
    input_policy: str | None = None,
    scales=DEFAULT_SCALES,
):
    """(spec, net) for a user's choice of architecture, weights, pooling, input size and policy
    (square/buckets) and scales. Weights with torchvision's classifier (fc6-fc8) keep it as the
    ``vgg`` head; ``class_names_file`` (one name per line) names its classes (see
    ``weights.classifier_names``). ``pooling`` None: a project checkpoint's own (its classifier head
    was trained on it), else DEFAULT_POOLING. ``input_policy`` None: a project checkpoint's own, else
    DEFAULT_INPUT_POLICY; square for weights with torchvision's classifier (its fc6 takes the 7x7
    map of a square input). Without torch
    the "net" is ``GraphWeights``."""
    loaded = load_weights(arch, weights)
    ckpt_spec = loaded.extra.get("spec")
    if pooling is None:
        pooling = (
            ckpt_spec.get("pooling", DEFAULT_POOLING) if isinstance(ckpt_spec, dict) else DEFAULT_POOLING
        )
    vgg_head = (
        (bool(loaded.head) and ckpt_spec.get("head") == "vgg")
        if isinstance(ckpt_spec, dict)
        else loaded.vgg_classifier
    )
    if input_policy is None:  # a project checkpoint's own; square under torchvision's classifier
        own = (
            ckpt_spec.get("input_policy") or "square" if isinstance(ckpt_spec, dict) else DEFAULT_INPUT_POLICY
        )
        input_policy = "square" if vgg_head else own
    elif vgg_head and input_policy != "square":
        raise UserError(
            f"weights {loaded.source} carry torchvision's classifier, which takes the square input "
            f"policy: leave out --input-policy {input_policy} (or use weights without fc6-fc8)"
        )
    try:
        base = ModelSpec(
            arch=arch,
            pooling=pooling,
            input_size=input_size,
            gem_p=gem_p,
            input_policy=input_policy,
            scales=tuple(scales),
        )
    except ValueError as e:
        raise UserError(str(e)) from None
    class_names: tuple = ()
    if isinstance(ckpt_spec, dict):
        stored = ModelSpec.from_dict(ckpt_spec)
        class_names = stored.class_names
        base = base.replace(
            mean=stored.mean,
            std=stored.std,
            widths=stored.widths,
            head=stored.head,
            descriptor_dim=stored.descriptor_dim,
        )
        if not loaded.head:
            base = base.replace(head="")
    elif loaded.vgg_classifier:
        base = base.replace(head="vgg")
        class_names = classifier_names(loaded, class_names_file)
    if class_names_file is not None and not loaded.vgg_classifier:
        raise UserError(
            f"class names file {class_names_file} given, but weights {loaded.source} carry no "
            f"torchvision classifier (fc6-fc8) to name"
        )
    spec = base.replace(
        weights=loaded.source,
        weights_sha256=fingerprint(loaded.features),
        class_names=class_names,
        weights_file_sha256=loaded.file_sha256,
    )
    return spec, _model(spec, {**loaded.features, **loaded.head})


def load_net(spec: ModelSpec):
    """The torch network for a stored ``spec``, its weights checked against the fingerprint
    (UserError without torch: the torch engine, feature maps and training need it)."""
    require_torch("the torch network (the torch engine, feature maps, training)")
    return load_model(spec)


def load_model(spec: ModelSpec):
    """The model of a stored ``spec`` for exporting: a torch network, or ``GraphWeights`` without
    torch; its weights checked against the fingerprint."""
    loaded = load_weights(spec.arch, spec.weights, spec.widths)
    got = fingerprint(loaded.features)
    if spec.weights_sha256 and got != spec.weights_sha256:
        raise UserError(
            f"weights {spec.weights} changed since this model was made "
            f"(sha256 {got[:12]}, expected {spec.weights_sha256[:12]})"
        )
    state = dict(loaded.features)
    if spec.head:
        if not loaded.head:
            raise UserError(f"weights {spec.weights} carry no {spec.head} classifier head")
        state.update(loaded.head)
    return _model(spec, state)
