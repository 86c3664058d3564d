"""``whiten``: learn the index's whitening on its own stored vectors, or remove it (``indexer.whitened``)."""
from __future__ import annotations

import click

from .options import db_option, index_option


@click.command()
@index_option
@db_option
@click.option("--remove", is_flag=True, help="Remove the whitening: searches use the raw descriptors again.")
@click.option("--force", is_flag=True,
              help="Fit even when the index holds fewer images than the minimum (a whitening learnt on "
                   "too few photos usually lowers search quality).")
def whiten(index_dir, db_url, remove, force):
    """Learn a whitening of the descriptors on the indexed photos themselves (no labels), or fit it again.

    Searches then compare whitened descriptors (queries and stored images alike); the stored raw
    descriptors are kept, so nothing is embedded again and --remove undoes it. An index updated
    later refits its whitening once it has doubled since the fit.
    """
    from indexer import whitening
    from indexer.index import Index

    with Index.open(index_dir, db_url=db_url) as idx:
        if remove:
            done = idx.remove_whitening()
            click.echo(f"{index_dir}: whitening removed" if done else f"{index_dir}: has no whitening")
            return
        state = idx.whiten(force=force)
        if state is None:
            need = whitening.minimum(idx.spec.descriptor_dim)
            click.echo(f"{index_dir}: not whitened: {idx.count} images, a whitening needs at least {need} "
                       f"(fitted on fewer it lowers search quality; --force fits anyway)")
            return
        click.echo(f"{index_dir}: whitened ({state.describe()})")


COMMANDS = (whiten,)
