"""An index's own classifier: labels from its folders (or a CSV), fitted on its stored descriptors.

More: docs/design-notes.md (``indexer.classify.index_classes``)."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retrieval.classes import top_classes
from retrieval.errors import UserError

from .descriptor_classifier import DescriptorClassifier, cross_validate, fit

MIN_CLASSES = 2
MIN_PER_CLASS = 10
REFIT_CHANGE = 0.10
CV_FOLDS = 5
# labels the photos cannot predict get no classifier: its cross-validated top-1 must close at least
# this share of the gap from chance (always the largest label) to perfect. Measured (5-fold, the
# shared VGG16, INT8): folders of paris5 0.97, hymenoptera 0.83, photos/samples 0.62, flowers5 0.61;
# the same labels dealt at random -0.24 to 0.04, half of them at random 0.04-0.17, 100 numbered
# folders of 1,000 photos (benchmarks/scale.py) 0.02
MIN_SKILL = 0.10
REFUSED_FILE = "classifier-refused.json"  # labels refused: not fitted again until they change


@dataclass(frozen=True)
class LabelChoice:
    """Where labels come from: the stored folder label (default), ``depth`` folders below the
    indexed folder, or a ``csv`` file of path,label rows."""

    depth: int | None = None
    csv: str | None = None

    def __post_init__(self) -> None:
        if self.depth is not None and self.csv is not None:
            raise UserError("choose labels by folder depth or by a CSV file, not both")
        if self.depth is not None and self.depth < 1:
            raise UserError(f"label depth must be at least 1 (got {self.depth})")

    def to_dict(self) -> dict:
        if self.csv is not None:
            return {"labels": "csv", "csv": str(Path(self.csv).resolve())}
        return {"labels": "folder", **({"depth": self.depth} if self.depth else {})}

    @classmethod
    def from_dict(cls, d: dict) -> "LabelChoice":
        return cls(depth=d.get("depth"), csv=d.get("csv") if d.get("labels") == "csv" else None)

    def describe(self) -> str:
        if self.csv is not None:
            return f"labels from {self.csv}"
        return f"labels: folder names{f' (depth {self.depth})' if self.depth else ''}"


@dataclass
class FitResult:
    classifier: DescriptorClassifier | None  # None: not fitted (the note says why)
    note: str  # one line for the user
    changed: bool = False  # a classifier was written or removed


def read_label_csv(path) -> dict[str, str]:
    """``path,label`` rows (a first row ``path,label`` is a header) -> {absolute path: label}.
    UserError naming the file and line for anything else."""
    path = Path(path)
    base = path.resolve().parent
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(
            f"cannot read labels file {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    out: dict[str, str] = {}
    for n, row in enumerate(rows, 1):
        if not row or all(not cell.strip() for cell in row):
            continue
        if n == 1 and [c.strip().lower() for c in row] == ["path", "label"]:
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise UserError(f"labels file {path} line {n}: expected 'path,label', got {','.join(row)[:80]!r}")
        out[os.path.normpath(base / row[0].strip())] = row[1].strip()
    if not out:
        raise UserError(f"labels file {path} has no path,label rows")
    return out


def index_labels(index, choice: LabelChoice = LabelChoice()) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(ids, descriptors, labels) of the index's photos that have a label under ``choice``."""
    ids, vectors = index.all_vectors()
    rows = index.store.rows_by_id(ids.tolist())
    by_path = read_label_csv(choice.csv) if choice.csv is not None else None
    keep, labels = [], []
    for i, image_id in enumerate(ids.tolist()):
        row = rows.get(image_id)
        label = None if row is None else _label(row, choice, by_path)
        if label:
            keep.append(i)
            labels.append(label)
    if by_path is not None and not keep:
        raise UserError(
            f"labels file {choice.csv}: none of its {len(by_path)} paths is in the index {index.directory}"
        )
    keep = np.asarray(keep, dtype=np.int64)
    return ids[keep], vectors[keep], labels


