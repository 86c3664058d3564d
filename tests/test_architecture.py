"""The layout's rules, checked on the source: the UI and the CLI use only package faces, modules and
functions stay small, and every command is in the README and answers --help. (Layers and cycles:
``lint-imports`` in .ci/run, contracts in pyproject.toml.)"""

from __future__ import annotations

import ast
import importlib
import re

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT

from indexer.cli import cli

PACKAGES = ("indexer", "retrieval", "ui")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# functions allowed to be longer, each with its reason
LONG_FUNCTIONS = {
    (
        "retrieval/compress/distill.py",
        "distill",
    ): "one training loop: refit, epochs, checkpoints read top-down",
    ("retrieval/training/train.py", "fit"): "one training loop with resume, cache and bf16 branches",
    ("retrieval/video/train.py", "fit_video"): "one training loop with resume, cache and bf16 branches",
    ("retrieval/text/model.py", "train_projections"): "one training loop (InfoNCE) with its early stop",
    ("indexer/dedup/candidates.py", "near_pairs"): "one k-NN pass over shards; its steps share loop state",
}


def _modules(*roots):
    for root in roots:
        yield from sorted((ROOT / root).rglob("*.py"))


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)


def test_the_ui_and_the_cli_import_only_package_faces():
    inner = []
    for path in _modules("ui", "indexer/cli"):
        for line, name in _imported_modules(path):
            if name.split(".")[0] not in ("indexer", "retrieval") or name.startswith("indexer.cli"):
                continue
            if not hasattr(importlib.import_module(name), "__path__"):  # a module, not a package's face
                inner.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not inner, "\n".join(inner)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_face_lists_what_it_offers(package):
    for path in (ROOT / package).rglob("__init__.py"):
        if path.parent.name in ("pages",):
            continue
        name = ".".join(path.parent.relative_to(ROOT).parts)
        face = importlib.import_module(name)
        assert hasattr(face, "__all__"), f"{name} has no __all__"
        missing = [n for n in face.__all__ if not hasattr(face, n)]
        assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_modules_and_functions_stay_small():
    too_long = []
    for path in _modules(*PACKAGES):
        rel = str(path.relative_to(ROOT))
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{rel}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = _statement_lines(node)
                if lines > MAX_FUNCTION_LINES and (rel, node.name) not in LONG_FUNCTIONS:
                    too_long.append(f"{rel}:{node.lineno} {node.name}(): {lines} lines")
    assert not too_long, "\n".join(too_long)


def _statement_lines(fn) -> int:
    body = fn.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    return len({n.lineno for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.stmt)})


def _commands(group=cli, prefix=()):
    for name, cmd in sorted(group.commands.items()):
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


def test_every_command_is_in_the_readme_and_has_help():
    readme = (ROOT / "README.md").read_text()
    runner = CliRunner()
    for path, _ in _commands():
        words = " ".join(path)
        assert re.search(rf"vgg-retrieval {re.escape(words)}\b", readme), (
            f"`vgg-retrieval {words}` is not in the README"
        )
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (words, result.output)
        assert "Usage:" in result.output and len(result.output.splitlines()) > 3, words
