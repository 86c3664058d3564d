"""Multinomial logistic regression in numpy (FISTA with adaptive restart), and the budget that keeps
a fit over a large index quick (``fit_budget``). Used by ``descriptor_classifier.fit``."""

from __future__ import annotations

import numpy as np

MAX_PER_CLASS = 2000
MAX_ITERATIONS = 500
# Large indexes (many folders of many photos): a fit's cost is rows x classes x iterations; a fit is
# kept under FIT_WORK of that (~25 s on 2 cores) by fewer iterations (down to MIN_ITERATIONS: on
# flowers5 and hymenoptera 150 iterations gave the same cross-validated top-1 as 500, or better), then
# fewer rows per class (at least MIN_FIT_PER_CLASS). Below it (every labelled set we have) the fit is
# the plain one. At 100,000 photos in 100 folders (benchmarks/scale.py's) the classifier, its
# cross-validation included, took 541 s before and 64 s after (AMD EPYC, 2 cores).
FIT_WORK = 1_500_000_000
MIN_ITERATIONS = 150
MIN_FIT_PER_CLASS = 20


def fit_budget(counts) -> tuple[int, int]:
    """(rows kept per class, FISTA iterations at most) of a fit over classes of ``counts`` rows:
    MAX_PER_CLASS and MAX_ITERATIONS while rows x classes x iterations stays within FIT_WORK; then
    fewer iterations (MIN_ITERATIONS at least), then fewer rows per class (MIN_FIT_PER_CLASS at least)."""
    counts = np.asarray(counts)
    n_classes = max(1, len(counts))
    per_class = min(MAX_PER_CLASS, max(MIN_FIT_PER_CLASS, FIT_WORK // (MIN_ITERATIONS * n_classes**2)))
    rows = max(1, int(np.minimum(counts, per_class).sum()))
    return int(per_class), int(min(MAX_ITERATIONS, max(MIN_ITERATIONS, FIT_WORK // (rows * n_classes))))


def fit_logistic(
    z: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    l2: float,
    balanced: bool = True,
    iterations: int = MAX_ITERATIONS,
    tol: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise weighted mean cross-entropy + l2/2 |W|^2 over (W [D,C], b [C]) by FISTA with
    adaptive restart; the step is 1/L with L = max eigenvalue of the weighted [z 1]'[z 1] / 2 + l2
    (the softmax cross-entropy's Hessian in the scores is at most I/2)."""
    n, d = z.shape
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w_row = (n / (n_classes * counts))[y] if balanced else np.ones(n)
    w_row = w_row / w_row.sum()
    za = np.hstack([z, np.ones((n, 1))])
    lipschitz = 0.5 * _top_eigenvalue((za * w_row[:, None]).T @ za) + l2
    # the iterations in float32: half the time of float64, far below the accuracy that matters here
    step, l2 = np.float32(1.0 / lipschitz), np.float32(l2)
    za, w_row = za.astype(np.float32), w_row.astype(np.float32)[:, None]
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    reg = np.ones((d + 1, 1), dtype=np.float32)
    reg[-1] = 0.0  # no penalty on the bias
    theta = np.zeros((d + 1, n_classes), dtype=np.float32)
    momentum, t = theta.copy(), 1.0
    for _ in range(iterations):
        scores = za @ momentum
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = za.T @ ((p - onehot) * w_row) + l2 * reg * momentum
        new = momentum - step * grad
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        moved = np.abs(new - theta).max()
        if np.sum(grad * (new - theta)) > 0:  # momentum is going uphill: restart it
            momentum, t = new, 1.0
        else:
            momentum, t = new + np.float32((t - 1) / t_next) * (new - theta), t_next
        theta = new
        if moved < tol * max(1.0, float(np.abs(theta).max())):  # relative: converged
            break
    return theta[:-1].astype(np.float32), theta[-1].astype(np.float32)


def _top_eigenvalue(sym: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(sym)[-1])
