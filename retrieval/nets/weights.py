"""Finding and loading weights for the descriptor trunk.

More: docs/design-notes.md (``retrieval.nets.weights``)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.errors import UserError, one_line
from retrieval.files import file_sha256
from retrieval.torch_extra import INSTALL_HINT, require_torch, torch_available

from .hub_weights import download, hub_repo, timm_to_torchvision
from .onnx_graph import layer_list

ENV_VAR = "VGG_RETRIEVAL_WEIGHTS"
DEFAULT_WEIGHTS = "IMAGENET1K_V1"
RANDOM = "random"
CHECKPOINT_FORMAT = "vgg-retrieval-checkpoint"
RANDOM_SEED = 0


@dataclass
class LoadedWeights:
    source: str  # the name, or the absolute path of the file
    features: dict  # "features.N.weight" -> tensor, only the conv trunk
    extra: dict  # whatever else the file carried (a checkpoint's spec, training state...)
    head: dict = field(default_factory=dict)  # "head.*" tensors of a checkpoint with a classifier
    # a torchvision classifier kept as the ``vgg`` head (``head`` holds it): its category names from
    # torchvision's metadata, or () when the file did not say (see ``classifier_names``)
    vgg_classifier: bool = False
    categories: tuple = ()
    file_sha256: str = ""  # sha256 of the file's bytes (what `sha256sum` prints); "" for torchvision names


def requested_weights(weights: str | None) -> str:
    return weights or os.environ.get(ENV_VAR) or DEFAULT_WEIGHTS


def _looks_like_path(s: str) -> bool:
    if s.startswith("hf:"):
        return False
    return (
        os.sep in s
        or s.startswith(".")
        or s.endswith((".pth", ".pt", ".ckpt", ".bin", ".safetensors"))
        or os.path.exists(s)
    )


def load_weights(arch: str, weights: str | None = None, widths=None) -> LoadedWeights:
    """Resolve ``weights`` (see module doc) and return the trunk tensors for ``arch`` (with conv
    ``widths`` for a pruned trunk; a checkpoint's own spec gives them when not passed)."""
    name = requested_weights(weights)
    if name == RANDOM:
        require_torch("--weights random")
        import torch

        from .model import build_trunk  # lazy: loads torch only when used

        torch.manual_seed(RANDOM_SEED)
        trunk = build_trunk(arch)
        return LoadedWeights(RANDOM, {f"features.{k}": v for k, v in trunk.state_dict().items()}, {})
    if _looks_like_path(name):
        return _in_backend(_load_file(arch, Path(name), widths))
    repo = hub_repo(arch, name)
    if torch_available() and not name.startswith("hf:"):
        return _load_torchvision(arch, name)
    if repo is None:
        raise UserError(
            f"weights {name!r} for {arch} need torch ({INSTALL_HINT}); without it use "
            f"IMAGENET1K_V1, hf:OWNER/REPO or a .safetensors file"
        )
    loaded = _load_file(arch, download(repo, ENV_VAR), widths)
    return _in_backend(dataclasses.replace(loaded, source=name))


def _in_backend(loaded: LoadedWeights) -> LoadedWeights:
    """``loaded`` with numpy arrays (from safetensors) turned into torch tensors where torch is here."""
    if not torch_available():
        return loaded
    import torch

    def convert(d: dict) -> dict:
        return {k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for k, v in d.items()}

    return dataclasses.replace(loaded, features=convert(loaded.features), head=convert(loaded.head))


def _load_torchvision(arch: str, name: str) -> LoadedWeights:
    from torchvision import models as tvm

    hint = (
        f"pass --weights PATH to a local .pth (a torchvision VGG state_dict or a vgg-retrieval "
        f"checkpoint), or set {ENV_VAR}"
    )
    try:
        enum = tvm.get_model_weights(arch)
        w = enum[name]
    except KeyError:
        raise UserError(
            f"unknown weights name {name!r} for {arch}: use IMAGENET1K_V1, 'random', or a file path"
        ) from None
    try:
        sd = w.get_state_dict(progress=True, check_hash=True)
    except Exception as e:  # no network, blocked host, bad cache file...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"could not get torchvision weights {arch}.{name} ({reason}): {hint}") from None
    head = _vgg_classifier(arch, sd)
    categories = tuple(w.meta.get("categories") or ()) if head else ()
    return LoadedWeights(name, _trunk_tensors(arch, sd, name), {}, head, bool(head), categories)


def torch_load(path: Path, what: str):
    """``torch.load`` with ``weights_only=True`` (no code runs from the file) on the CPU; a file that
    is not such a pickle is one line: "cannot load WHAT PATH: reason"."""
    if not torch_available():
        raise UserError(f"{path}: reading .pth needs torch: {INSTALL_HINT} or convert to safetensors")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"cannot load {what} {path}: {first[:200]}") from None


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file (a little-endian header length, then JSON)."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def read_safetensors(path: Path) -> dict:
    """The tensors of a safetensors file as numpy arrays, timm's VGG names turned into torchvision's."""
    from safetensors.numpy import load_file

    try:
        return timm_to_torchvision(load_file(str(path)))
    except Exception as e:
        raise UserError(f"cannot load weights from {path}: {one_line(e)}") from None


