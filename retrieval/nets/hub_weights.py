"""Named weights without torch: torchvision's ImageNet VGGs as timm publishes them on the Hugging Face
hub (``timm/vgg16.tv_in1k``: "tv" = torchvision's weights, converted), read from safetensors.

More: docs/design-notes.md (``retrieval.nets.hub_weights``)."""

from __future__ import annotations

import logging
from pathlib import Path

from retrieval.errors import UserError, one_line

HUB_PREFIX = "hf:"
HUB_FILE = "model.safetensors"
# torchvision weight names -> the hub repository of the same tensors (timm's "tv_in1k" tags)
TORCHVISION_ON_HUB = {"IMAGENET1K_V1": "timm/{arch}.tv_in1k"}
# timm's classifier layers -> torchvision's (fc6, fc7, fc8)
TIMM_CLASSIFIER = {
    "pre_logits.fc1": "classifier.0",
    "pre_logits.fc2": "classifier.3",
    "head.fc": "classifier.6",
}


def hub_repo(arch: str, name: str) -> str | None:
    """The hub repository that holds weights ``name`` for ``arch`` (None: the hub has no such name)."""
    if name.startswith(HUB_PREFIX):
        return name[len(HUB_PREFIX) :]
    template = TORCHVISION_ON_HUB.get(name)
    return template.format(arch=arch) if template else None


def download(repo: str, env_var: str) -> Path:
    """The local (cached) path of ``repo``'s ``model.safetensors``; one-line UserError when it cannot be had."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise UserError(
            f"weights {HUB_PREFIX}{repo} need huggingface_hub: pip install huggingface_hub"
        ) from None
    hub_log = logging.getLogger("huggingface_hub")  # its retry warnings would add lines to the one below
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)
    try:
        return Path(hf_hub_download(repo, HUB_FILE))
    except Exception as e:  # no network, no such repository, blocked host, offline without a cached copy...
        raise UserError(
            f"could not get {HUB_FILE} of {repo} from the Hugging Face hub ({one_line(e)}): pass "
            f"--weights PATH to a local .safetensors or .pth, or set {env_var}"
        ) from None
    finally:
        hub_log.setLevel(level)


def timm_to_torchvision(state: dict) -> dict:
    """``state`` with timm's VGG classifier names and shapes turned into torchvision's; a state without
    timm's ``pre_logits.*`` is returned as it is (a project checkpoint's ``head.fc`` is not timm's)."""
    if not any(k.startswith("pre_logits.") for k in state):
        return state
    out = {}
    for key, value in state.items():
        layer, _, param = key.rpartition(".")
        if layer in TIMM_CLASSIFIER:
            key = f"{TIMM_CLASSIFIER[layer]}.{param}"
            if param == "weight" and len(value.shape) == 4:  # a conv of the flattened map: a linear layer
                value = value.reshape(value.shape[0], -1)
        out[key] = value
    return out
