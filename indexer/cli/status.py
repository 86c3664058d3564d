"""``check``, ``info`` and ``export``: an index's health and contents, and the model as files."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from indexer import Index, build_model
from indexer.storage import describe_whitening, since_text
from retrieval.engines import export_model

from .options import (
    db_option,
    engine_option,
    index_option,
    model_options,
    one_line_text,
)


@click.command()
@index_option
@db_option
@click.option(
    "--deep",
    type=int,
    default=0,
    show_default=True,
    help="Also re-embed this many indexed files and compare with the stored vectors.",
)
@engine_option
def check(index_dir, db_url, deep, engine):
    """Prove the metadata database and the FAISS vectors agree (exit 1 if not)."""

    with Index.open(index_dir, engine=engine, db_url=db_url) as idx:
        rep = idx.check(deep=deep)
        for note in rep.notes:
            click.echo(f"note: {note}")
        if rep.ok:
            click.echo(f"{index_dir}: OK ({idx.count} images, model {idx.spec.describe()})")
            return
        for p in rep.problems:
            click.echo(f"problem: {p}")
        click.echo(f"{index_dir}: {len(rep.problems)} problem(s)")
        sys.exit(1)


@click.command()
@index_option
@db_option
@click.option("--errors", "show_errors", is_flag=True, help="List the files that could not be indexed.")
def info(index_dir, db_url, show_errors):
    """What an index holds: model, counts, folders, errors."""

    with Index.open(index_dir, db_url=db_url) as idx:
        errors = idx.store.errors()
        click.echo(f"index:   {index_dir}")
        click.echo(f"model:   {idx.spec.describe()}")
        click.echo(f"weights: {idx.spec.describe_weights()}")
        click.echo(f"precision: {idx.precision.upper()}")
        click.echo(f"images:  {idx.count}")
        click.echo(f"errors:  {len(errors)}")
        click.echo(f"whitening: {describe_whitening(idx)}")
        offline = idx.store.offline_folders()
        _echo_captures(idx.store.capture_summary())
        for r in idx.store.roots():
            since = f" (offline since {since_text(offline[r][0])}: {offline[r][1]})" if r in offline else ""
            click.echo(f"folder:  {one_line_text(r)}{since}")
        for f, (at, reason) in offline.items():
            if f not in idx.store.roots():
                click.echo(
                    f"offline: {one_line_text(f)} (since {since_text(at)}: {reason}; its entries are kept)"
                )
        if show_errors:
            for e in errors:
                click.echo(f"  {one_line_text(e.path)}: {one_line_text(e.reason)}")


def _echo_captures(summary: dict) -> None:
    """The capture metadata ``info`` shows: how many photos are dated, the span, the cameras."""
    if summary["dated"]:
        click.echo(f"captured: {summary['dated']} photos dated, {summary['first']} to {summary['last']}")
    if summary["cameras"]:
        shown = ", ".join(f"{name} ({n})" for name, n in summary["cameras"][:8])
        more = len(summary["cameras"]) - 8
        click.echo(f"cameras: {shown}" + (f" and {more} more" if more > 0 else ""))


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to write model.onnx, model.xml/.bin and model.json into.",
)
@model_options
def export(out, arch, weights, pooling, input_size, input_policy, scales, trim_borders, class_names):
    """Export the descriptor model to ONNX and OpenVINO IR with a JSON sidecar (and its classifier's
    class scores as a second output when the weights carry one)."""

    spec, net = build_model(
        arch, weights, pooling, input_size, trim_borders, class_names, input_policy, scales
    )
    export_model(spec, net, out)
    click.echo(f"exported {spec.describe()} to {out}")


COMMANDS = (check, info, export)
