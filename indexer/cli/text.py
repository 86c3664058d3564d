"""``text-train``: learn search by words for an index (``indexer.text.searcher``); ``search --text``
lives with ``search`` in ``indexing``."""

from __future__ import annotations

import click

from indexer import Index
from retrieval import UserError

from .options import db_option, index_option


@click.command("text-train")
@index_option
@db_option
@click.option(
    "--text-model",
    default=None,
    help="BERT-family model: a hub name (connected machines) or a local folder "
    "[default: the packaged all-MiniLM-L6-v2].",
)
@click.option("--epochs", type=int, default=60, show_default=True)
@click.option("--dim", type=int, default=256, show_default=True, help="Shared embedding size.")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", "-q", is_flag=True)
def text_train(index_dir, db_url, text_model, epochs, dim, batch_size, lr, seed, quiet):
    """Learn search by words for the index at --index.

    Captions come from folder labels, file names and caption files next to the images (IMAGE.txt
    or IMAGE.caption); the stored VGG descriptors are used as they are (nothing is re-embedded).
    Writes INDEX/text/; then: vgg-retrieval search --text "a red flower" --index DIR.
    """
    from indexer.text import train_text_model  # lazy: keeps the command line's start light

    if epochs < 1 or dim < 2 or batch_size < 2 or lr <= 0:
        raise UserError("--epochs must be >= 1, --dim and --batch-size >= 2, --lr > 0")
    with Index.open(index_dir, db_url=db_url) as idx:
        rep = train_text_model(
            idx,
            text_model,
            epochs=epochs,
            dim=dim,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            log=None if quiet else (lambda m: click.echo(m, err=True)),
        )
    click.echo(rep.summary())


COMMANDS = (text_train,)
