"""A classifier fitted on stored descriptors: multinomial logistic regression in numpy.

More: docs/design-notes.md (``indexer.classify.descriptor_classifier``)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from retrieval.classes import softmax, top_classes
from retrieval.descriptors import unit_rows
from retrieval.errors import UserError, one_line

from .logistic import fit_budget, fit_logistic

NPZ_FILE = "classifier.npz"
JSON_FILE = "classifier.json"
FORMAT = "vgg-retrieval-descriptor-classifier"
# Chosen with benchmarks/classify_quality.py (docs/classification.md): held-out top-1 moves by at most
# 2 points from 1e-3 to 1e-1 on flowers5 and hymenoptera; 3e-3 is at or near the best on both.
DEFAULT_L2 = 3e-3
# cross-validation runs on a stratified sample of at most CV_ROWS rows (large indexes; the final fit
# takes every row within logistic.fit_budget)
CV_ROWS = 10_000
# "none of these": a query whose similarity to every class (the mean cosine similarity of its
# NEIGHBOURS nearest photos of that class) is below that class's bound. Each bound keeps KEEP_SHARE of
# the class's own photos, each one held out (benchmarks/none_of_these.py: the rates in and outside
# the folders; the nearest-photos score rejected more outside photos than the class mean's cosine or
# a Mahalanobis distance at the same 95% kept).
KEEP_SHARE = 0.95
NEIGHBOURS = 5
MAX_MEMBERS = 400  # photos per class kept with the classifier for the rule
MEMBER_BUDGET = 10_000  # ... all classes together at most (then fewer a class, at least 2 x NEIGHBOURS)
NONE_OF_THESE = "none of these"


@dataclass
class DescriptorClassifier:
    classes: tuple[str, ...]
    weight: np.ndarray  # [D, C]
    bias: np.ndarray  # [C]
    mean: np.ndarray  # [D] of the L2-normalised training descriptors
    scale: float  # their RMS deviation per dimension
    model_id: str  # the index model whose descriptors it reads
    info: dict = field(default_factory=dict)  # labels, counts, accuracy, fitted_at...
    members: np.ndarray | None = None  # [M, D] unit descriptors of up to MAX_MEMBERS photos per class
    member_class: np.ndarray | None = None  # [M] their class numbers
    bounds: np.ndarray | None = None  # [C] the lowest similarity to a class that is still "this class"

    def logits(self, descriptors) -> np.ndarray:
        """Class scores ``[N, C]`` of descriptor rows ``[N, D]`` (or one ``[D]``)."""
        return _standardise(descriptors, self.mean, self.scale) @ self.weight + self.bias

    def proba(self, descriptors) -> np.ndarray:
        return softmax(self.logits(descriptors))

    def predict(self, descriptors) -> list[str]:
        return [self.classes[j] for j in np.argmax(self.logits(descriptors), axis=1)]

    def top(self, descriptors, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per descriptor row, the ``k`` likeliest ``(class, probability)``, likeliest first."""
        return top_classes(self.logits(descriptors), self.classes, k)

    def closeness(self, descriptors) -> np.ndarray:
        """Similarity ``[N, C]`` of descriptor rows to each class: the mean cosine similarity of the
        row's nearest NEIGHBOURS photos of that class."""
        if self.members is None or self.member_class is None:
            raise ValueError("this classifier was fitted before the none-of-these rule: fit it again")
        sims = _normalised(descriptors).astype(np.float32) @ self.members.astype(np.float32).T
        k = neighbours_per_class(self.member_class, len(self.classes))
        return class_closeness(sims, self.member_class, len(self.classes), k)

    @property
    def has_rule(self) -> bool:
        return self.members is not None and self.member_class is not None and self.bounds is not None

    def recognised(self, descriptors) -> np.ndarray:
        """Per row, whether it is near enough to some class (``closeness >= bounds``); all True for a
        classifier fitted before the rule (it cannot tell)."""
        n = len(np.atleast_2d(descriptors))
        if not self.has_rule:
            return np.ones(n, dtype=bool)
        return (self.closeness(descriptors) >= self.bounds[None, :]).any(axis=1)

    def verdicts(self, descriptors, k: int = 5) -> list[dict]:
        """Per row: ``{"top": [(class, probability)...], "known": bool, "nearest": class,
        "similarity": float, "bound": float}`` (``known`` False: "none of these")."""
        tops = self.top(descriptors, k)
        known = self.recognised(descriptors)
        out = []
        for i, top in enumerate(tops):
            row = {"top": top, "known": bool(known[i])}
            if self.has_rule:
                sims = self.closeness(np.atleast_2d(descriptors)[i])[0]
                j = int(np.argmax(sims - self.bounds))
                row.update(nearest=self.classes[j], similarity=float(sims[j]), bound=float(self.bounds[j]))
            out.append(row)
        return out

    # --- files next to the index ------------------------------------------------------------
    def save(self, directory) -> None:
        """Write ``classifier.npz`` then ``classifier.json`` (which names the npz's sha256), each
        atomically: a reader sees the old pair, the new pair, or a mismatch it reports."""
        directory = Path(directory)
        tmp = directory / (NPZ_FILE + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(
                f,
                weight=self.weight.astype(np.float32),
                bias=self.bias.astype(np.float32),
                mean=self.mean.astype(np.float32),
                scale=np.float32(self.scale),
                **(
                    {
                        "members": self.members.astype(np.float16),
                        "member_class": self.member_class.astype(np.int32),
                        "bounds": self.bounds.astype(np.float32),
                    }
                    if self.has_rule
                    else {}
                ),
            )
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        os.replace(tmp, directory / NPZ_FILE)
        meta = {
            "format": FORMAT,
            "version": 1,
            "model_id": self.model_id,
            "classes": list(self.classes),
            "npz_sha256": digest,
            **self.info,
        }
        tmp = directory / (JSON_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, directory / JSON_FILE)

    @classmethod
    def load(cls, directory, model_id: str | None = None) -> "DescriptorClassifier | None":
        """The classifier saved in ``directory`` (None when there is none). UserError when it is
        damaged, or was fitted for another model than ``model_id``."""
        directory = Path(directory)
        meta_path = directory / JSON_FILE
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            raw = (directory / NPZ_FILE).read_bytes()
            if meta.get("format") != FORMAT or hashlib.sha256(raw).hexdigest() != meta.get("npz_sha256"):
                raise ValueError(f"{NPZ_FILE} does not match {JSON_FILE}")
            import io

            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("weight", "bias", "mean", "scale")}
                rule = {k: z[k] for k in ("members", "member_class", "bounds") if k in z.files}
            classes = tuple(str(c) for c in meta["classes"])
            if arrays["weight"].shape != (arrays["mean"].shape[0], len(classes)):
                raise ValueError("array shapes do not match the class list")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UserError(
                f"damaged classifier in {directory}: {one_line(e)} "
                f"(fit it again: vgg-retrieval classes --index {directory})"
            ) from None
        if model_id is not None and meta.get("model_id") != model_id:
            raise UserError(
                f"the classifier in {directory} was fitted on descriptors of model {meta.get('model_id')}, "
                f"not this index's {model_id}: fit it again (vgg-retrieval classes --index {directory})"
            )
        info = {
            k: v
            for k, v in meta.items()
            if k not in ("format", "version", "model_id", "classes", "npz_sha256")
        }
        return cls(
            classes,
            arrays["weight"],
            arrays["bias"],
            arrays["mean"],
            float(arrays["scale"]),
            meta["model_id"],
            info,
            None if "members" not in rule else rule["members"].astype(np.float32),
            rule.get("member_class"),
            rule.get("bounds"),
        )

    @staticmethod
    def remove(directory) -> bool:
        """Delete a saved classifier; True when there was one."""
        found = False
        for name in (JSON_FILE, NPZ_FILE):
            try:
                os.unlink(Path(directory) / name)
                found = True
            except FileNotFoundError:
                pass
        return found