def _label(row, choice: LabelChoice, by_path: dict | None) -> str | None:
    if by_path is not None:
        path = row.source or row.path
        return by_path.get(os.path.normpath(path)) or by_path.get(os.path.realpath(path))
    if choice.depth is None:
        return row.label or None
    folders = Path(os.path.relpath(row.source or row.path, row.root)).parts[:-1]
    return "/".join(folders[: choice.depth]) or None


def eligible_labels(labels, min_per_class: int = MIN_PER_CLASS) -> dict[str, int]:
    """The labels with at least ``min_per_class`` photos, and their counts."""
    return {k: v for k, v in sorted(Counter(labels).items()) if v >= min_per_class}


def load(index) -> DescriptorClassifier | None:
    """The index's saved classifier (None when it has none); refused when fitted for another model."""
    return DescriptorClassifier.load(index.directory, index.spec.model_id)


def skill(cv: dict, label_counts: dict | None = None) -> float | None:
    """How far the cross-validated top-1 goes from chance towards perfect: (top-1 - chance) / (1 -
    chance), where chance is always answering the largest label (``cv["chance"]``, or from
    ``label_counts`` for a classifier saved before it was recorded); None without cross-validation."""
    chance = _chance(cv, label_counts)
    if cv.get("accuracy") is None or chance is None or chance >= 1:
        return None
    return (cv["accuracy"] - chance) / (1 - chance)


def _chance(cv: dict, label_counts: dict | None) -> float | None:
    if cv.get("chance") is not None or not label_counts:
        return cv.get("chance")
    return max(label_counts.values()) / sum(label_counts.values())


def _refuse(index, info: dict, choice: LabelChoice) -> FitResult:
    """No classifier for labels the photos do not predict: recorded, an old classifier removed."""
    _save_refusal(index, info)
    removed = DescriptorClassifier.remove(index.directory)
    return FitResult(
        None, _refused_note(info, choice) + ("; the old classifier was removed" if removed else ""), removed
    )


def fit_index(
    index,
    choice: LabelChoice = LabelChoice(),
    min_per_class: int = MIN_PER_CLASS,
    folds: int = CV_FOLDS,
    min_skill: float | None = None,
) -> FitResult:
    """Fit (and save next to the index) a classifier on the index's descriptors and ``choice``'s
    labels, with its cross-validated accuracy per class; a note instead when the labels do not give
    at least two classes of ``min_per_class`` photos, or when the photos cannot predict them
    (``skill`` under ``min_skill``, default ``MIN_SKILL``): then an old classifier is removed."""
    _, vectors, labels = index_labels(index, choice)
    counts = eligible_labels(labels, min_per_class)
    if len(counts) < MIN_CLASSES:
        _forget_refusal(index)
        removed = DescriptorClassifier.remove(index.directory)
        return FitResult(
            None,
            _too_few_note(labels, counts, min_per_class, choice)
            + ("; the old classifier was removed" if removed else ""),
            removed,
        )
    use = np.fromiter((label in counts for label in labels), dtype=bool, count=len(labels))
    x, y = vectors[use], [label for label in labels if label in counts]
    min_skill = MIN_SKILL if min_skill is None else min_skill
    cv = cross_validate(x, y, folds)
    info = {
        **choice.to_dict(),
        "min_per_class": min_per_class,
        "label_counts": counts,
        "all_label_counts": dict(sorted(Counter(labels).items())),
        "cv": cv,
        "skill": skill(cv),
        "min_skill": min_skill,
    }
    if info["skill"] is not None and info["skill"] < min_skill:
        return _refuse(index, info, choice)
    clf = fit(x, y, model_id=index.spec.model_id, info=info)
    clf.save(index.directory)
    _forget_refusal(index)
    left_out = len(labels) - len(y)
    note = f"classifier fitted on {len(y)} photos in {len(counts)} classes ({choice.describe()})"
    if cv["accuracy"] is not None:
        note += f"; {cv['folds']}-fold cross-validated top-1 {cv['accuracy']:.1%}"
        if cv["rows"] < len(y):
            note += f" (on a sample of {cv['rows']} photos)"
    if left_out:
        note += f"; {left_out} photos in labels with fewer than {min_per_class} photos left out"
    return FitResult(clf, note, True)


