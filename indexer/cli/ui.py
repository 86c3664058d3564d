"""``vgg-retrieval ui``: start the Streamlit web UI on an index (``ui.launch``).

The CLI is the one place that wires the packages together: this command is the only import of
``ui`` under ``indexer/``, and it happens when the command runs (the indexer library never needs
the UI)."""

from __future__ import annotations

import click

from .options import engine_option, index_option

MAX_UPLOAD_MB = 20  # ui.launch.DEFAULT_MAX_UPLOAD_MB (checked by tests/e2e/test_cli.py)


@click.command()
@index_option
@click.option("--port", type=int, default=8501, show_default=True, help="Port to serve on.")
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 to serve your network; there is no login).",
)
@engine_option(help="Inference engine.")
@click.option("--read-only", is_flag=True, help="Hide indexing and report saving in the UI.")
@click.option(
    "--max-upload-mb", type=int, default=MAX_UPLOAD_MB, show_default=True, help="Largest upload accepted."
)
def ui(index_dir, port, address, engine, read_only, max_upload_mb):
    """Start the web UI (Streamlit) on the index at --index: search, duplicates, index, feature maps."""
    from ui.launch import launch  # lazy: keeps the command line's start light

    launch(
        index_dir,
        port,
        address,
        engine,
        read_only,
        max_upload_mb,
        log=lambda line: click.echo(line, err=True),
    )


COMMANDS = (ui,)