def _is_array(v) -> bool:
    """A torch tensor or a numpy array (not the plain data a checkpoint also carries)."""
    return isinstance(v, np.ndarray) or type(v).__module__.startswith("torch")


def _float32(v):
    if isinstance(v, np.ndarray):
        return v.astype(np.float32, copy=False) if v.dtype.kind == "f" else v
    return v.float() if v.is_floating_point() else v


def _load_file(arch: str, path: Path, widths=None) -> LoadedWeights:
    if not path.exists():
        raise UserError(f"weights file not found: {path}")
    if not path.is_file():
        raise UserError(f"weights path is not a file: {path}")
    obj = read_safetensors(path) if is_safetensors(path) else torch_load(path, "weights from")
    source = str(path.resolve())
    extra: dict = {}
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        extra = {k: v for k, v in obj.items() if k != "state_dict"}
        sd = obj.get("state_dict")
        stored_arch = (extra.get("spec") or {}).get("arch")
        if stored_arch and stored_arch != arch:
            raise UserError(f"checkpoint {path} is a {stored_arch}, not a {arch}: pass --arch {stored_arch}")
        if widths is None and (extra.get("spec") or {}).get("widths"):
            widths = tuple(extra["spec"]["widths"])
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        sd = obj["state_dict"]
    elif isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        sd = obj["model"]
    else:
        sd = obj
    if not isinstance(sd, dict) or not sd:
        raise UserError(f"cannot load weights from {path}: it holds no state_dict")
    head = {k: v for k, v in sd.items() if k.startswith("head.") and _is_array(v)}
    features = _trunk_tensors(arch, sd, str(path), widths)
    digest = file_sha256(path)
    if head or extra:  # a project checkpoint: its spec says which head it has
        return LoadedWeights(source, features, extra, head, file_sha256=digest)
    classifier = _vgg_classifier(arch, sd, widths)
    return LoadedWeights(source, features, extra, classifier, bool(classifier), file_sha256=digest)


VGG_CLASSIFIER = ("classifier.0", "classifier.3", "classifier.6")  # fc6, fc7, fc8 in torchvision's VGG


def _vgg_classifier(arch: str, sd: dict, widths=None) -> dict:
    """torchvision's fc6-fc8 (``classifier.{0,3,6}``) as ``head.classifier.*`` tensors for the ``vgg``
    head; {} when the state_dict has none, or a classifier of another layout (a replaced or pruned
    one), which is left out as before: the trunk still gives descriptors."""

    def strip(k: str) -> str:
        return k[len("module.") :] if k.startswith("module.") else k

    got = {strip(k): v for k, v in sd.items() if _is_array(v) and strip(k).startswith("classifier.")}
    if set(got) != {f"{layer}.{p}" for layer in VGG_CLASSIFIER for p in ("weight", "bias")}:
        return {}
    channels = int([v for v in layer_list(arch, widths) if v != "M"][-1])
    fc6, fc7, fc8 = (got[f"{layer}.weight"] for layer in VGG_CLASSIFIER)
    fits = (
        len(fc6.shape) == len(fc7.shape) == len(fc8.shape) == 2
        and fc6.shape[1] == channels * 49
        and fc7.shape[1] == fc6.shape[0]
        and fc8.shape[1] == fc7.shape[0]
        and all(
            tuple(got[f"{layer}.bias"].shape) == (got[f"{layer}.weight"].shape[0],)
            for layer in VGG_CLASSIFIER
        )
    )
    if not fits:
        return {}
    return {"head." + k: _float32(v) for k, v in got.items()}


def classifier_outputs(head: dict) -> int:
    """How many classes a ``vgg`` head's fc8 scores."""
    return int(head["head.classifier.6.weight"].shape[0])