def _too_few_note(labels, counts: dict, min_per_class: int, choice: LabelChoice) -> str:
    found = len(set(labels))
    return (
        f"no classifier: it needs at least {MIN_CLASSES} labels with {min_per_class}+ photos each "
        f"({choice.describe()}; found {found} label{'s' if found != 1 else ''}, {len(counts)} with enough photos)"
    )


def _refused_note(info: dict, choice: LabelChoice) -> str:
    cv = info["cv"]
    return (
        f"no classifier: the photos do not predict their {len(info['label_counts'])} labels "
        f"({choice.describe()}): {cv['folds']}-fold cross-validated top-1 {cv['accuracy']:.1%} against "
        f"{_chance(cv, info['label_counts']):.1%} by always answering the largest (skill {info['skill']:.2f}, "
        f"{info['min_skill']:.2f} needed)"
    )


def refusal(index) -> str | None:
    """Why the index's folder labels have no classifier when the photos do not predict them (the
    refusal's numbers, one line without "no classifier: "); None when they were not refused."""
    info = _load_refusal(index)
    if info is None or load(index) is not None:
        return None
    return _refused_note(info, LabelChoice.from_dict(info)).removeprefix("no classifier: ")


def _save_refusal(index, info: dict) -> None:
    """Remember refused labels, so that ``auto_fit`` does not cross-validate them after every update."""
    path = Path(index.directory) / REFUSED_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({**info, "model_id": index.spec.model_id}, indent=1))
    os.replace(tmp, path)


