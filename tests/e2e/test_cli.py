"""The command line itself: one group over every command, the shared options declared once
(--index and --db with their environment variables everywhere), the one-line error mapping."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

from indexer.cli import cli, main
from indexer.cli.options import ENV_DB, ENV_INDEX

COMMANDS = {
    "index",
    "search",
    "check",
    "info",
    "export",
    "classes",
    "whiten",
    "dedup",
    "stats",
    "train",
    "prune",
    "optimize",
    "quantize",
    "benchmark",
    "text-train",
    "train-video",
    "classify-video",
    "ui",
}


def _all_commands(group=cli, prefix=()):
    for name, cmd in group.commands.items():
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, prefix + (name,))


def test_every_command_is_in_the_one_group():
    assert set(cli.commands) == COMMANDS
    assert set(cli.commands["dedup"].commands) == {"apply", "undo"}


def test_index_and_db_options_read_the_same_environment_everywhere():
    with_db = []
    for path, cmd in _all_commands():
        params = {p.name: p for p in cmd.params}
        if "index_dir" in params:
            assert params["index_dir"].envvar == ENV_INDEX, path
        if "db_url" in params:
            assert params["db_url"].envvar == ENV_DB, path
            with_db.append(path[-1])
    assert {"index", "search", "check", "info", "classes", "dedup", "text-train"} <= set(with_db)


def test_db_from_the_environment_reaches_dedup_and_text_train(tmp_path, monkeypatch, capsys):
    """A --db the user cannot reach is named in one line, whether given as an option or in $VGG_RETRIEVAL_DB."""
    monkeypatch.setenv(ENV_DB, "postgresql://nobody@127.0.0.1:1/none")
    (tmp_path / "ix").mkdir()
    for argv in (
        ["dedup", "--index", str(tmp_path / "ix"), "--out", str(tmp_path / "r")],
        ["text-train", "--index", str(tmp_path / "ix")],
        ["info", "--index", str(tmp_path / "ix")],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "127.0.0.1" in err[0], (argv, err)


def test_help_of_every_command():
    runner = CliRunner()
    for path, _ in _all_commands():
        r = runner.invoke(cli, [*path, "--help"])
        assert r.exit_code == 0 and "Usage:" in r.output, (path, r.output)


def test_user_mistakes_are_one_line_with_exit_2(tmp_path, capsys):
    assert main(["info", "--index", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: no index at {tmp_path / 'nope'} (create one with: vgg-retrieval index FOLDER --index {tmp_path / 'nope'})"
    ]
    assert main(["index", "--index", str(tmp_path / "ix"), "--ray-actors", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: --ray-actors only apply with --engine ray"
    assert main(["search", "--index", str(tmp_path / "ix")]) == 2
    assert "name the IMAGES" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2


def test_python_dash_m_indexer_runs_the_same_cli():
    r = subprocess.run(
        [sys.executable, "-m", "indexer", "--help"], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "text-train" in r.stdout and "classify-video" in r.stdout


def test_ui_command_default_upload_limit_is_the_uis():
    """The ``ui`` command declares its default without importing the UI at start; it must agree."""
    from indexer.cli.ui import MAX_UPLOAD_MB
    from ui.logic import DEFAULT_MAX_UPLOAD_MB

    assert MAX_UPLOAD_MB == DEFAULT_MAX_UPLOAD_MB
