"""``classes``: fit the index's own classifier on its stored descriptors and folder (or CSV) labels."""

from __future__ import annotations

import json
from pathlib import Path

import click

from indexer import Index
from indexer.classify import MIN_PER_CLASS, DescriptorClassifier, LabelChoice, fit_index

from .options import db_option, index_option


@click.command()
@index_option
@db_option
@click.option(
    "--depth",
    type=int,
    default=None,
    help="Label = the first N folders below the indexed folder [default: each photo's own folder name].",
)
@click.option(
    "--labels",
    "labels_csv",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A CSV of path,label rows (paths relative to the CSV's folder, or absolute) instead of folders.",
)
@click.option(
    "--min-per-class", type=int, default=None, help="Labels with fewer photos are left out [default: 10]."
)
@click.option(
    "--min-skill",
    type=float,
    default=None,
    help="Refuse labels the photos do not predict: the cross-validated top-1 must close this share of "
    "the gap from always answering the largest label to perfect [default: 0.1; 0 keeps any labels "
    "predicted at least as well as that].",
)
@click.option("--remove", is_flag=True, help="Delete the index's classifier instead.")
@click.option("--json", "as_json", is_flag=True, help="The result as one JSON object.")
def classes(index_dir, db_url, depth, labels_csv, min_per_class, min_skill, remove, as_json):
    """Fit a classifier on the index's descriptors and labels (no re-embedding) and report its
    cross-validated accuracy per class; `search` and the UI then show each query's top-5 classes.
    `index` fits one by itself when the folders give two or more labels with enough photos each
    that the photos predict (see --min-skill)."""

    with Index.open(index_dir, db_url=db_url) as idx:
        if remove:
            gone = DescriptorClassifier.remove(idx.directory)
            click.echo("classifier removed" if gone else "the index has no classifier")
            return
        choice = LabelChoice(depth=depth, csv=None if labels_csv is None else str(labels_csv))
        result = fit_index(
            idx,
            choice,
            MIN_PER_CLASS if min_per_class is None else min_per_class,
            min_skill=min_skill,
        )
    clf = result.classifier
    if as_json:
        click.echo(
            json.dumps(
                {
                    "note": result.note,
                    "classes": list(clf.classes) if clf else [],
                    "cv": clf.info["cv"] if clf else None,
                    "label_counts": clf.info["label_counts"] if clf else {},
                }
            )
        )
        return
    click.echo(result.note)
    if clf is not None:
        cv, counts = clf.info["cv"], clf.info["label_counts"]
        width = max(len(c) for c in clf.classes)
        for c in clf.classes:
            acc = cv["per_class"].get(c)
            click.echo(
                f"  {c:<{width}}  {counts[c]:6d} photos  "
                + (f"cross-validated top-1 {acc:.1%}" if acc is not None else "")
            )


COMMANDS = (classes,)
