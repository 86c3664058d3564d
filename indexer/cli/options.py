"""Options shared by several commands, each declared once: ``--index``, ``--db``, the model, the
engine and Ray options, and the ``index``/``search`` extras whose values go through ``ctx.meta``."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from indexer import resolve_index_type
from indexer.update import DEFAULT_INTERVAL
from retrieval import (
    ARCHS,
    DEFAULT_INPUT_POLICY,
    DEFAULT_INPUT_SIZE,
    DEFAULT_POOLING,
    INPUT_POLICIES,
    POOLINGS,
    UserError,
)
from retrieval.engines import DEFAULT_ENGINE, ENGINES, ray_engine_names

ENV_INDEX = "VGG_RETRIEVAL_INDEX"
ENV_DB = "VGG_RETRIEVAL_DB"


def index_option(f=None, *, required: bool = True):
    """--index (or $VGG_RETRIEVAL_INDEX); ``required=False``: None when missing (the command says why)."""
    if f is None:
        return lambda g: index_option(g, required=required)
    return click.option(
        "--index",
        "index_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=ENV_INDEX,
        required=required,  # no default=: click >= 8.3 takes an explicit None as a given value
        help=f"Index folder [env: {ENV_INDEX}].",
    )(f)


def db_option(f):
    """--db (or $VGG_RETRIEVAL_DB), for every command that opens an index."""
    return click.option(
        "--db",
        "db_url",
        default=None,
        envvar=ENV_DB,
        help="Metadata database URL, e.g. postgresql://USER@HOST/DB[?schema=NAME]; given once, "
        "the index folder remembers it (without the password: PGPASSWORD or ~/.pgpass) "
        f"[env: {ENV_DB}; default: the remembered one, else INDEX/index.sqlite].",
    )(f)


def parse_scales(ctx, param, value):
    """--scales "1,0.7071" -> (1.0, 0.7071); None when unset."""
    if value is None:
        return None
    try:
        return tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a comma-separated list of numbers, e.g. 1,0.7071"
        ) from None


def model_options(f):
    """--arch/--weights/--pooling/--size/--input-policy/--scales/--trim-borders: the descriptor model.
    Unset means: the index's model (for an existing index) or the defaults (vgg16,
    IMAGENET1K_V1 or $VGG_RETRIEVAL_WEIGHTS, buckets, gem, one scale)."""
    f = click.option(
        "--scales",
        callback=parse_scales,
        default=None,
        help="Multi-scale descriptors: the scales the image is also run at, comma-separated, the "
        "first 1, e.g. 1,0.7071; part of the model's identity [default: 1].",
    )(f)
    f = click.option(
        "--input-policy",
        "input_policy",
        type=click.Choice(INPUT_POLICIES),
        default=None,
        help="square: longer side = --size, padded to a square; buckets: --size squared pixels, in "
        "the aspect bucket (1:1, 4:3, 3:2, 16:9 and portrait) nearest the photo's "
        f"[default: {DEFAULT_INPUT_POLICY}].",
    )(f)
    f = click.option(
        "--trim-borders/--no-trim-borders",
        "trim_borders",
        default=None,
        help="Cut near-uniform border bands (padding, letterboxing, a screenshot's canvas) before "
        "embedding; part of the model's identity [default: on for new models; an existing "
        "index keeps its own].",
    )(f)
    f = click.option(
        "--size",
        "input_size",
        type=int,
        default=None,
        help=f"Input size: the longer side (square policy) or the side of the pixel budget's square "
        f"(buckets) [default: {DEFAULT_INPUT_SIZE}].",
    )(f)
    f = click.option(
        "--pooling",
        type=click.Choice(POOLINGS),
        default=None,
        help="Global pooling of conv5: gap (average), mac (max), gem (p=3), rmac (regional max, "
        f"3 levels) [default: {DEFAULT_POOLING}; a project checkpoint's own].",
    )(f)
    f = click.option(
        "--weights",
        default=None,
        help="IMAGENET1K_V1 (torchvision's; without torch, timm's copy on the Hugging Face hub), "
        "hf:OWNER/REPO, 'random' (torch), or a .safetensors or .pth (torch) file: a torchvision "
        "state_dict or vgg-retrieval checkpoint [default: $VGG_RETRIEVAL_WEIGHTS, else "
        "IMAGENET1K_V1].",
    )(f)
    f = click.option("--arch", type=click.Choice(ARCHS), default=None, help="VGG variant [default: vgg16].")(
        f
    )
    f = click.option(
        "--class-names",
        "class_names",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="With weights that carry torchvision's classifier (fc6-fc8): its class names, one per "
        "line [default: the named weights' categories, ImageNet's for 1,000 classes].",
    )(f)
    return f


def engine_option(f=None, *, extra=(), help: str | None = None):
    """--engine: one of retrieval.engines.ENGINES (plus ``extra``)."""
    if f is None:
        return lambda g: engine_option(g, extra=extra, help=help)
    return click.option(
        "--engine",
        type=click.Choice(ENGINES + tuple(extra)),
        default=DEFAULT_ENGINE,
        show_default=True,
        help=help,
    )(f)


def engine_options(f=None, *, extra=(), more_help=""):
    """--engine/--batch-size/--threads; ``extra``: more --engine choices (index: ``ray``)."""
    if f is None:
        return lambda g: engine_options(g, extra=extra, more_help=more_help)
    f = click.option("--threads", type=int, default=None, help="Inference threads [default: all cores].")(f)
    f = click.option("--batch-size", type=int, default=8, show_default=True, help="Images per forward pass.")(
        f
    )
    return engine_option(f, extra=extra, help="Inference engine." + more_help)


def ray_options(f):
    """--ray-address/--ray-actors/--ray-model-engine of ``index --engine ray`` (indexer.update.ray_embedding)."""
    f = click.option(
        "--ray-model-engine",
        type=click.Choice(ray_engine_names()),
        default=None,
        help="With --engine ray: the inference engine each Ray actor runs [default: openvino].",
    )(f)
    f = click.option(
        "--ray-actors",
        type=int,
        default=None,
        help="With --engine ray: embedding actors, each holding one model and reserving "
        "--threads CPUs (default 1) [default: the cluster's CPUs less ~1/8 for decoding].",
    )(f)
    f = click.option(
        "--ray-address",
        default=None,
        help="With --engine ray: the cluster to use: 'auto' (started with `ray start` on this "
        "machine), ray://HOST:10001 (Ray Client) [default: a private local Ray].",
    )(f)
    return f


def watch_options(f):
    """--watch/--interval of ``index``; kept out of its signature (``ctx.meta["watch"]``: the interval or None)."""

    @functools.wraps(f)
    def wrapper(*args, watch=False, interval=None, **kwargs):
        if interval is not None and not watch:
            raise UserError("--interval only applies with --watch")
        if watch:
            interval = DEFAULT_INTERVAL if interval is None else interval
            if interval <= 0:
                raise UserError(f"--interval must be a positive number of seconds (got {interval:g})")
            click.get_current_context().meta["watch"] = interval
        return f(*args, **kwargs)

    wrapper = click.option(
        "--interval",
        type=float,
        default=None,
        help="With --watch: seconds between looks at the folders [default: 30].",
    )(wrapper)
    return click.option(
        "--watch",
        is_flag=True,
        help="Keep running: index now, then whenever files are added, changed or removed "
        "(polling every --interval; a pass with no change only stats the files). "
        "SIGINT/SIGTERM stop it with the index consistent.",
    )(wrapper)


def index_type_option(f):
    """--index-type of ``index``: chosen when the index is created (``ctx.meta["index_type"]``)."""

    @functools.wraps(f)
    def wrapper(*args, index_type=None, **kwargs):
        if index_type is not None:
            click.get_current_context().meta["index_type"] = resolve_index_type(
                index_type, kwargs["index_dir"], kwargs.get("db_url")
            )
        return f(*args, **kwargs)

    return click.option(
        "--index-type",
        default=None,
        metavar="TYPE",
        help="For a new index: auto, flat, hnsw, ivf, ivfpq, or a FAISS factory string "
        "(docs/index-types.md) [default: auto: exact below 200,000 images, then IVF].",
    )(wrapper)


def search_param_options(f):
    """--nprobe/--ef-search of ``search`` (``ctx.meta["search_params"]``)."""

    @functools.wraps(f)
    def wrapper(*args, nprobe=None, ef_search=None, **kwargs):
        for name, value in (("--nprobe", nprobe), ("--ef-search", ef_search)):
            if value is not None and value < 1:
                raise UserError(f"{name} must be at least 1 (got {value})")
        click.get_current_context().meta["search_params"] = {"nprobe": nprobe, "ef_search": ef_search}
        return f(*args, **kwargs)

    wrapper = click.option(
        "--ef-search",
        type=int,
        default=None,
        help="HNSW search breadth (hnsw indexes, IVF's coarse quantizer) [default: the index's, 64].",
    )(wrapper)
    return click.option(
        "--nprobe",
        type=int,
        default=None,
        help="IVF lists visited per query: higher = better recall, slower [default: the index's, 64].",
    )(wrapper)


# newlines and other control characters (and the other line breaks str.splitlines knows)
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(32), 0x7F, *range(0x80, 0xA0)]}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def one_line_text(text: str) -> str:
    """``text`` as one printable line: newlines and other control characters escaped (``\\n``,
    ``\\x1b``), bytes that are not UTF-8 as ``\\xNN``: one result per line whatever a file is called."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_ESCAPES)
