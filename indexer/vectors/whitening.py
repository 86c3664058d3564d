"""Whitening learnt on the user's own collection, without labels (numpy only).

More: docs/design-notes.md (``indexer.vectors.whitening``)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.descriptors import unit_rows
from retrieval.errors import UserError

from .files import _fsync_dir

FORMAT = "vgg-retrieval-whitening"
VERSION = 1
AUTO_WHITEN = False  # `index` fits one by itself once should_fit says so (measured: see the docstring)
MIN_VECTORS = 100  # fit only from this many vectors (centring helped from 15 on paris5: a margin)
REFIT_GROWTH = 2.0  # refit once the collection is REFIT_GROWTH x what the whitening was fitted on
BETA = 0.0  # eigenvalue power: 0 = centring only (the measured best), 0.5 = full whitening
FIT_SAMPLE = 100_000  # vectors the mean and covariance are estimated from, at most
METHODS = ("shrunk", "pca")


@dataclass
class Whitening:
    """A fitted whitening: ``apply`` maps descriptors [N, D] to unit rows [N, dim_out]."""

    mean: np.ndarray  # [D] float64
    projection: np.ndarray  # [D, dim_out] float64
    model_id: str  # the model whose descriptors it was fitted on
    n: int  # how many vectors it was fitted on
    info: dict = field(default_factory=dict)  # method, beta, shrinkage, collection size at the fit

    @property
    def dim(self) -> int:
        return int(self.projection.shape[1])

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Whitened, L2-normalised rows (float32); a row equal to the mean maps to zeros."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.mean.shape[0])
        y = (x - self.mean) @ self.projection
        return unit_rows(y)

    def describe(self) -> str:
        how, beta = self.info.get("method", "?"), self.info.get("beta")
        if how == "shrunk" and not beta:
            how = "centred on the collection's mean"
        elif how == "shrunk":
            how = f"shrunk covariance (Ledoit-Wolf {self.info.get('shrinkage', 0):.2f}), eigenvalues^-{beta}"
        else:
            how = "PCA-whitening"
        return f"{how}, {self.dim} dims, fitted on {self.n} vectors"


def should_fit(n: int) -> bool:
    """Whether ``n`` vectors are enough to fit a whitening that helps."""
    return n >= MIN_VECTORS


def should_refit(n: int, whitening: Whitening) -> bool:
    """Whether the collection grew enough since ``whitening`` was fitted to fit it again."""
    return n >= REFIT_GROWTH * whitening.n


def fit_options(whitening: Whitening) -> dict:
    """The ``fit`` options ``whitening`` was made with: a refit on growth keeps them."""
    options = {"method": whitening.info.get("method", "shrunk")}
    if options["method"] == "shrunk":
        options["beta"] = float(whitening.info.get("beta", BETA))
    if whitening.dim < whitening.mean.shape[0]:
        options["dim_out"] = whitening.dim
    return options


def ledoit_wolf_shrinkage(xc: np.ndarray, cov: np.ndarray) -> float:
    """The Ledoit-Wolf (2004) shrinkage of the sample covariance ``cov`` of centred rows ``xc``
    towards mu*I (mu = mean eigenvalue): the amount in [0, 1] that minimises the expected error."""
    n, d = xc.shape
    mu = np.trace(cov) / d
    delta = ((cov - mu * np.eye(d)) ** 2).sum() / d
    sq = (xc**2).sum(axis=1)
    # sum_k ||x_k x_k^T - cov||_F^2 = sum_k |x_k|^4 - 2 x_k^T cov x_k + ||cov||_F^2
    beta_bar = ((sq**2).sum() - 2 * ((xc @ cov) * xc).sum() + n * (cov**2).sum()) / (d * n * n)
    if delta <= 0:
        return 1.0
    return float(np.clip(min(beta_bar, delta) / delta, 0.0, 1.0))


def fit(
    x: np.ndarray,
    model_id: str = "",
    method: str = "shrunk",
    beta: float = BETA,
    shrinkage: float | None = None,
    dim_out: int | None = None,
    seed: int = 0,
) -> Whitening:
    """A whitening of descriptors ``x`` [N, D]. ``method`` "shrunk": covariance shrunk by
    ``shrinkage`` (None: Ledoit-Wolf) towards mu*I, eigenvalues^-``beta``, all D dims (beta 0:
    the mean subtracted, nothing else);
    "pca": plain PCA-whitening (eigenvalues^-1/2, only the N-1 non-degenerate dims when N <= D).
    ``dim_out``: keep the leading dims only. At most FIT_SAMPLE rows are used."""
    if method not in METHODS:
        raise UserError(f"unknown whitening method {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if n < 2:
        raise UserError(f"a whitening needs at least 2 vectors (got {n})")
    if n > FIT_SAMPLE:
        x = x[np.sort(np.random.default_rng(seed).choice(n, FIT_SAMPLE, replace=False))]
    mean = x.mean(axis=0)
    xc = x - mean
    info = {"method": method, "collection": int(n)}
    cov = xc.T @ xc / len(xc) if beta or method == "pca" or dim_out else None
    if method == "pca":
        eig, vec = np.linalg.eigh(cov)
        keep = eig > 1e-9 * eig.max()
        eig, vec, scale = eig[keep], vec[:, keep], eig[keep] ** -0.5
        info["beta"] = 0.5
    elif beta == 0 and dim_out is None:  # centring only: no rotation, nothing to estimate but the mean
        info.update(beta=0.0, shrinkage=1.0)
        return Whitening(mean, np.eye(d), model_id, int(n), info)
    else:
        alpha = ledoit_wolf_shrinkage(xc, cov) if shrinkage is None else float(shrinkage)
        eig, vec = np.linalg.eigh(cov)
        shrunk = (1 - alpha) * np.maximum(eig, 0) + alpha * np.trace(cov) / d
        scale = np.maximum(shrunk, 1e-12) ** -beta
        info.update(beta=float(beta), shrinkage=alpha)
    order = np.argsort(-eig)[:dim_out]  # leading components first
    projection = vec[:, order] * scale[order]
    return Whitening(mean, projection, model_id, int(n), info)


def save(whitening: Whitening, path: Path) -> None:
    """Write ``whitening`` to ``path`` crash-safely (temporary name, fsync, rename, folder fsync)."""

    buf = io.BytesIO()
    np.savez(
        buf,
        format=FORMAT,
        version=VERSION,
        model_id=whitening.model_id,
        n=whitening.n,
        mean=whitening.mean,
        projection=whitening.projection,
        info_keys=np.array(list(whitening.info), dtype=str),
        info_values=np.array([str(v) for v in whitening.info.values()], dtype=str),
    )
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def load(path: Path, model_id: str) -> Whitening:
    """The whitening in ``path``; UserError (one line) when it is damaged or was fitted for
    another model than ``model_id`` (descriptors of different models never mix)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != FORMAT:
                raise ValueError("not a whitening file")
            stored = str(z["model_id"])
            info = {k: _number(v) for k, v in zip(z["info_keys"].tolist(), z["info_values"].tolist())}
            w = Whitening(
                z["mean"].astype(np.float64), z["projection"].astype(np.float64), stored, int(z["n"]), info
            )
    except (OSError, ValueError, KeyError) as e:
        raise UserError(
            f"the whitening file {path} cannot be read ({str(e).splitlines()[0][:120]}): "
            f"fit it again with vgg-retrieval whiten --index {path.parent}"
        ) from None
    if stored != model_id:
        raise UserError(
            f"the whitening {path} was fitted for model {stored}, not this index's {model_id}: "
            f"refused for a mixed model (fit it again: vgg-retrieval whiten --index {path.parent})"
        )
    if w.mean.shape[0] != w.projection.shape[0]:
        raise UserError(f"the whitening file {path} is damaged (mean and projection disagree)")
    return w


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
