"""``index``, ``search``, ``check``, ``info``, ``export``: building and querying an index."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from indexer.search import DEFAULT_ALPHA, DEFAULT_QE, check_options
from retrieval import UserError

from .options import (
    db_option,
    engine_option,
    engine_options,
    index_option,
    index_type_option,
    model_options,
    one_line_text,
    ray_options,
    search_param_options,
    watch_options,
)


@click.command()
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path))
@index_option
@model_options
@engine_options(extra=("ray",), more_help=" ray: decode and embed on a Ray cluster (see --ray-*, docs/ray.md).")
@ray_options
@db_option
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build a new index with an exported model folder (vgg-retrieval export) instead of "
                   "--arch/--weights/...")
@click.option("--workers", type=int, default=None, help="Decode processes (0: decode in-process; default: 0 on 2 cores or fewer, else half the cores, at most 4).")
@click.option("--commit-every", type=int, default=1000, show_default=True,
              help="Save progress every N embedded images (and every 2 minutes).")
@click.option("--precision", type=click.Choice(("int8", "fp32", "bf16")), default=None,
              help="A new index's model: int8 (NNCF, calibrated on up to 128 of the photos), fp32, or bf16 (the "
                   "FP32 model run in bf16 by OpenVINO, on CPUs with AMX or AVX512-BF16) "
                   "[default: int8 where OpenVINO runs it, else fp32; an existing index keeps its own].")
@click.option("--throughput", is_flag=True,
              help="OpenVINO's throughput mode: several batches in flight on several CPU streams while the next "
                   "photos are prepared (benchmarks/speed.py measures it against the default latency mode).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--forget-missing", is_flag=True,
              help="Remove the entries of folders that cannot be listed (a missing disk, a folder it may not "
                   "read) instead of keeping them as offline; a missing FOLDER leaves the index's folders.")
@watch_options
@index_type_option
def index(folders, index_dir, arch, weights, pooling, input_size, input_policy, scales, trim_borders, class_names,
          engine, batch_size, threads, db_url, model_dir, workers, commit_every, precision, throughput, quiet,
          forget_missing, ray_address, ray_actors, ray_model_engine):
    """Index (or update) FOLDERS into the index at --index.

    New and changed images are embedded, deleted ones leave the index, unchanged files cost a stat.
    With no FOLDERS, every folder the index already knows is updated. A folder that cannot be listed
    (an unplugged disk) keeps its entries, marked offline, until it is back or --forget-missing.
    """
    from indexer import EngineChoice, ModelChoice, open_or_create, ray_settings

    meta = click.get_current_context().meta
    ray = ray_settings(engine, ray_address, ray_actors, ray_model_engine, threads)
    if throughput and (engine != "openvino" or ray is not None):
        raise UserError(f"--throughput is OpenVINO's throughput mode: it applies with --engine openvino, not {engine}")
    with _progress_bar("calibrating INT8", quiet) as calibration_progress:
        model = ModelChoice(arch, weights, pooling, input_size, trim_borders, input_policy, scales, model_dir,
                            class_names, precision)
        run = EngineChoice(engine, batch_size, threads, ray, {"performance": "THROUGHPUT"} if throughput else None)
        idx = open_or_create(index_dir, folders, model, run, db_url=db_url, index_type=meta.get("index_type", "auto"),
                             calibration_progress=calibration_progress, log=lambda line: click.echo(line, err=True))
    with idx:
        if meta.get("watch"):  # --watch: indexer.update.watch runs the updates
            return _watch(idx, index_dir, folders, workers, quiet, commit_every, meta["watch"])
        report = idx.update(folders, workers=workers, progress=not quiet, commit_every=commit_every,
                            forget_missing=forget_missing)
        for note in report.notes:
            click.echo(f"note: {one_line_text(note)}")
        click.echo(f"{index_dir}: {report.summary()}; {idx.count} images in the index")
        for path, reason in report.offline:
            click.echo(f"  offline {one_line_text(path)}: {reason}; its entries are kept "
                       f"(--forget-missing removes them)")
        for path, reason in report.errors:
            click.echo(f"  skipped {one_line_text(path)}: {one_line_text(reason)}")
        from indexer.classify import after_update

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
    from indexer.update import watch

    click.echo(f"watching {', '.join(map(str, folders)) or 'the index folders'} every {interval:g}s "
               f"(Ctrl-C or SIGTERM to stop)", err=True)
    stats = watch(idx, folders, interval, workers=workers, progress=not quiet, commit_every=commit_every,
                  out=lambda line: click.echo(line))
    how = "an update was interrupted; " if stats.interrupted else ""
    click.echo(f"stopped watching {index_dir}: {how}{idx.count} images in the index "
               f"({stats.updates} updates in {stats.passes} passes)", err=True)


def _echo_hits(hits) -> None:
    """One line per hit, whatever its file is called; a file of an offline folder says so."""
    for rank, h in enumerate(hits, 1):
        click.echo(f"  {rank:3d}. {h.score:.4f}  {one_line_text(h.where)}" +
                   (f"  [{one_line_text(h.label)}]" if h.label else "") + ("  (offline)" if h.offline else ""))


def _online(hits, skip_offline: bool):
    return [h for h in hits if not h.offline] if skip_offline else hits


def _search_texts(idx, texts, top_k, as_json, threads, skip_offline=False) -> None:
    from indexer.text import TextSearcher

    for text, hits in zip(texts, TextSearcher(idx, threads=threads).search(texts, top_k)):
        hits = _online(hits, skip_offline)
        if as_json:
            click.echo(json.dumps({"query": text, "text": True, "results": [h.as_json() for h in hits]}))
        else:
            click.echo(f"text: {one_line_text(text)}")
            _echo_hits(hits)


# JSON keys and text labels of each classifier's top classes (indexer.classify.index_classes.query_classes)
CLASS_OUTPUTS = {"model": ("classes", "classes (model)"), "folders": ("folder_classes", "classes (folders)")}


def _search_images(idx, images, top_k, as_json, search_params, query_options, skip_offline=False) -> None:
    from indexer.classify import search_with_classes

    results, classes = search_with_classes(idx, [str(p) for p in images], top_k, **search_params, **query_options)
    for query, hits, tops in zip(images, results, classes):
        hits = _online(hits, skip_offline)
        if as_json:
            row = {"query": str(query), "results": [h.as_json() for h in hits], "settings": query_options}
            for source, top in tops.items():
                row[CLASS_OUTPUTS[source][0]] = [{"class": c, "p": round(p, 6)} for c, p in top]
            click.echo(json.dumps(row))
        else:
            click.echo(one_line_text(str(query)))
            for source, top in tops.items():
                click.echo(f"  {CLASS_OUTPUTS[source][1]}: " + ", ".join(f"{c} {p:.3f}" for c, p in top))
            _echo_hits(hits)


@click.command()
@click.argument("images", nargs=-1, required=False, type=click.Path(path_type=Path))
@index_option
@click.option("--top-k", "-k", type=int, default=10, show_default=True, help="Results per query.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query per line.")
@click.option("--text", "texts", multiple=True, metavar="WORDS",
              help="Search by words (repeatable), e.g. --text \"a red flower\"; needs vgg-retrieval text-train.")
@engine_options
@db_option
@search_param_options
@click.option("--qe", type=int, default=DEFAULT_QE, show_default=True, metavar="K",
              help="Query expansion (alpha-QE) of image queries: search again with the query plus its "
                   "top K hits, weighted by score ** --qe-alpha (0: off).")
@click.option("--qe-alpha", type=float, default=DEFAULT_ALPHA, show_default=True,
              help="The exponent of the hits' scores in query expansion.")
@click.option("--rotations/--no-rotations", default=False, show_default=True,
              help="Also search each image query turned by 90/180/270 degrees; an image keeps its best score "
                   "(for photos without EXIF orientation). Four times the query's model time.")
@click.option("--skip-offline", is_flag=True,
              help="Leave out the files of offline folders (shown marked \"(offline)\" otherwise; fewer than "
                   "--top-k results may remain).")
def search(images, index_dir, top_k, as_json, texts, engine, batch_size, threads, db_url, qe, qe_alpha,
           rotations, skip_offline):
    """Find the indexed images most similar to each of IMAGES, with their top-5 classes from each
    classifier the index has: its model's own, and the one learnt from its folders (`classes`)."""
    from indexer import Index

    if not images and not texts:
        raise UserError("name the IMAGES to search with, or search by words with --text \"...\"")
    check_options(qe, qe_alpha)
    query_options = {"qe": qe, "qe_alpha": qe_alpha, "rotations": rotations}
    options = {"engine": engine, "db_url": db_url, "batch_size": batch_size, "threads": threads}
    if texts:
        with Index.open(index_dir, **options) as idx:
            _search_texts(idx, texts, top_k, as_json, threads, skip_offline)
    if images:
        with Index.open(index_dir, **options) as idx:
            _search_images(idx, images, top_k, as_json, click.get_current_context().meta["search_params"],
                           query_options, skip_offline)


@click.command()
@index_option
@db_option
@click.option("--deep", type=int, default=0, show_default=True,
              help="Also re-embed this many indexed files and compare with the stored vectors.")
@engine_option
def check(index_dir, db_url, deep, engine):
    """Prove the metadata database and the FAISS vectors agree (exit 1 if not)."""
    from indexer import Index

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
    from indexer import Index
    from indexer.storage import describe_whitening
    from indexer.storage import since_text

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
                click.echo(f"offline: {one_line_text(f)} (since {since_text(at)}: {reason}; its entries are kept)")
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
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write model.onnx, model.xml/.bin and model.json into.")
@model_options
def export(out, arch, weights, pooling, input_size, input_policy, scales, trim_borders, class_names):
    """Export the descriptor model to ONNX and OpenVINO IR with a JSON sidecar (and its classifier's
    class scores as a second output when the weights carry one)."""
    from indexer import build_model
    from retrieval.engines import export_model

    spec, net = build_model(arch, weights, pooling, input_size, trim_borders, class_names, input_policy, scales)
    export_model(spec, net, out)
    click.echo(f"exported {spec.describe()} to {out}")


COMMANDS = (index, search, check, info, export)
