"""The ``vgg-retrieval`` command line: a thin shell over ``indexer.Index`` and ``retrieval``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from retrieval.engines import DEFAULT_ENGINE, ENGINES
from retrieval.errors import UserError
from retrieval.spec import ARCHS, DEFAULT_INPUT_SIZE, POOLINGS

ENV_INDEX = "VGG_RETRIEVAL_INDEX"


def model_options(f):
    """--arch/--weights/--pooling/--size: the descriptor model. Unset means: the index's model
    (for an existing index) or the defaults (vgg16, gap, IMAGENET1K_V1 or $VGG_RETRIEVAL_WEIGHTS)."""
    f = click.option("--trim-borders/--no-trim-borders", "trim_borders", default=None,
                     help="Cut near-uniform border bands (padding, letterboxing, a screenshot's canvas) before "
                          "embedding; part of the model's identity [default: on for new models; an existing "
                          "index keeps its own].")(f)
    f = click.option("--size", "input_size", type=int, default=None,
                     help=f"Longer image side fed to the model [default: {DEFAULT_INPUT_SIZE}].")(f)
    f = click.option("--pooling", type=click.Choice(POOLINGS), default=None,
                     help="Global pooling of conv5: gap (average), mac (max), gem (p=3) [default: gap].")(f)
    f = click.option("--weights", default=None,
                     help="IMAGENET1K_V1, 'random', or a .pth file (torchvision state_dict or vgg-retrieval "
                          "checkpoint) [default: $VGG_RETRIEVAL_WEIGHTS, else IMAGENET1K_V1].")(f)
    f = click.option("--arch", type=click.Choice(ARCHS), default=None, help="VGG variant [default: vgg16].")(f)
    return f


def engine_options(f=None, *, extra=(), more_help=""):
    """--engine/--batch-size/--threads; ``extra``: more --engine choices (index: ``ray``)."""
    if f is None:
        return lambda g: engine_options(g, extra=extra, more_help=more_help)
    f = click.option("--threads", type=int, default=None, help="Inference threads [default: all cores].")(f)
    f = click.option("--batch-size", type=int, default=8, show_default=True, help="Images per forward pass.")(f)
    f = click.option("--engine", type=click.Choice(ENGINES + tuple(extra)), default=DEFAULT_ENGINE, show_default=True,
                     help="Inference engine." + more_help)(f)
    return f


def ray_options(f):
    """--ray-address/--ray-actors/--ray-model-engine of ``index --engine ray`` (indexer.ray_engine)."""
    f = click.option("--ray-model-engine", type=click.Choice(("openvino", "onnxruntime")), default=None,
                     help="With --engine ray: the inference engine each Ray actor runs [default: openvino].")(f)
    f = click.option("--ray-actors", type=int, default=None,
                     help="With --engine ray: embedding actors, each holding one model and reserving "
                          "--threads CPUs (default 1) [default: the cluster's CPUs less ~1/8 for decoding].")(f)
    f = click.option("--ray-address", default=None,
                     help="With --engine ray: the cluster to use: 'auto' (started with `ray start` on this "
                          "machine), ray://HOST:10001 (Ray Client) [default: a private local Ray].")(f)
    return f


def _ray_options(engine, ray_address, ray_actors, ray_model_engine, threads):
    """RayOptions for --engine ray (None otherwise); Ray options without it are a mistake."""
    if engine != "ray":
        given = [n for n, v in (("--ray-address", ray_address), ("--ray-actors", ray_actors),
                                ("--ray-model-engine", ray_model_engine)) if v is not None]
        if given:
            raise UserError(f"{', '.join(given)} only apply with --engine ray")
        return None
    from indexer.ray_engine import RayOptions, import_ray

    import_ray()  # one line saying how to install it, before anything is built
    return RayOptions(address=ray_address, actors=ray_actors, model_engine=ray_model_engine or "openvino",
                      cpus_per_actor=float(threads or 1)).validated()


def index_option(f):
    return click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
                        envvar=ENV_INDEX, required=True, help=f"Index folder [env: {ENV_INDEX}].")(f)


ENV_DB = "VGG_RETRIEVAL_DB"


def watch_options(f):
    """--watch/--interval of ``index``; kept out of its signature (``ctx.meta["watch"]``: the interval or None)."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, watch=False, interval=None, **kwargs):
        if interval is not None and not watch:
            raise UserError("--interval only applies with --watch")
        if watch:
            from indexer.watch import DEFAULT_INTERVAL

            interval = DEFAULT_INTERVAL if interval is None else interval
            if interval <= 0:
                raise UserError(f"--interval must be a positive number of seconds (got {interval:g})")
            click.get_current_context().meta["watch"] = interval
        return f(*args, **kwargs)

    wrapper = click.option("--interval", type=float, default=None,
                           help="With --watch: seconds between looks at the folders [default: 30].")(wrapper)
    return click.option("--watch", is_flag=True,
                        help="Keep running: index now, then whenever files are added, changed or removed "
                             "(polling every --interval; a pass with no change only stats the files). "
                             "SIGINT/SIGTERM stop it with the index consistent.")(wrapper)


