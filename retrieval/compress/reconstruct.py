"""Label-free recovery of a pruned trunk, layer by layer, in closed form.

After L1 pruning, every conv layer of the student is refitted by ridge least squares so that, fed
with the *student's own* (already pruned and refitted) inputs, it reproduces the teacher's
pre-activation outputs of the channels it kept, on unlabelled photos. This is the feature-map
reconstruction of ThiNet / He et al.'s channel pruning: it needs forward passes only (no backward,
no labels, no epochs), and errors of earlier layers are compensated by later ones because each
layer is fitted on the student's inputs. Gradient distillation (``retrieval.compress.distill``) can follow.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .prune import conv_positions


def _patches(x: torch.Tensor, n: torch.Tensor, r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The 3x3 input patches (padding 1) centred at cells (n, r, c) of ``x`` [N, C, H, W], flattened
    like a conv weight ``[C_out, C * 9]``: [M, C * 9]."""
    xp = F.pad(x, (1, 1, 1, 1))
    cols = [xp[n, :, r + dy, c + dx] for dy in range(3) for dx in range(3)]  # each [M, C]
    return torch.stack(cols, dim=2).reshape(len(n), -1)


def _sample_cells(sizes: torch.Tensor, stride: int, h: int, w: int, per_image: int, gen) -> tuple:
    """Random (image, row, col) cells inside each image's valid area at feature ``stride``."""
    ns, rs, cs = [], [], []
    for i, (vh, vw) in enumerate(sizes.tolist()):
        hh = max(1, min(h, -(-vh // stride)))
        ww = max(1, min(w, -(-vw // stride)))
        k = min(per_image, hh * ww)
        flat = torch.randperm(hh * ww, generator=gen)[:k]
        ns.append(torch.full((k,), i))
        rs.append(flat // ww)
        cs.append(flat % ww)
    return torch.cat(ns), torch.cat(rs), torch.cat(cs)


def _solve(xtx: torch.Tensor, xty: torch.Tensor, ridge: float) -> torch.Tensor:
    d = xtx.shape[0]
    lam = ridge * torch.diagonal(xtx)[:-1].mean().clamp(min=1e-12)  # the bias column is not penalised
    reg = torch.full((d,), float(lam), dtype=xtx.dtype)
    reg[-1] = 0.0
    return torch.linalg.solve(xtx + torch.diag(reg), xty)


@torch.no_grad()
def reconstruct(
    student,
    teacher,
    kept: dict,
    images: torch.Tensor,
    sizes: torch.Tensor,
    per_image: int = 64,
    ridge: float = 1e-3,
    chunk: int = 8,
    seed: int = 0,
    progress=None,
) -> list[float]:
    """Refit every conv layer of ``student.features`` (a pruned copy of ``teacher.features``, same
    layer list) in place; ``kept`` maps conv ordinals to the teacher channels the student kept
    (``retrieval.compress.prune.l1_prune_layers``; absent: all). ``images``/``sizes`` are prepared uint8
    photos (``retrieval.preprocess.prepare``) [N, H, W, 3] / [N, 2], or lists of such tensors, one
    per input shape (a buckets model's photos). Returns the relative residual of each layer's fit
    (||student - teacher||^2 / ||teacher||^2 on its sampled cells, after the refit)."""
    gen = torch.Generator().manual_seed(seed)
    student.eval()
    teacher.eval()
    groups = list(zip(images, sizes)) if isinstance(images, (list, tuple)) else [(images, sizes)]
    chunks = [(im[i : i + chunk], sz[i : i + chunk]) for im, sz in groups for i in range(0, len(im), chunk)]
    xs = [student.prepare(im, sz) for im, sz in chunks]
    xt = [t.clone() for t in xs]
    szs = [sz for _, sz in chunks]
    pos = conv_positions(student.features)
    residuals, stride = [], 1
    for i, (ms, mt) in enumerate(zip(student.features, teacher.features)):
        if isinstance(ms, nn.Conv2d):
            k = pos.index(i)
            out_idx = kept.get(k)
            d = ms.in_channels * 9 + 1
            xtx = torch.zeros(d, d, dtype=torch.float64)
            xty = torch.zeros(d, ms.out_channels, dtype=torch.float64)
            yy = 0.0
            for j in range(len(xs)):
                yt = mt(xt[j].float())
                n, r, c = _sample_cells(szs[j], stride, yt.shape[2], yt.shape[3], per_image, gen)
                x = torch.cat([_patches(xs[j].float(), n, r, c), torch.ones(len(n), 1)], dim=1)
                y = yt[n, :, r, c]
                y = y if out_idx is None else y[:, out_idx]
                xtx += (x.T @ x).double()  # float32 products (fast), float64 sums
                xty += (x.T @ y).double()
                yy += float((y.double() ** 2).sum())
                xt[j] = yt.to(torch.float16)
            sol = _solve(xtx, xty, ridge)  # [d, C_out]
            ms.weight.copy_(sol[:-1].T.reshape(ms.weight.shape).to(ms.weight.dtype))
            ms.bias.copy_(sol[-1].to(ms.bias.dtype))
            # residual from the normal equations: ||XW - Y||^2 = W'X'XW - 2 W'X'Y + Y'Y
            res = float((sol * (xtx @ sol)).sum() - 2 * (sol * xty).sum()) + yy
            residuals.append(max(res, 0.0) / max(yy, 1e-12))
            xs = [ms(x.float()).to(torch.float16) for x in xs]
            if progress:
                progress(k + 1, len(pos))
        else:
            if isinstance(ms, nn.MaxPool2d):
                stride *= 2
            xs = [ms(x.float()).to(torch.float16) for x in xs]
            xt = [mt(x.float()).to(torch.float16) for x in xt]
    return residuals