def _load_refusal(index) -> dict | None:
    """The refused labels' record for this index's model (None: none, damaged, or another model's)."""
    try:
        info = json.loads((Path(index.directory) / REFUSED_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not _complete(info) or info.get("model_id") != index.spec.model_id:
        return None
    return info


def _complete(info) -> bool:
    """Does a refusal record hold the numbers its note and the refit rule read (not one edited by hand)?"""
    try:
        cv, counts = info["cv"], info["label_counts"]
        numbers = (info["skill"], info["min_skill"], cv["accuracy"], cv["folds"], _chance(cv, counts))
        return isinstance(counts, dict) and all(isinstance(v, (int, float)) for v in numbers)
    except (KeyError, TypeError, AttributeError, ValueError, ZeroDivisionError):
        return False


def _forget_refusal(index) -> None:
    try:
        os.unlink(Path(index.directory) / REFUSED_FILE)
    except FileNotFoundError:
        pass


def labels_changed(old: dict, new: dict) -> float:
    """How much label counts moved, as a share of the old total (0 = identical)."""
    total = sum(old.values()) or 1
    return sum(abs(new.get(k, 0) - old.get(k, 0)) for k in set(old) | set(new)) / total


def auto_fit(index, min_per_class: int = MIN_PER_CLASS, threshold: float = REFIT_CHANGE) -> FitResult:
    """The automatic rule run after ``index``: fit when the labels allow it and there is no
    classifier; fit again when its labels changed by more than ``threshold`` (or its eligible labels
    changed); keep it otherwise. A classifier fitted from a CSV that is gone is kept as it is."""
    try:
        current = load(index)
    except UserError:  # damaged, or for another model: fitting again replaces it
        current = None
    info = current.info if current is not None else _load_refusal(index)
    if info is None:
        return fit_index(index, LabelChoice(), min_per_class)
    choice = LabelChoice.from_dict(info)
    if current is not None and "skill" not in info:  # fitted before the rule: judged now, no refit
        weak = skill(info.get("cv") or {}, info.get("label_counts"))
        if weak is not None and weak < MIN_SKILL:
            return _refuse(index, {**info, "skill": weak, "min_skill": MIN_SKILL}, choice)
    if current is not None and choice.csv is not None and not Path(choice.csv).is_file():
        return FitResult(current, f"classifier kept: its labels file {choice.csv} is gone")
    if choice.csv is not None and not Path(choice.csv).is_file():  # refused CSV labels, gone
        choice = LabelChoice()
    _, _, labels = index_labels(index, choice)
    min_per_class = int(info.get("min_per_class", min_per_class))
    min_skill = info.get("min_skill")  # the one it was refused or fitted with (None: today's)
    counts = eligible_labels(labels, min_per_class)
    old = info.get("all_label_counts") or info.get("label_counts") or {}
    change = labels_changed(old, dict(Counter(labels)))
    if set(counts) == set(info.get("label_counts") or ()) and change <= threshold:
        if current is None:
            return FitResult(
                None,
                f"{_refused_note(info, choice)}; labels changed {change:.0%}, tried again above {threshold:.0%}",
            )
        return FitResult(
            current,
            f"classifier kept ({len(current.classes)} classes; labels changed {change:.0%}, "
            f"refit above {threshold:.0%})",
        )
    result = fit_index(index, choice, min_per_class, min_skill=min_skill)
    if result.classifier is not None:
        result.note = f"labels changed {change:.0%}: " + result.note
    return result


def after_update(index, report) -> str | None:
    """``auto_fit`` after an update that added, changed or removed photos (None when it changed
    nothing): the one-line note for the user; a mistake (say, a labels CSV that became malformed)
    is that note too, never a failure of the update itself."""
    if not (report.added or report.updated or report.removed):
        return None
    try:
        return auto_fit(index).note
    except UserError as e:
        return f"classifier not refitted: {e}"


def classify_vectors(index, descriptors, k: int = 5):
    """Top-``k`` (class, probability) per descriptor row from the index's classifier; None without one."""
    clf = load(index)
    return None if clf is None else clf.top(descriptors, k)


MODEL_SOURCE = "model"  # the model's own head (torchvision's ImageNet classifier, or one from `train`)
FOLDERS_SOURCE = "folders"  # the classifier fitted on the index's descriptors and labels
NONE_SOURCE = "folders_none"  # present when the query is far from every folder: "none of these"


def query_classes(index, descriptors, logits=None, k: int = 5) -> list[dict[str, list[tuple[str, float]]]]:
    """Per query, the top-``k`` (class, probability) of each classifier the index has, by source:
    ``model`` from the model's logits (same forward pass as ``descriptors``), ``folders`` from the
    descriptor classifier, and ``folders_none`` ({nearest, similarity, bound}) when that classifier
    says "none of these". An empty dict for a query when the index has neither."""
    n = len(np.atleast_2d(descriptors)) if len(descriptors) else 0
    out: list[dict] = [{} for _ in range(n)]
    if logits is not None and index.spec.class_names and n:
        for row, top in zip(out, top_classes(logits, index.spec.class_names, k)):
            row[MODEL_SOURCE] = top
    clf = load(index) if n else None
    for row, verdict in zip(out, clf.verdicts(descriptors, k) if clf is not None else []):
        row[FOLDERS_SOURCE] = verdict["top"]
        if not verdict["known"]:  # far from every folder: "none of these"
            row[NONE_SOURCE] = {key: verdict[key] for key in ("nearest", "similarity", "bound")}
    return out


def search_with_classes(index, queries, k: int = 10, top: int = 5, **search_params):
    """(hits per query, classes per query as ``query_classes`` gives them): one forward pass for
    the neighbours and the model's own classes, the descriptor classifier on the same descriptors.
    ``search_params``: those of ``Index.embed_and_search`` (nprobe, ef_search, qe, qe_alpha, rerank, rotations)."""
    found, d, logits = index.embed_and_search(queries, k, with_logits=True, **search_params)
    return found, query_classes(index, d, logits, top)
