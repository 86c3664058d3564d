"""Video classifiers built from the VGG trunk.

More: docs/design-notes.md (``retrieval.video.models``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn

from retrieval.nets.model import FEATURE_STRIDE, DescriptorNet, build_trunk, init_vgg, trunk_widths, vgg_cfg
from retrieval.spec import ARCHS, IMAGENET_MEAN, IMAGENET_STD, ModelSpec

from .choices import FITS, MODELS, RNNS, SAMPLINGS, TIME_PADDINGS  # noqa: E402,F401

VIDEO_TASK = "video-classification"


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to rebuild a video classifier (stored in its checkpoints)."""

    model: str = "vgg3d"
    arch: str = "vgg16"
    widths: tuple[int, ...] | None = None
    class_names: tuple[str, ...] = field(default_factory=tuple)
    frames: int = 16
    input_size: int = 112
    fit: str = "crop"  # crop: short side resized + centre crop; pad: long side resized + zero pad
    sampling: str = "uniform"  # uniform over the clip, or every `stride`-th frame from the middle
    stride: int = 2
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    dropout: float = 0.5
    time_padding: str = "replicate"  # vgg3d
    rnn: str = "lstm"  # vgg-lstm
    hidden: int = 256
    rnn_layers: int = 1
    deltas: bool = True  # vgg-lstm: feed d_t and d_t - d_(t-1)
    weights: str = "random"
    weights_sha256: str = ""
    task: str = VIDEO_TASK

    def __post_init__(self) -> None:
        checks = (
            (self.model, MODELS, "model"),
            (self.arch, ARCHS, "architecture"),
            (self.rnn, RNNS, "rnn"),
            (self.time_padding, TIME_PADDINGS, "time padding"),
            (self.fit, FITS, "fit"),
            (self.sampling, SAMPLINGS, "sampling"),
        )
        for value, allowed, what in checks:
            if value not in allowed:
                raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(allowed)}")
        if not 16 <= int(self.input_size) <= 1024:
            raise ValueError(f"input size {self.input_size} is out of range (16..1024)")
        if int(self.frames) < 1 or int(self.stride) < 1 or int(self.hidden) < 1 or int(self.rnn_layers) < 1:
            raise ValueError("frames, stride, hidden and rnn layers must be >= 1")

    @property
    def conv_widths(self) -> tuple[int, ...]:
        return tuple(self.widths) if self.widths else trunk_widths(self.arch)

    def describe(self) -> str:
        w = self.weights if len(self.weights) < 50 else "..." + self.weights[-47:]
        extra = (
            f"time padding {self.time_padding}"
            if self.model == "vgg3d"
            else f"{self.rnn} {self.rnn_layers}x{self.hidden}"
        )
        return (
            f"{self.model} {self.arch} {self.frames}x{self.input_size}x{self.input_size} ({self.sampling}, "
            f"{self.fit}), {extra}, {len(self.class_names)} classes, weights={w}"
        )

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("mean", "std", "class_names"):
            d[k] = list(d[k])
        d["widths"] = list(self.widths) if self.widths is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VideoSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in dict(d).items() if k in known}
        for k in ("mean", "std", "class_names"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        if d.get("widths") is not None:
            d["widths"] = tuple(int(w) for w in d["widths"])
        return cls(**d)

    def replace(self, **changes) -> "VideoSpec":
        return dataclasses.replace(self, **changes)


class Conv3x3x3(nn.Conv3d):
    """A 3x3x3 convolution, spatial zero padding 1; in time either the end frames are repeated
    (``replicate``: exact I3D inflation on static input) or zeros are used (C3D)."""

    def __init__(self, cin: int, cout: int, time_padding: str = "replicate"):
        super().__init__(cin, cout, kernel_size=3, padding=(0, 1, 1) if time_padding == "replicate" else 1)
        self.time_padding = time_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_padding == "replicate":
            x = torch.cat([x[:, :, :1], x, x[:, :, -1:]], dim=2)
        return super().forward(x)


def time_pool_kernels(n_pools: int, frames: int) -> list[int]:
    """C3D-style temporal pooling: 1 at the first pool, then 2 while >= 2 time steps are left."""
    out, t = [], int(frames)
    for k in range(n_pools):
        kt = 2 if k > 0 and t >= 2 else 1
        out.append(kt)
        t //= kt
    return out


def build_trunk3d(arch: str, widths=None, frames: int = 16, time_padding: str = "replicate") -> nn.Sequential:
    """VGG3D's conv trunk: the same module indices as the 2D trunk (``features.N``)."""
    cfg = vgg_cfg(arch, widths)[:-1]  # up to the last conv block's ReLU, as the image trunk
    kernels = iter(time_pool_kernels(sum(v == "M" for v in cfg), frames))
    bn = arch.endswith("_bn")
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            kt = next(kernels)
            layers.append(nn.MaxPool3d(kernel_size=(kt, 2, 2), stride=(kt, 2, 2)))
            continue
        layers.append(Conv3x3x3(cin, v, time_padding))
        if bn:
            layers.append(nn.BatchNorm3d(v))
        layers.append(nn.ReLU(inplace=True))
        cin = v
    trunk = nn.Sequential(*layers)
    init_vgg(trunk, nn.Conv3d, nn.BatchNorm3d)
    return trunk


def inflate_state_dict(state_2d: dict, time_taps: int = 3) -> dict:
    """I3D inflation of a 2D VGG ``features.*`` state_dict: conv kernels [O, I, 3, 3] become
    [O, I, taps, 3, 3] = the 2D kernel repeated over time / taps; everything else is copied."""
    out = {}
    for k, v in state_2d.items():
        if k.endswith(".weight") and v.dim() == 4:
            v = v.unsqueeze(2).repeat(1, 1, time_taps, 1, 1) / time_taps
        out[k] = v
    return out


def _masked_mean(f: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Mean of ``f`` [N, C, (T,) h, w] over time and the feature cells that start inside each
    clip's valid (h, w) region (the image model's masked GAP)."""
    n, fh, fw = f.shape[0], f.shape[-2], f.shape[-1]
    shape = (n,) + (1,) * (f.dim() - 3)
    valid_h = size[:, 0].view(*shape, 1, 1)
    valid_w = size[:, 1].view(*shape, 1, 1)
    rows = torch.arange(fh, device=f.device).view(fh, 1) * FEATURE_STRIDE
    cols = torch.arange(fw, device=f.device).view(1, fw) * FEATURE_STRIDE
    mask = ((rows < valid_h) & (cols < valid_w)).to(f.dtype)
    dims = tuple(range(2, f.dim()))
    count = (mask.expand_as(f[:, :1]).sum(dim=dims)).clamp(min=1.0)
    return (f * mask).sum(dim=dims) / count


def _normalise(
    clips: torch.Tensor, size: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """uint8 [N, T, S, S, 3] -> float [N, 3, T, S, S], normalised, padded pixels zeroed."""
    x = clips.permute(0, 4, 1, 2, 3).to(torch.float32)
    x = (x - mean.view(1, 3, 1, 1, 1)) / std.view(1, 3, 1, 1, 1)
    h, w = x.shape[-2], x.shape[-1]
    rows = torch.arange(h, device=x.device).view(1, 1, 1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, 1, 1, w)
    n = x.shape[0]
    valid = (rows < size[:, 0].view(n, 1, 1, 1, 1)) & (cols < size[:, 1].view(n, 1, 1, 1, 1))
    return x * valid.to(x.dtype)


class VGG3D(nn.Module):
    """3D-convolution VGG classifier (see module doc). ``forward(clips, sizes, lengths)`` -> logits."""

    def __init__(self, spec: VideoSpec):
        super().__init__()
        self.spec = spec
        self.features = build_trunk3d(spec.arch, spec.widths, spec.frames, spec.time_padding)
        self.head = nn.Sequential(
            nn.Dropout(spec.dropout), nn.Linear(spec.conv_widths[-1], max(1, len(spec.class_names)))
        )
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32) * 255.0, persistent=False)

    def prepare(self, clips: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
        if sizes is None:
            sizes = torch.tensor([[clips.shape[2], clips.shape[3]]] * clips.shape[0])
        return _normalise(clips, sizes, self.mean, self.std)

    def conv_features(self, clips: torch.Tensor, sizes: torch.Tensor | None = None) -> torch.Tensor:
        """conv5 maps [N, C, T', h, w]."""
        return self.features(self.prepare(clips, sizes))

    def pooled(self, clips, sizes=None, lengths=None) -> torch.Tensor:
        if sizes is None:
            sizes = torch.tensor([[clips.shape[2], clips.shape[3]]] * clips.shape[0])
        return _masked_mean(self.conv_features(clips, sizes), sizes)

    def forward(
        self, clips: torch.Tensor, sizes: torch.Tensor | None = None, lengths: torch.Tensor | None = None
    ):
        # clips always hold `frames` frames (short clips are stretched by the sampler): lengths unused
        return self.head(self.pooled(clips, sizes))

    def load_2d(self, state_2d: dict) -> None:
        """Inflate and load a 2D trunk state_dict (``features.*`` keys, the image trunk's shapes)."""
        inflated = inflate_state_dict({k: v for k, v in state_2d.items() if k.startswith("features.")})
        own = {f"features.{k}": v for k, v in self.features.state_dict().items()}
        missing = sorted(set(own) - set(inflated))
        if missing:
            raise ValueError(f"2D weights lack {missing[0]}")
        for k, v in own.items():
            if tuple(inflated[k].shape) != tuple(v.shape):
                raise ValueError(
                    f"2D weights {k} inflate to {tuple(inflated[k].shape)}, expected {tuple(v.shape)}"
                )
        self.features.load_state_dict({k[len("features.") :]: inflated[k] for k in own})


class VGGLSTM(DescriptorNet):
    """Per-frame VGG descriptors -> LSTM/GRU -> linear (see module doc). ``features``, ``mean``,
    ``std``, ``prepare`` and the masked ``pool`` are the image model's."""

    def __init__(self, spec: VideoSpec):
        frame_spec = ModelSpec(
            arch=spec.arch,
            pooling="gap",
            input_size=max(32, spec.input_size),
            mean=spec.mean,
            std=spec.std,
            widths=spec.widths,
            descriptor_dim=spec.conv_widths[-1],
        )
        super().__init__(build_trunk(spec.arch, spec.widths), frame_spec, None)
        self.spec = spec
        dim = spec.conv_widths[-1]
        self.deltas = bool(spec.deltas)
        steps = 2 * dim if self.deltas else dim
        self.norm = nn.BatchNorm1d(steps)  # per-channel standardisation of the rnn's inputs
        rnn = nn.LSTM if spec.rnn == "lstm" else nn.GRU
        self.rnn = rnn(
            steps,
            spec.hidden,
            num_layers=spec.rnn_layers,
            batch_first=True,
            dropout=spec.dropout if spec.rnn_layers > 1 else 0.0,
        )
        self.head = nn.Sequential(
            nn.Dropout(spec.dropout), nn.Linear(spec.hidden, max(1, len(spec.class_names)))
        )

    def frame_descriptors(
        self, clips: torch.Tensor, sizes: torch.Tensor, lengths: torch.Tensor | None = None
    ):
        """[N, T, C] frame descriptors (masked GAP of conv5; zeros after each clip's length); only the
        real frames run through the trunk."""
        n, t = clips.shape[:2]
        if lengths is None:
            lengths = torch.full((n,), t, dtype=torch.int64)
        valid = torch.arange(t).view(1, t) < lengths.view(n, 1)
        frames = clips[valid]  # [M, S, S, 3]
        fsizes = sizes.view(n, 1, 2).expand(n, t, 2)[valid]
        f = self.features(self.prepare(frames, fsizes))
        d = self.pool(f, fsizes)
        out = d.new_zeros(n, t, d.shape[1])
        out[valid] = d
        return out

    def classify_descriptors(self, desc: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Logits from [N, T, C] frame descriptors and the real lengths [N]."""
        n, t = desc.shape[:2]
        lengths = lengths.cpu().clamp(min=1, max=t)
        valid = torch.arange(t).view(1, t) < lengths.view(n, 1)
        if self.deltas:
            delta = torch.cat([torch.zeros_like(desc[:, :1]), desc[:, 1:] - desc[:, :-1]], dim=1)
            desc = torch.cat([desc, delta], dim=2)
        x = desc.new_zeros(desc.shape)
        x[valid] = self.norm(desc[valid])
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        h = h[0] if isinstance(h, tuple) else h  # LSTM: (h_n, c_n)
        return self.head(h[-1])

    def forward(
        self, clips: torch.Tensor, sizes: torch.Tensor | None = None, lengths: torch.Tensor | None = None
    ):
        n, t = clips.shape[:2]
        if sizes is None:
            sizes = torch.tensor([[clips.shape[2], clips.shape[3]]] * n)
        if lengths is None:
            lengths = torch.full((n,), t, dtype=torch.int64)
        return self.classify_descriptors(self.frame_descriptors(clips, sizes, lengths), lengths)


def build_video_net(spec: VideoSpec, seed: int | None = 0) -> nn.Module:
    """A randomly initialised (seeded) video classifier for ``spec``."""
    if seed is not None:
        torch.manual_seed(seed)
    return VGG3D(spec) if spec.model == "vgg3d" else VGGLSTM(spec)


def load_2d_trunk(net: nn.Module, state_2d: dict) -> None:
    """Put 2D ``features.*`` weights into a video net: inflated for VGG3D, as they are for VGG-LSTM."""
    if isinstance(net, VGG3D):
        net.load_2d(state_2d)
    else:
        net.features.load_state_dict(
            {k[len("features.") :]: v for k, v in state_2d.items() if k.startswith("features.")}
        )


def trunk_state(net: nn.Module) -> dict:
    return {f"features.{k}": v for k, v in net.features.state_dict().items()}
