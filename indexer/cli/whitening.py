"""``whiten``: learn the index's whitening on its own stored vectors, or remove it (``indexer.storage.whitened_vectors``)."""

from __future__ import annotations

import click

from indexer import Index
from indexer.vectors import MIN_WHITENING_VECTORS

from .options import db_option, index_option


@click.command()
@index_option
@db_option
@click.option("--remove", is_flag=True, help="Remove the whitening: searches use the raw descriptors again.")
@click.option(
    "--beta",
    type=click.FloatRange(0, 0.5),
    default=None,
    help="Eigenvalue power of the fit: 0 centres the descriptors on the collection's mean (the "
    "default: the only setting that raised search quality in our measurements), 0.5 is full "
    "PCA-whitening (with Ledoit-Wolf shrinkage).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Fit even when the index holds fewer images than the minimum (learnt on too few "
    "photos a whitening is noise).",
)
def whiten(index_dir, db_url, remove, beta, force):
    """Learn a whitening of the descriptors on the indexed photos themselves (no labels), or fit it again.

    By default the descriptors are centred on the collection's mean (measured: it raises mAP, while
    full PCA-whitening learnt on a collection's few hundred to few thousand photos lowers it; see --beta).

    Searches then compare whitened descriptors (queries and stored images alike); the stored raw
    descriptors are kept, so nothing is embedded again and --remove undoes it. An index updated
    later refits its whitening once it has doubled since the fit.
    """

    with Index.open(index_dir, db_url=db_url) as idx:
        if remove:
            done = idx.remove_whitening()
            click.echo(f"{index_dir}: whitening removed" if done else f"{index_dir}: has no whitening")
            return
        state = idx.whiten(force=force, **({} if beta is None else {"beta": beta}))
        if state is None:
            click.echo(
                f"{index_dir}: not whitened: {idx.count} images, a whitening needs at least "
                f"{MIN_WHITENING_VECTORS} (learnt on fewer it is not trusted; --force fits anyway)"
            )
            return
        click.echo(f"{index_dir}: whitened ({state.describe()})")


COMMANDS = (whiten,)
