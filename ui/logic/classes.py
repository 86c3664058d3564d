"""The query's classes as the pages say them (no Streamlit here), one word per source on every page:

- **Folder classes**: learnt from the index's own folders (``indexer.classify``), with "none of these"
  when the query is far from every folder (the classifier's calibrated bound);
- **ImageNet classes** (or **Model classes** for another head): the model's own classifier head.
"""

from __future__ import annotations

from dataclasses import dataclass

from indexer.classify import MIN_CLASSES, MIN_PER_CLASS, NONE_OF_THESE, load_classifier, refusal
from retrieval import UserError

FOLDER_WORD = "Folder classes"
IMAGENET_CLASSES = 1000


def model_word(n_classes: int) -> str:
    return "ImageNet classes" if n_classes == IMAGENET_CLASSES else "Model classes"


@dataclass(frozen=True)
class ClassLine:
    word: str  # FOLDER_WORD or model_word(...)
    source: str  # where they come from, in words
    top: tuple = ()  # ((class, probability), ...), likeliest first; empty: none shown
    known: bool = True  # False: "none of these" (the query is far from every class)
    note: str = ""  # why there are none, or what "none of these" was measured against

    def text(self, k: int = 3) -> str:
        """One line: ``bees 62%, ants 30%``, ``none of these (nearest: bees, 0.41 < 0.52)`` or the note."""
        if not self.known:
            return f"{NONE_OF_THESE} ({self.note})" if self.note else NONE_OF_THESE
        if self.top:  # the likeliest always; the others from 1%
            return ", ".join(f"{c} {p:.0%}" for i, (c, p) in enumerate(self.top[:k]) if i == 0 or p >= 0.01)
        return self.note


def folder_source(clf) -> str:
    n = len(clf.classes)
    fitted = int(clf.info.get("min_per_class") or MIN_PER_CLASS)
    return f"learnt from the index's {n} folders with {fitted}+ photos each"


def query_class_lines(svc, query, k: int = 5) -> list[ClassLine]:
    """The classes of ``query`` from each source the index has, or one line saying it has none."""
    lines: list[ClassLine] = []
    top, note = svc.classify(query, k)
    names = svc.spec.class_names
    if top:
        lines.append(ClassLine(model_word(len(names)), f"the model's {len(names)}-class head", tuple(top)))
    try:
        clf = load_classifier(svc.index)
    except UserError as e:
        lines.append(ClassLine(FOLDER_WORD, "the index's folders", (), True, str(e)))
        clf = None
    if clf is not None:
        v = clf.verdicts(query.vector, k)[0]
        detail = (
            f"nearest {v['nearest']}: similarity {v['similarity']:.2f}, below its {v['bound']:.2f}"
            if "nearest" in v
            else ""
        )
        lines.append(ClassLine(FOLDER_WORD, folder_source(clf), tuple(v["top"]), v["known"], detail))
    if lines:
        return lines
    model = note.rstrip(".") if names else "the model has no classifier head (no ImageNet classes)"
    return [
        ClassLine(
            "Classes",
            "none",
            (),
            True,
            f"none: {model}, and the index has no {FOLDER_WORD.lower()} ({_why_no_folder_classes(svc)})",
        )
    ]


def _why_no_folder_classes(svc) -> str:
    refused = refusal(svc.index)
    if refused is not None:  # enough folders, but they say nothing the photos show
        return refused
    return (
        f"they need {MIN_CLASSES}+ folders with {MIN_PER_CLASS}+ photos each, "
        "or `vgg-retrieval classes --min-per-class N`"
    )


def index_class_rows(svc) -> list[tuple[str, str]]:
    """(word, what the index has) for the Index page: the same words as the Search page."""
    names = svc.spec.class_names
    model = (
        (model_word(len(names)), f"{len(names)} (the model's own head)")
        if names
        else ("ImageNet classes", "none (this model has no classifier head)")
    )
    try:
        clf = load_classifier(svc.index)
        folders = (
            f"{len(clf.classes)} ({folder_source(clf)}): {', '.join(clf.classes)}"
            if clf is not None
            else f"none ({_why_no_folder_classes(svc)})"
        )
    except UserError as e:
        folders = str(e)
    return [(FOLDER_WORD, folders), model]
