"""Classes for queries: a classifier on the stored descriptors (``descriptor_classifier``), fitted
from the index's folders or a CSV and kept with the index (``index_classes``)."""

from .descriptor_classifier import NONE_OF_THESE, DescriptorClassifier
from .index_classes import (
    MIN_CLASSES,
    MIN_PER_CLASS,
    MIN_SKILL,
    LabelChoice,
    after_update,
    fit_index,
    query_classes,
    refusal,
    search_with_classes,
)
from .index_classes import load as load_classifier

__all__ = [
    "DescriptorClassifier",
    "NONE_OF_THESE",
    "MIN_CLASSES",
    "MIN_PER_CLASS",
    "MIN_SKILL",
    "LabelChoice",
    "after_update",
    "fit_index",
    "load_classifier",
    "query_classes",
    "refusal",
    "search_with_classes",
]