def index_type_option(f):
    """--index-type of ``index``: chosen when the index is created (``ctx.meta["index_type"]``)."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, index_type=None, **kwargs):
        if index_type is not None:
            from indexer import vectors
            from indexer.index import Index

            index_type = vectors.parse_type(index_type, 512)
            if Index.exists(kwargs["index_dir"], kwargs.get("db_url")):
                with Index.open(kwargs["index_dir"], db_url=kwargs.get("db_url")) as idx:
                    have = idx.vectors_info()["index_type"]
                if have != index_type:
                    raise UserError(f"--index-type {index_type}: the index at {kwargs['index_dir']} was created "
                                    f"with {have}; the type is chosen when an index is created")
            click.get_current_context().meta["index_type"] = index_type
        return f(*args, **kwargs)

    return click.option("--index-type", default=None, metavar="TYPE",
                        help="For a new index: auto, flat, hnsw, ivf, ivfpq, or a FAISS factory string "
                             "(docs/index-types.md) [default: auto: exact below 200,000 images, then IVF].")(wrapper)


def search_param_options(f):
    """--nprobe/--ef-search of ``search`` (``ctx.meta["search_params"]``)."""
    import functools

    @functools.wraps(f)
    def wrapper(*args, nprobe=None, ef_search=None, **kwargs):
        for name, value in (("--nprobe", nprobe), ("--ef-search", ef_search)):
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1 (got {value})")
        click.get_current_context().meta["search_params"] = {"nprobe": nprobe, "ef_search": ef_search}
        return f(*args, **kwargs)

    wrapper = click.option("--ef-search", type=int, default=None,
                           help="HNSW search breadth (hnsw indexes, IVF's coarse quantizer) "
                                "[default: the index's, 64].")(wrapper)
    return click.option("--nprobe", type=int, default=None,
                        help="IVF lists visited per query: higher = better recall, slower "
                             "[default: the index's, 64].")(wrapper)


def _watch(idx, index_dir, folders, workers, quiet, commit_every) -> None:
    from indexer.watch import watch

    interval = click.get_current_context().meta["watch"]
    click.echo(f"watching {', '.join(map(str, folders)) or 'the index folders'} every {interval:g}s "
               f"(Ctrl-C or SIGTERM to stop)", err=True)
    stats = watch(idx, folders, interval, workers=workers, progress=not quiet, commit_every=commit_every,
                  out=lambda line: click.echo(line))
    how = "an update was interrupted; " if stats.interrupted else ""
    click.echo(f"stopped watching {index_dir}: {how}{idx.count} images in the index "
               f"({stats.updates} updates in {stats.passes} passes)", err=True)


def db_option(f):
    return click.option("--db", "db_url", default=None, envvar=ENV_DB,
                        help="Metadata database URL, e.g. postgresql://USER@HOST/DB[?schema=NAME]; given once, "
                             "the index folder remembers it (without the password: PGPASSWORD or ~/.pgpass) "
                             f"[env: {ENV_DB}; default: the remembered one, else INDEX/index.sqlite].")(f)


def _build_model(arch, weights, pooling, input_size, trim_borders=None):
    from retrieval.builder import build

    spec, net = build(arch or "vgg16", weights, pooling or "gap", input_size or DEFAULT_INPUT_SIZE)
    if trim_borders is not None:
        spec = spec.replace(trim_borders=trim_borders)
    return spec, net


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vgg-retrieval")
def cli():
    """Image search and duplicate finding with VGG descriptors, FAISS and SQLite."""


@cli.command()
@click.argument("folders", nargs=-1, type=click.Path(path_type=Path))
@index_option
@model_options
@engine_options(extra=("ray",), more_help=" ray: decode and embed on a Ray cluster (see --ray-*, docs/ray.md).")
@ray_options
@db_option
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build a new index with an exported model folder (vgg-retrieval export) instead of "
                   "--arch/--weights/...")
@click.option("--workers", type=int, default=None, help="Decode processes (0: decode in-process).")
@click.option("--commit-every", type=int, default=1000, show_default=True,
              help="Save progress every N embedded images (and every 2 minutes).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@watch_options
@index_type_option
def index(folders, index_dir, arch, weights, pooling, input_size, trim_borders, engine, batch_size, threads, db_url, model_dir,
          workers, commit_every, quiet, ray_address, ray_actors, ray_model_engine):
    """Index (or update) FOLDERS into the index at --index.

    New and changed images are embedded, deleted ones leave the index, unchanged files cost a stat.
    With no FOLDERS, every folder the index already knows is updated.
    """
    from indexer.index import Index

    ray = _ray_options(engine, ray_address, ray_actors, ray_model_engine, threads)
    asked = any(v is not None for v in (arch, weights, pooling, input_size, trim_borders))
    if Index.exists(index_dir, db_url):
        idx = Index.open(index_dir, engine=engine, db_url=db_url, batch_size=batch_size, threads=threads, ray=ray)
        if model_dir is not None:
            from retrieval.export import read_sidecar

            if not (model_dir / "model.json").is_file():
                raise UserError(f"no exported model in {model_dir} (model.json missing)")
            idx.require_model(read_sidecar(model_dir)[0])
        elif asked:
            spec, net = _build_model(arch or idx.spec.arch, weights or idx.spec.weights,
                                     pooling or idx.spec.pooling, input_size or idx.spec.input_size)
            # the input policy stays the index's unless asked for
            spec = spec.replace(trim_borders=idx.spec.trim_borders if trim_borders is None else trim_borders)
            idx.require_model(spec)
            idx._net = net
    else:
        if not folders:
            raise UserError(f"no index at {index_dir} yet: name the FOLDER(s) to index")
        for f in folders:  # before the (slow) model build
            if not f.is_dir():
                raise UserError(f"{'not a folder' if f.exists() else 'folder not found'}: {f}")
        Index.check_can_create(index_dir, db_url)
        if model_dir is not None:
            from retrieval.export import read_sidecar

            if asked:
                raise UserError("--model and --arch/--weights/--pooling/--size/--trim-borders exclude each other")
            if not (model_dir / "model.json").is_file():
                raise UserError(f"no exported model in {model_dir} (model.json missing)")
            spec, net = read_sidecar(model_dir)[0], None
        else:
            spec, net = _build_model(arch, weights, pooling, input_size, trim_borders)
        idx = Index.create(index_dir, spec, net, db_url=db_url, model_dir=model_dir, engine=engine,
                           index_type=click.get_current_context().meta.get("index_type", "auto"),
                           batch_size=batch_size, threads=threads, ray=ray)
        click.echo(f"created index {index_dir} with {spec.describe()}", err=True)
    with idx:
        if click.get_current_context().meta.get("watch"):  # --watch: indexer.watch runs the updates
            return _watch(idx, index_dir, folders, workers, quiet, commit_every)
        report = idx.update(folders, workers=workers, progress=not quiet, commit_every=commit_every)
        click.echo(f"{index_dir}: {report.summary()}; {idx.count} images in the index")
        for path, reason in report.errors:
            click.echo(f"  skipped {path}: {reason}")


@cli.command()
@click.argument("images", nargs=-1, required=False, type=click.Path(path_type=Path))
@index_option
@click.option("--top-k", "-k", type=int, default=10, show_default=True, help="Results per query.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query per line.")
@click.option("--text", "texts", multiple=True, metavar="WORDS",
              help="Search by words (repeatable), e.g. --text \"a red flower\"; needs vgg-retrieval text-train.")
@engine_options
@db_option
@search_param_options
def search(images, index_dir, top_k, as_json, texts, engine, batch_size, threads, db_url):
    """Find the indexed images most similar to each of IMAGES (and their top-5 classes when the
    index's model has a classifier)."""
    from indexer.index import Index

    if not images and not texts:
        raise UserError("name the IMAGES to search with, or search by words with --text \"...\"")
    if texts:
        from retrieval.text.search import TextSearcher

        with Index.open(index_dir, engine=engine, db_url=db_url, batch_size=batch_size, threads=threads) as idx:
            for text, hits in zip(texts, TextSearcher(idx, threads=threads).search(texts, top_k)):
                if as_json:
                    click.echo(json.dumps({"query": text, "text": True, "results": [h.as_json() for h in hits]}))
                else:
                    click.echo(f"text: {text}")
                    for rank, h in enumerate(hits, 1):
                        click.echo(f"  {rank:3d}. {h.score:.4f}  {h.where}" + (f"  [{h.label}]" if h.label else ""))
        if not images:
            return
    with Index.open(index_dir, engine=engine, db_url=db_url, batch_size=batch_size, threads=threads) as idx:
        results, classes = idx.search_and_classify([str(p) for p in images], top_k,
                                                   **click.get_current_context().meta["search_params"])
        for i, (query, hits) in enumerate(zip(images, results)):
            top = classes[i] if classes else None
            if as_json:
                row = {"query": str(query), "results": [h.as_json() for h in hits]}
                if top:
                    row["classes"] = [{"class": c, "p": round(p, 6)} for c, p in top]
                click.echo(json.dumps(row))
            else:
                click.echo(f"{query}")
                if top:
                    click.echo("  classes: " + ", ".join(f"{c} {p:.3f}" for c, p in top))
                for rank, h in enumerate(hits, 1):
                    click.echo(f"  {rank:3d}. {h.score:.4f}  {h.where}" + (f"  [{h.label}]" if h.label else ""))


@cli.command()
@index_option
@db_option
@click.option("--deep", type=int, default=0, show_default=True,
              help="Also re-embed this many indexed files and compare with the stored vectors.")
@click.option("--engine", type=click.Choice(ENGINES), default=DEFAULT_ENGINE, show_default=True)
def check(index_dir, db_url, deep, engine):
    """Prove the metadata database and the FAISS vectors agree (exit 1 if not)."""
    from indexer.index import Index

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


@cli.command()
@index_option
@db_option
@click.option("--errors", "show_errors", is_flag=True, help="List the files that could not be indexed.")
def info(index_dir, db_url, show_errors):
    """What an index holds: model, counts, folders, errors."""
    from indexer.index import Index

    with Index.open(index_dir, db_url=db_url) as idx:
        errors = idx.store.errors()
        click.echo(f"index:   {index_dir}")
        click.echo(f"model:   {idx.spec.describe()}")
        click.echo(f"images:  {idx.count}")
        click.echo(f"errors:  {len(errors)}")
        for r in idx.store.roots():
            click.echo(f"folder:  {r}")
        if show_errors:
            for e in errors:
                click.echo(f"  {e.path}: {e.reason}")


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write model.onnx, model.xml/.bin and model.json into.")
@model_options
def export(out, arch, weights, pooling, input_size, trim_borders):
    """Export the descriptor model to ONNX and OpenVINO IR with a JSON sidecar."""
    from retrieval.export import export_model

    spec, net = _build_model(arch, weights, pooling, input_size, trim_borders)
    export_model(spec, net, out)
    click.echo(f"exported {spec.describe()} to {out}")


from indexer.dedup.cli import dedup  # noqa: E402
cli.add_command(dedup)
from ui.cli import ui  # noqa: E402
cli.add_command(ui)

from retrieval.commands import register  # noqa: E402
register(cli)
from retrieval.text.commands import register as register_text  # noqa: E402
register_text(cli)
from retrieval.video.commands import register as register_video  # noqa: E402
register_video(cli)


def main(argv=None) -> int:
    """Entry point: user mistakes become one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="vgg-retrieval", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("interrupted; the index keeps its last saved state", err=True)
        return 130
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    except SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0][:200]
        click.echo(f"error: index database: {reason}", err=True)
        return 2
    except OSError as e:  # disk full, read-only folder...: the index keeps its last committed state
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        click.echo(f"error:{where} {e.strerror or e}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
