"""``search``: by image or by words, over an index (one result per line, or JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from indexer import Index
from indexer.classify import search_with_classes
from indexer.search import (
    DEFAULT_ALPHA,
    DEFAULT_QE,
    DEFAULT_RERANK,
    DEFAULT_ROTATIONS,
    TURN_MARGIN,
    check_depth,
    check_options,
)
from retrieval import UserError

from .options import (
    db_option,
    engine_options,
    index_option,
    one_line_text,
    search_param_options,
)


def _echo_hits(hits) -> None:
    """One line per hit, whatever its file is called; a file of an offline folder says so."""
    for rank, h in enumerate(hits, 1):
        click.echo(
            f"  {rank:3d}. {h.score:.4f}  {one_line_text(h.where)}"
            + (f"  [{one_line_text(h.label)}]" if h.label else "")
            + ("  (offline)" if h.offline else "")
        )


def _online(hits, skip_offline: bool):
    return [h for h in hits if not h.offline] if skip_offline else hits


def _search_texts(idx, texts, top_k, as_json, threads, skip_offline=False) -> None:
    from indexer.text import TextSearcher  # lazy: keeps the command line's start light

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

    results, classes = search_with_classes(
        idx, [str(p) for p in images], top_k, **search_params, **query_options
    )
    for query, hits, tops in zip(images, results, classes):
        hits = _online(hits, skip_offline)
        if as_json:
            row = {"query": str(query), "results": [h.as_json() for h in hits], "settings": query_options}
            for source, top in tops.items():
                if source in CLASS_OUTPUTS:
                    row[CLASS_OUTPUTS[source][0]] = [{"class": c, "p": round(p, 6)} for c, p in top]
            if "folders_none" in tops:  # far from every folder: the folder classes say "none of these"
                row["folder_classes_none_of_these"] = tops["folders_none"]
            click.echo(json.dumps(row))
        else:
            click.echo(one_line_text(str(query)))
            for source, top in tops.items():
                if source not in CLASS_OUTPUTS:
                    continue
                none = tops.get("folders_none") if source == "folders" else None
                said = ", ".join(f"{c} {p:.3f}" for c, p in top)
                if none:
                    said = (
                        f"none of these (nearest {none['nearest']}: similarity {none['similarity']:.2f} "
                        f"below its {none['bound']:.2f}; then {said})"
                    )
                click.echo(f"  {CLASS_OUTPUTS[source][1]}: {said}")
            _echo_hits(hits)


@click.command()
@click.argument("images", nargs=-1, required=False, type=click.Path(path_type=Path))
@index_option
@click.option("--top-k", "-k", type=int, default=10, show_default=True, help="Results per query.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per query per line.")
@click.option(
    "--text",
    "texts",
    multiple=True,
    metavar="WORDS",
    help='Search by words (repeatable), e.g. --text "a red flower"; needs vgg-retrieval text-train.',
)
@engine_options
@db_option
@search_param_options
@click.option(
    "--qe",
    type=int,
    default=DEFAULT_QE,
    show_default=True,
    metavar="K",
    help="Query expansion (alpha-QE) of image queries: search again with the query plus its "
    "top K hits, weighted by score ** --qe-alpha (0: off).",
)
@click.option(
    "--qe-alpha",
    type=float,
    default=DEFAULT_ALPHA,
    show_default=True,
    help="The exponent of the hits' scores in query expansion.",
)
@click.option(
    "--rerank",
    type=int,
    default=DEFAULT_RERANK,
    show_default=True,
    metavar="N",
    help="Score the top N hits of image queries again, each with its own nearest indexed photo "
    "(database-side augmentation at search time; 0: off).",
)
@click.option(
    "--rotations/--no-rotations",
    default=DEFAULT_ROTATIONS,
    show_default=True,
    help="Also search each image query turned by 90 and 270 degrees; an image keeps its best score, "
    f"a turned view's counting {TURN_MARGIN:g} less (for photos stored sideways without EXIF orientation). "
    "Three times the query's model time.",
)
@click.option(
    "--skip-offline",
    is_flag=True,
    help='Leave out the files of offline folders (shown marked "(offline)" otherwise; fewer than '
    "--top-k results may remain).",
)
def search(
    images,
    index_dir,
    top_k,
    as_json,
    texts,
    engine,
    batch_size,
    threads,
    db_url,
    qe,
    qe_alpha,
    rerank,
    rotations,
    skip_offline,
):
    """Find the indexed images most similar to each of IMAGES, with their top-5 classes from each
    classifier the index has: its model's own, and the one learnt from its folders (`classes`)."""

    if not images and not texts:
        raise UserError('name the IMAGES to search with, or search by words with --text "..."')
    check_options(qe, qe_alpha)
    check_depth(rerank)
    query_options = {"qe": qe, "qe_alpha": qe_alpha, "rerank": rerank, "rotations": rotations}
    options = {"engine": engine, "db_url": db_url, "batch_size": batch_size, "threads": threads}
    if texts:
        with Index.open(index_dir, **options) as idx:
            _search_texts(idx, texts, top_k, as_json, threads, skip_offline)
    if images:
        with Index.open(index_dir, **options) as idx:
            _search_images(
                idx,
                images,
                top_k,
                as_json,
                click.get_current_context().meta["search_params"],
                query_options,
                skip_offline,
            )


COMMANDS = (search,)
