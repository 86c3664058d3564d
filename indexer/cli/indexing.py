"""``index``, ``search``, ``check``, ``info``, ``export``: building and querying an index."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import click

from indexer import EngineChoice, ModelChoice, open_or_create, ray_settings
from indexer.classify import after_update
from indexer.update import watch
from retrieval import UserError

from .options import (
    db_option,
    engine_options,
    index_option,
    index_type_option,
    model_options,
    one_line_text,
    ray_options,
    watch_options,
)


@click.command()
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path))
@index_option
@model_options
@engine_options(
    extra=("ray",), more_help=" ray: decode and embed on a Ray cluster (see --ray-*, docs/ray.md)."
)
@ray_options
@db_option
@click.option(
    "--model",
    "model_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Build a new index with an exported model folder (vgg-retrieval export) instead of "
    "--arch/--weights/...",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Decode processes (0: decode in-process; default: 0 on 2 cores or fewer, else half the cores, at most 4).",
)
@click.option(
    "--commit-every",
    type=int,
    default=1000,
    show_default=True,
    help="Save progress every N embedded images (and every 2 minutes).",
)
@click.option(
    "--precision",
    type=click.Choice(("int8", "fp32", "bf16")),
    default=None,
    help="A new index's model: int8 (NNCF, calibrated on up to 128 of the photos), fp32, or bf16 (the "
    "FP32 model run in bf16 by OpenVINO, on CPUs with AMX or AVX512-BF16) "
    "[default: int8 where OpenVINO runs it, else fp32; an existing index keeps its own].",
)
@click.option(
    "--throughput",
    is_flag=True,
    help="OpenVINO's throughput mode: several batches in flight on several CPU streams while the next "
    "photos are prepared (benchmarks/model_variants.py measures it against the default latency mode).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option(
    "--forget-missing",
    is_flag=True,
    help="Remove the entries of folders that cannot be listed (a missing disk, a folder it may not "
    "read) instead of keeping them as offline; a missing FOLDER leaves the index's folders.",
)
@watch_options
@index_type_option
def index(
    folders,
    index_dir,
    arch,
    weights,
    pooling,
    input_size,
    input_policy,
    scales,
    trim_borders,
    class_names,
    engine,
    batch_size,
    threads,
    db_url,
    model_dir,
    workers,
    commit_every,
    precision,
    throughput,
    quiet,
    forget_missing,
    ray_address,
    ray_actors,
    ray_model_engine,
):
    """Index (or update) FOLDERS into the index at --index.

    New and changed images are embedded, deleted ones leave the index, unchanged files cost a stat.
    With no FOLDERS, every folder the index already knows is updated. A folder that cannot be listed
    (an unplugged disk) keeps its entries, marked offline, until it is back or --forget-missing.
    """

    meta = click.get_current_context().meta
    ray = ray_settings(engine, ray_address, ray_actors, ray_model_engine, threads)
    if throughput and (engine != "openvino" or ray is not None):
        raise UserError(
            f"--throughput is OpenVINO's throughput mode: it applies with --engine openvino, not {engine}"
        )
    with _progress_bar("calibrating INT8", quiet) as calibration_progress:
        model = ModelChoice(
            arch,
            weights,
            pooling,
            input_size,
            trim_borders,
            input_policy,
            scales,
            model_dir,
            class_names,
            precision,
        )
        run = EngineChoice(
            engine, batch_size, threads, ray, {"performance": "THROUGHPUT"} if throughput else None
        )
        idx = open_or_create(
            index_dir,
            folders,
            model,
            run,
            db_url=db_url,
            index_type=meta.get("index_type", "auto"),
            calibration_progress=calibration_progress,
            log=lambda line: click.echo(line, err=True),
        )
    with idx:
        if meta.get("watch"):  # --watch: indexer.update.watch runs the updates
            return _watch(idx, index_dir, folders, workers, quiet, commit_every, meta["watch"])
        report = idx.update(
            folders,
            workers=workers,
            progress=not quiet,
            commit_every=commit_every,
            forget_missing=forget_missing,
        )
        for note in report.notes:
            click.echo(f"note: {one_line_text(note)}")
        click.echo(f"{index_dir}: {report.summary()}; {idx.count} images in the index")
        for path, reason in report.offline:
            click.echo(
                f"  offline {one_line_text(path)}: {reason}; its entries are kept "
                f"(--forget-missing removes them)"
            )
        for path, reason in report.errors:
            click.echo(f"  skipped {one_line_text(path)}: {one_line_text(reason)}")

        note = after_update(idx, report)
        if note:
            click.echo(note)


@contextmanager
def _progress_bar(desc: str, quiet: bool):
    """A ``progress(done, total)`` callback drawing a tqdm bar (made on the first call), or None."""
    if quiet:
        yield lambda done, total: None
        return
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def _watch(idx, index_dir, folders, workers, quiet, commit_every, interval) -> None:

    click.echo(
        f"watching {', '.join(map(str, folders)) or 'the index folders'} every {interval:g}s "
        f"(Ctrl-C or SIGTERM to stop)",
        err=True,
    )
    stats = watch(
        idx,
        folders,
        interval,
        workers=workers,
        progress=not quiet,
        commit_every=commit_every,
        out=lambda line: click.echo(line),
    )
    how = "an update was interrupted; " if stats.interrupted else ""
    click.echo(
        f"stopped watching {index_dir}: {how}{idx.count} images in the index "
        f"({stats.updates} updates in {stats.passes} passes)",
        err=True,
    )


COMMANDS = (index,)
