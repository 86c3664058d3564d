"""The Dockerfile and the UI's healthcheck, without a container engine: the Dockerfile is parsed, its
RUN lines that choose what to install are run by a real shell (with ``pip`` only printing what it would
install), and the healthcheck command of the image and of docker-compose.yml (the same one) is run
against a real ``vgg-retrieval ui`` server started here: 0 while it serves, non-zero once it is gone.
test_compose.py checks the rest of docker-compose.yml."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from test_compose import _compose, _yaml, package_version

from tests.e2e.browser import free_port

HEALTH_URL = "http://127.0.0.1:8501/_stcore/health"


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined, comments left out."""
    out, pending = [], ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def build_args() -> dict[str, str]:
    return dict(a.split("=", 1) for k, a in dockerfile() if k == "ARG" and "=" in a)


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The Dockerfile's HEALTHCHECK: its options and its exec-form command."""
    [args] = [a for k, a in dockerfile() if k == "HEALTHCHECK"]
    options, _, command = args.partition(" CMD ")
    return dict(o[2:].split("=", 1) for o in options.split()), json.loads(command)


def installs(with_torch: str) -> list[list[str]]:
    """The pip commands the Dockerfile's RUN lines would run with build argument WITH_TORCH."""
    runs = [a for k, a in dockerfile() if k == "RUN" and "pip install" in a]
    script = 'pip() { printf "%s\\n" "$*"; }\n' + "\n".join(runs)
    env = {"PATH": "/usr/bin:/bin", **build_args(), "WITH_TORCH": with_torch}
    r = subprocess.run(["sh", "-ec", script], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return [shlex.split(line) for line in r.stdout.splitlines()]


def test_image_is_pinned_and_installs_torch_only_when_asked():
    import tomllib

    steps = dockerfile()
    assert steps[0] == ("ARG", steps[0][1]) and steps[1] == ("FROM", "${PYTHON_IMAGE}")
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-bookworm", build_args()["PYTHON_IMAGE"])  # a patch release
    assert build_args()["WITH_TORCH"] == "0"
    assert build_args()["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    # the base image: the package with search by words and PostgreSQL, no torch anywhere
    assert installs("0") == [["install", ".[text,postgres]"]]
    # WITH_TORCH=1: torch and torchvision from the CPU wheel index first, then the train extra too
    torch_first, package = installs("1")
    assert torch_first[:3] == ["install", "--index-url", "https://download.pytorch.org/whl/cpu"]
    assert {t.split(">")[0] for t in torch_first[3:]} == {"torch", "torchvision"}
    assert package == ["install", ".[text,postgres,train]"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert {"text", "postgres", "train"} <= set(extras) and any(
        d.startswith("torch") for d in extras["train"]
    )
    base = {re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"]}
    # what writing the model without torch needs (retrieval/nets/onnx_graph.py, weights from safetensors or the hub)
    assert {"onnx", "safetensors", "huggingface_hub", "openvino", "onnxruntime", "nncf"} <= base
    assert not base & {"torch", "torchvision"}
    for src in ("retrieval", "indexer", "ui", "pyproject.toml"):
        assert any(k == "COPY" and src in a.split() for k, a in steps), src
    assert ("ENTRYPOINT", '["vgg-retrieval"]') in steps and ("USER", "vgg") in steps
    assert any(
        k == "ENV" and "HF_HOME=/models/hf" in a for k, a in steps
    )  # hub downloads in the models volume
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"tests", ".git", "*.faiss", "*.sqlite", "*.pth", "*.safetensors", "weights"} <= set(ignored)


def test_image_tag_follows_the_package_version_unless_set(tmp_path):
    env = {"POSTGRES_PASSWORD": "x", "PHOTOS": str(tmp_path)}
    r = _compose(
        "config",
        env={**env, "VGG_RETRIEVAL_VERSION": "9.8.7", "WEIGHTS": str(tmp_path / "w"), "WITH_TORCH": "1"},
    )
    assert r.returncode == 0, r.stderr
    ui = _yaml(r.stdout)["services"]["ui"]
    assert ui["image"] == "vgg-retrieval:9.8.7" and ui["build"]["args"] == {"WITH_TORCH": "1"}
    assert f"{tmp_path / 'w'}:/weights:ro" in ui["volumes"]
    r = _compose("config", env=env)
    assert (
        _yaml(r.stdout)["services"]["ui"]["image"]
        == f"vgg-retrieval:{package_version()}"
        != "vgg-retrieval:latest"
    )


def test_ui_healthcheck_is_the_image_s_and_only_the_ui_has_one(tmp_path):
    r = _compose(
        "config", env={"POSTGRES_PASSWORD": "x", "PHOTOS": str(tmp_path)}, profiles=("index", "watch")
    )
    assert r.returncode == 0, r.stderr
    services = _yaml(r.stdout)["services"]
    options, command = healthcheck()
    assert options == {"interval": "30s", "timeout": "5s", "start-period": "60s", "retries": "3"}
    assert command[:2] == ["python3", "-c"] and HEALTH_URL in command[2]  # no curl in the slim image
    check = services["ui"]["healthcheck"]
    assert check["test"] == ["CMD", *command]
    assert (check["interval"], check["timeout"], check["start_period"], check["retries"]) == (
        "30s",
        "5s",
        "1m",
        3,
    )
    for name in ("indexer", "watcher"):  # the same image, no server: no "unhealthy" indexer
        assert services[name]["healthcheck"] == {"test": ["NONE"]}, name


def _check(command: list[str], port: int) -> subprocess.CompletedProcess:
    """The healthcheck command, run by this Python, asking ``port`` instead of the container's 8501."""
    code = command[2].replace(":8501/", f":{port}/")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


def test_healthcheck_command_says_healthy_while_the_ui_serves_and_unhealthy_once_it_stops(tmp_path):
    _, command = healthcheck()
    port = free_port()
    assert _check(command, port).returncode != 0  # nothing listening yet
    server = subprocess.Popen(
        [sys.executable, "-m", "indexer", "ui", "--index", str(tmp_path / "index"), "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while (r := _check(command, port)).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"vgg-retrieval ui never became healthy (exit {server.poll()}): {r.stderr[-500:]}"
                )
            time.sleep(0.5)
        assert r.returncode == 0 and r.stdout == "" and r.stderr == ""
    finally:
        server.terminate()  # `ui` execs Streamlit: this is the server itself
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    r = _check(command, port)
    assert r.returncode != 0 and "Connection refused" in r.stderr, r.stderr[-500:]