def _normalised(descriptors) -> np.ndarray:
    return unit_rows(np.atleast_2d(descriptors), np.float64)


def _standardise(descriptors, mean: np.ndarray, scale: float) -> np.ndarray:
    return (_normalised(descriptors) - mean) / scale


def fit(
    descriptors,
    labels: Sequence[str],
    model_id: str = "",
    l2: float = DEFAULT_L2,
    balanced: bool = True,
    seed: int = 0,
    info: dict | None = None,
) -> DescriptorClassifier:
    """Fit on descriptor rows and their labels (at least two distinct labels). ``balanced``
    weighs each class's rows so every class counts the same (folders are rarely equal)."""
    labels = np.asarray([str(v) for v in labels])
    classes = tuple(sorted(set(labels.tolist())))
    if len(classes) < 2:
        raise UserError(f"a classifier needs at least two labels (got {len(classes)})")
    per_class, iterations = fit_budget(np.unique(labels, return_counts=True)[1])
    keep = _cap_per_class(labels, per_class, seed)
    x = _normalised(descriptors)[keep]
    y = np.searchsorted(np.asarray(classes), labels[keep])
    mean = x.mean(axis=0)
    scale = float(np.sqrt(((x - mean) ** 2).sum(axis=1).mean() / x.shape[1])) or 1.0
    weight, bias = fit_logistic((x - mean) / scale, y, len(classes), l2, balanced, iterations)
    members, member_class, bounds = calibrate(x, y, len(classes), seed=seed)
    return DescriptorClassifier(
        classes,
        weight,
        bias,
        mean,
        scale,
        model_id,
        {
            "l2": l2,
            "balanced": balanced,
            "rows": int(len(labels)),
            "rows_fitted": int(len(keep)),
            "iterations": int(iterations),
            "fitted_at": time.time(),
            "keep_share": KEEP_SHARE,
            **(info or {}),
        },
        members,
        member_class,
        bounds,
    )


