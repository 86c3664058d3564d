"""Starting the Streamlit web UI on an index (``vgg-retrieval ui``, and the browser tests): the
command line and environment of the server, and ``launch`` which becomes it."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from retrieval import UserError
from retrieval.engines import DEFAULT_ENGINE

from .logic import DEFAULT_MAX_UPLOAD_MB, ENV_ENGINE, ENV_INDEX, ENV_MAX_UPLOAD_MB, ENV_READ_ONLY, ROOT

APP = Path(__file__).resolve().parent / "app.py"
RECEIVE_FACTOR = 5  # the server takes uploads up to this many times the limit, for a message in the page


def receive_mb(max_upload_mb: float) -> int:
    """The size (MB) up to which the server receives an upload: past the UI's limit, so that the page
    itself refuses it with a message, yet bounded."""
    return max(1, math.ceil(float(max_upload_mb) * RECEIVE_FACTOR))


def streamlit_command(
    index_dir, port: int = 8501, address: str = "127.0.0.1", max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.maxUploadSize",
        str(receive_mb(max_upload_mb)),
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]


def streamlit_env(
    index_dir,
    engine: str = DEFAULT_ENGINE,
    read_only: bool = False,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    base=None,
) -> dict:
    env = dict(os.environ if base is None else base)
    env[ENV_INDEX] = str(Path(index_dir).resolve())
    env[ENV_ENGINE] = engine
    env[ENV_MAX_UPLOAD_MB] = str(max_upload_mb)
    if read_only:
        env[ENV_READ_ONLY] = "1"
    else:
        env.pop(ENV_READ_ONLY, None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    return env


def launch(
    index_dir,
    port: int = 8501,
    address: str = "127.0.0.1",
    engine: str = DEFAULT_ENGINE,
    read_only: bool = False,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    log=None,
) -> None:
    """Become the Streamlit server of the UI on ``index_dir`` (never returns: ``os.execve``)."""
    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise UserError(
            "the web UI needs Streamlit: pip install 'vgg-retrieval[ui]' (or pip install streamlit)"
        ) from None
    if not 1 <= port <= 65535:
        raise UserError(f"--port must be 1..65535 (got {port})")
    cmd = streamlit_command(index_dir, port, address, max_upload_mb)
    env = streamlit_env(index_dir, engine, read_only, max_upload_mb)
    if log:
        log(f"vgg-retrieval UI on http://{address}:{port} for index {index_dir} (Ctrl-C to stop)")
    sys.stdout.flush()
    sys.stderr.flush()
    # become Streamlit (exec): Ctrl-C and kill reach the server directly, no orphan is left behind
    os.execve(sys.executable, cmd, env)