def classifier_names(loaded: LoadedWeights, names_file: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Class names for a kept torchvision classifier: ``names_file`` (one name per line; their count
    must match fc8's outputs), else the named weights' categories, else ImageNet's when fc8 scores
    1,000 classes, else ``class 0``, ``class 1``..."""
    n = classifier_outputs(loaded.head)
    if names_file is not None:
        return read_class_names(names_file, n)
    if len(loaded.categories) == n:
        return tuple(loaded.categories)
    if n == len(imagenet_categories()):
        return imagenet_categories()
    return tuple(f"class {i}" for i in range(n))


IMAGENET_CLASSES_FILE = Path(__file__).with_name("imagenet_classes.txt")


def imagenet_categories() -> tuple[str, ...]:
    """ImageNet-1k's class names, as torchvision's weights metadata lists them (a copy shipped with
    this package, so no torchvision is needed; tests/e2e/test_light_install.py checks it is the same)."""
    return tuple(IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines())


def read_class_names(path: str | os.PathLike, expected: int) -> tuple[str, ...]:
    """One class name per line (blank lines at the end ignored); UserError naming the file when it
    cannot be read or its count is not ``expected``."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read class names file {path}: {one_line(e)}") from None
    names = [line.strip() for line in text.rstrip().splitlines()]
    if len(names) != expected:
        raise UserError(
            f"class names file {path} has {len(names)} names; the classifier scores {expected} classes"
        )
    blank = next((i for i, name in enumerate(names) if not name), None)
    if blank is not None:
        raise UserError(f"class names file {path} line {blank + 1}: empty class name")
    return tuple(names)


def _trunk_tensors(arch: str, sd: dict, where: str, widths=None) -> dict:
    """Pick the ``features.*`` tensors of ``arch`` out of a state_dict, checking names and shapes."""
    out = {}
    for key, value in sd.items():
        if not _is_array(value):
            continue
        k = key[len("module.") :] if key.startswith("module.") else key
        if k.startswith("features."):
            out[k] = value
        elif k.split(".", 1)[0].isdigit():  # a bare trunk saved from vgg.features
            out["features." + k] = value
    expected = trunk_shapes(arch, widths)
    missing = sorted(set(expected) - set(out), key=_layer_order)
    if missing:
        convs = len({k.rsplit(".", 1)[0] for k in out if k.endswith(".weight") and len(out[k].shape) == 4})
        raise UserError(
            f"weights {where} do not fit {arch}: missing {missing[0]} "
            f"(the file has {convs} conv layers{'' if convs else '; is it a VGG state_dict?'})"
        )
    for k, shape in expected.items():
        if tuple(out[k].shape) != shape:
            raise UserError(
                f"weights {where} do not fit {arch}: {k} has shape {tuple(out[k].shape)}, expected {shape}"
            )
    return {k: _float32(out[k]) for k in expected}


def trunk_shapes(arch: str, widths=None) -> dict[str, tuple]:
    """torchvision's ``features.*`` names and shapes of ``arch``'s conv trunk (the last max-pool
    dropped, as ``retrieval.nets.model.build_trunk``), in layer order; no torch needed."""

    convs = sum(v != "M" for v in layer_list(arch))
    if widths is not None and (len(widths) != convs or min(int(w) for w in widths) < 1):
        raise ValueError(f"{arch} has {convs} conv layers; got widths {list(widths)}")
    batch_norm = arch.endswith("_bn")
    shapes, index, channels = {}, 0, 3
    for v in layer_list(arch, widths):
        if v == "M":
            index += 1
            continue
        shapes[f"features.{index}.weight"] = (v, channels, 3, 3)
        shapes[f"features.{index}.bias"] = (v,)
        if batch_norm:
            for p in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"features.{index + 1}.{p}"] = (v,)
            shapes[f"features.{index + 1}.num_batches_tracked"] = ()
        index += 3 if batch_norm else 2
        channels = v
    return shapes


def _layer_order(key: str) -> tuple:
    parts = key.split(".")
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0, key)


def fingerprint(tensors: dict) -> str:
    """sha256 over names, dtypes, shapes and bytes of ``tensors`` (order independent): torch tensors
    or numpy arrays, the same hash for the same values (dtypes are named as torch names them)."""
    h = hashlib.sha256()
    for k in sorted(tensors, key=_layer_order):
        t = tensors[k]
        if isinstance(t, np.ndarray):
            a, dtype = np.ascontiguousarray(t), f"torch.{t.dtype.name}"
        else:
            t = t.detach().cpu().contiguous()
            a, dtype = t.numpy(), str(t.dtype)
        h.update(f"{k}|{dtype}|{tuple(a.shape)}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def convert_to_safetensors(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Write the tensors of the ``.pth`` state_dict at ``src`` (read with torch) to the safetensors file
    ``dst`` (read without torch): a trunk's ``features.*``, a whole torchvision VGG's ``classifier.*``
    too (a project checkpoint's spec and training state are not carried over)."""
    require_torch(f"converting {src}")
    from safetensors.numpy import save_file

    obj = torch_load(Path(src), "weights from")
    sd = obj.get("state_dict", obj.get("model", obj)) if isinstance(obj, dict) else obj
    if not isinstance(sd, dict):
        raise UserError(f"cannot convert {src}: it holds no state_dict")
    arrays = {k: v.detach().cpu().contiguous().numpy() for k, v in sd.items() if _is_array(v)}
    save_file(arrays, str(dst))


def save_checkpoint(path: str | os.PathLike, spec, state_dict: dict, **extra) -> None:
    """Write a vgg-retrieval checkpoint: plain tensors and JSON-like data only (weights_only-safe).

    ``spec`` carries arch, conv widths, head kind, class names, normalisation, input size and
    pooling; ``state_dict`` holds ``features.*`` and, with a classifier, ``head.*``. Training adds
    ``extra`` such as ``epoch``, ``optimizer``, ``scheduler``, ``metrics``, ``best_top1``."""
    import torch

    obj = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "spec": spec.to_dict(),
        "state_dict": state_dict,
        **extra,
    }
    tmp = Path(str(path) + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def torch_load_best(path, net):
    """``net`` with the tensors of the checkpoint at ``path`` loaded over its own (unchanged when
    there is no such file, e.g. a run that wrote no best.pt)."""
    if Path(path).exists():
        ck = torch_load(Path(path), "checkpoint")
        net.load_state_dict({**net.state_dict(), **ck["state_dict"]})
    return net