def class_closeness(sims: np.ndarray, member_class: np.ndarray, n_classes: int, k: np.ndarray) -> np.ndarray:
    """Per row of ``sims`` [N, M] (similarities to the members), the mean of its ``k[c]`` largest
    similarities to class ``c``'s members: [N, C]."""
    out = np.full((len(sims), n_classes), -1.0, dtype=np.float32)
    for c in range(n_classes):
        mine = sims[:, member_class == c]
        kc = int(min(k[c], mine.shape[1]))
        if kc:
            out[:, c] = np.partition(mine, mine.shape[1] - kc, axis=1)[:, -kc:].mean(axis=1)
    return out


def neighbours_per_class(member_class: np.ndarray, n_classes: int) -> np.ndarray:
    """How many nearest photos of a class a similarity averages: NEIGHBOURS, fewer for a small class
    (one less than its photos, so that a held-out photo is compared with as many as a query)."""
    counts = np.bincount(member_class, minlength=n_classes)
    return np.clip(counts - 1, 1, NEIGHBOURS)


def calibrate(x: np.ndarray, y: np.ndarray, n_classes: int, keep: float = KEEP_SHARE, seed: int = 0):
    """(members [M, D], their classes [M], per-class bounds [C]): at most MAX_MEMBERS photos per class
    kept (fewer past MEMBER_BUDGET in all); each bound is the ``1 - keep`` quantile of the class's
    members' similarity to their own class with each member held out, so that ``keep`` of a class's
    own photos stay "this class"."""
    cap = min(MAX_MEMBERS, max(2 * NEIGHBOURS, MEMBER_BUDGET // max(1, n_classes)))
    keep_rows = _cap_per_class(y, cap, seed)
    members, member_class = x[keep_rows].astype(np.float32), y[keep_rows]
    k = neighbours_per_class(member_class, n_classes)
    own = np.empty(len(members), dtype=np.float32)
    for start in range(0, len(members), 1024):
        sims = members[start : start + 1024] @ members.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # held out: not its own neighbour
        close = class_closeness(sims, member_class, n_classes, k)
        own[start : start + 1024] = close[rows, member_class[start : start + 1024]]
    bounds = np.full(n_classes, -1.0, dtype=np.float32)
    for c in range(n_classes):
        mine = own[(member_class == c) & np.isfinite(own)]
        if len(mine):
            bounds[c] = np.quantile(mine, 1.0 - keep)
    return members, member_class, bounds


def _cap_per_class(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    return np.sort(np.concatenate([r if len(r) <= cap else rng.choice(r, cap, replace=False) for r in rows]))


def folds_of(labels: Sequence[str], folds: int, seed: int = 0) -> np.ndarray:
    """A stratified fold number per row: each class's rows dealt round-robin after a seeded shuffle."""
    labels = np.asarray([str(v) for v in labels])
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        fold[rng.permutation(rows)] = np.arange(len(rows)) % folds
    return fold


def cross_validate(descriptors, labels: Sequence[str], folds: int = 5, seed: int = 0, **fit_options) -> dict:
    """Stratified ``folds``-fold cross-validation (fewer folds when a class has fewer rows): overall
    top-1 accuracy and each class's accuracy (recall) on its held-out rows; ``chance``: the top-1 of
    always answering the largest class (on the rows evaluated)."""
    labels = np.asarray([str(v) for v in labels])
    x = _normalised(descriptors)
    if len(labels) > CV_ROWS:  # a large index: a stratified sample (the final fit takes every row)
        n_classes = len(np.unique(labels))
        sample = _cap_per_class(labels, max(folds, CV_ROWS // n_classes), seed)
        x, labels = x[sample], labels[sample]
    counts = np.unique(labels, return_counts=True)[1]
    chance = float(counts.max() / len(labels))  # always answering the largest class
    folds = int(min(folds, counts.min()))
    if folds < 2:
        return {"folds": 0, "accuracy": None, "per_class": {}, "rows": int(len(labels)), "chance": chance}
    fold = folds_of(labels, folds, seed)
    predicted = np.empty(len(labels), dtype=object)
    for f in range(folds):
        test = fold == f
        clf = fit(x[~test], labels[~test], seed=seed, **fit_options)
        predicted[test] = clf.predict(x[test])
    right = predicted == labels
    per_class = {str(c): float(right[labels == c].mean()) for c in np.unique(labels)}
    return {
        "folds": folds,
        "accuracy": float(right.mean()),
        "per_class": per_class,
        "rows": int(len(labels)),
        "chance": chance,
    }
