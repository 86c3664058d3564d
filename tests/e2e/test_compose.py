"""docker-compose.yml and the Dockerfile, checked by a real Compose implementation (`docker-compose config`,
Debian's docker-compose; .ci/run installs it). No container engine is needed, and none is used."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT


def package_version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


COMPOSE = shutil.which("docker-compose")


def _compose(*args, env=None, profiles=()):
    if COMPOSE is None:
        if os.environ.get("CI"):
            pytest.fail(
                "docker-compose is not installed (.ci/run installs Debian's docker-compose)", pytrace=False
            )
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    cmd = [COMPOSE, "-f", str(ROOT / "docker-compose.yml")]
    for p in profiles:
        cmd += ["--profile", p]
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "POSTGRES_PASSWORD",
            "PHOTOS",
            "UI_PORT",
            "WATCH_INTERVAL",
            "VGG_RETRIEVAL_WEIGHTS",
            "VGG_RETRIEVAL_VERSION",
            "WEIGHTS",
            "WITH_TORCH",
        )
    }
    return subprocess.run(
        cmd + list(args), capture_output=True, text=True, timeout=120, cwd=ROOT, env={**base, **(env or {})}
    )


def _yaml(text: str) -> dict:
    try:
        import yaml
    except ImportError:  # docker-compose's own Python has PyYAML
        with open(COMPOSE) as f:
            first = f.readline()
        python = first[2:].strip().split()[0] if first.startswith("#!") else sys.executable
        r = subprocess.run(
            [python, "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(r.stdout)
    return yaml.safe_load(text)


@pytest.fixture
def config(tmp_path):
    photos = tmp_path / "my photos"
    photos.mkdir()
    env = {"POSTGRES_PASSWORD": "s3cret", "PHOTOS": str(photos), "WATCH_INTERVAL": "15"}
    r = _compose("config", env=env, profiles=("index", "watch"))
    assert r.returncode == 0, r.stderr
    return _yaml(r.stdout), photos


def test_compose_config_services_volumes_and_database(config):
    cfg, photos = config
    services = cfg["services"]
    assert set(services) == {"postgres", "ui", "indexer", "watcher"}
    assert set(cfg["volumes"]) >= {"index", "models", "pgdata"}
    for name in ("ui", "indexer", "watcher"):
        s = services[name]
        assert s["image"] == f"vgg-retrieval:{package_version()}" and s["build"]["context"] == str(ROOT)
        assert s["build"]["args"] == {"WITH_TORCH": "0"}  # the base install: no PyTorch
        photo_mounts = [v for v in s["volumes"] if isinstance(v, dict) and v.get("target") == "/photos"]
        assert photo_mounts == [
            {"type": "bind", "source": str(photos), "target": "/photos", "read_only": True}
        ]
        others = {v.split(":")[1]: v for v in s["volumes"] if isinstance(v, str)}
        assert others["/index"].startswith("index:") and not others["/index"].endswith(":ro")
        assert others["/models"].startswith("models:")
        assert others["/weights"] == f"{ROOT / 'weights'}:/weights:ro"  # your own weights files, read-only
        assert s["depends_on"] == {"postgres": {"condition": "service_healthy"}}
        env = s["environment"]
        assert env["VGG_RETRIEVAL_DB"] == "postgresql://vgg@postgres:5432/vgg"  # no password in the URL...
        assert env["PGPASSWORD"] == "s3cret"  # ...libpq takes it from here
        assert env["VGG_RETRIEVAL_INDEX"] == "/index"
        assert env["HF_HOME"] == "/models/hf" and env["VGG_RETRIEVAL_WEIGHTS"] == "IMAGENET1K_V1"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    assert services["postgres"]["environment"]["POSTGRES_USER"] == "vgg"
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"][0]
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "ports" not in services["postgres"]  # the database is reachable from the app containers only

    ui = services["ui"]
    assert ui["command"][:3] == ["ui", "--index", "/index"] and "0.0.0.0" in ui["command"]
    assert ui["ports"] == ["127.0.0.1:8501:8501/tcp"]  # no login: loopback only
    assert services["indexer"]["command"] == ["index", "/photos", "--index", "/index", "-q"]
    assert services["indexer"]["profiles"] == ["index"]
    watcher = services["watcher"]
    assert watcher["profiles"] == ["watch"] and watcher["restart"] == "unless-stopped"
    assert watcher["command"][-3:] == ["--watch", "--interval", "15"]


def test_compose_commands_are_real_cli_commands(config):
    """The services' commands parse with the real CLI (its --help), so a renamed option breaks this test."""
    cfg, _ = config
    from click.testing import CliRunner

    from indexer.cli import cli

    for name in ("ui", "indexer", "watcher"):
        args = cfg["services"][name]["command"]
        r = CliRunner().invoke(cli, [args[0], "--help"])
        assert r.exit_code == 0, r.output
        for opt in (a for a in args if a.startswith("--")):
            assert opt in r.output, (name, opt)


def test_compose_default_profile_and_required_settings(tmp_path):
    r = _compose("config", env={"POSTGRES_PASSWORD": "x", "PHOTOS": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    services = _yaml(r.stdout)["services"]
    # `up` starts the UI and the database only; the indexers run on request (run / --profile)
    assert {n for n, s in services.items() if not s.get("profiles")} == {"postgres", "ui"}
    r = _compose("config", env={"PHOTOS": str(tmp_path)})  # no password: refused, with the reason
    assert r.returncode != 0 and "POSTGRES_PASSWORD" in r.stderr
