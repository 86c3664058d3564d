"""The ``vgg-retrieval`` command line: a thin shell over the Python API of ``indexer`` and ``retrieval``.

The group and the error mapping live here; shared options in ``options``; one module per command
family: ``indexing`` (index), ``searching`` (search), ``status`` (check, info, export), ``classes``,
``dedup`` (dedup, apply, undo),
``models`` (stats, train, prune, quantize, benchmark), ``text`` (text-train), ``video``
(train-video, classify-video), ``whitening`` (whiten), ``ui``. Nothing here imports torch,
transformers or ray at start.
"""

from __future__ import annotations

import sys

import click
from sqlalchemy.exc import SQLAlchemyError

from retrieval import UserError, missing_torch, one_line

from . import classes, dedup, indexing, models, searching, status, text, ui, video, whitening
from .options import one_line_text


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vgg-retrieval")
def cli():
    """Image search and duplicate finding with VGG descriptors, FAISS and SQLite."""


for _module in (indexing, searching, status, classes, dedup, ui, models, text, video, whitening):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main(argv=None) -> int:
    """Entry point: user mistakes become one line on stderr and exit status 2."""
    try:
        cli.main(args=argv, prog_name="vgg-retrieval", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except click.UsageError as e:  # one line, as every other mistake
        ctx = e.ctx
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        click.echo(f"error: {one_line_text(e.format_message()).rstrip('.')}{where}", err=True)
        return e.exit_code
    except click.ClickException as e:
        click.echo(f"error: {one_line_text(e.format_message())}", err=True)
        return e.exit_code
    except UserError as e:
        click.echo(f"error: {one_line_text(str(e))}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("interrupted; the index keeps its last saved state", err=True)
        return 130
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    except SQLAlchemyError as e:
        click.echo(f"error: index database: {one_line(e)}", err=True)
        return 2
    except ModuleNotFoundError as e:  # a torch-only command (train, prune...) on the base install
        if missing_torch(e) is None:
            raise
        click.echo(f"error: {missing_torch(e)}", err=True)
        return 2
    except OSError as e:  # disk full, read-only folder...: the index keeps its last committed state
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        click.echo(f"error:{where} {e.strerror or e}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["cli", "main"]
