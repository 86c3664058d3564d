"""Shared fixtures: a tiny random VGG for logic tests, the shared VGG16 for quality tests, real photos.

Real photos and the VGG16 trunk come from ../shared/data (see its README). Nothing here needs the
network. Heavy objects are session-scoped so the suite stays within a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VGG_RETRIEVAL_DATA", ROOT.parent / "shared" / "data"))
VGG16_WEIGHTS = DATA / "weights" / "vgg16_features_imagenet_like.pth"
SAMPLES = DATA / "photos" / "samples"
# A new index's default precision is INT8 where this CPU runs INT8 convolutions 1.3x as fast as FP32
# (retrieval.engines.int8_gain measures it). The tests of the default's mechanics pin the gain (INT8
# wherever they run, subprocesses too); test_index_creation's own tests measure it and set it.
os.environ["VGG_RETRIEVAL_INT8_GAIN"] = "4"

# The stereo / viewpoint pairs of the retrieval-quality test, and extra distractors.
PAIRS = [
    ("skimage/motorcycle_left.png", "skimage/motorcycle_right.png"),
    ("opencv/leuvenA.jpg", "opencv/leuvenB.jpg"),
    ("opencv/graf1.png", "opencv/graf3.png"),
    ("opencv/left01.jpg", "opencv/right01.jpg"),
]
DISTRACTORS = [
    "skimage/astronaut.png",
    "skimage/coffee.png",
    "skimage/chelsea.png",
    "skimage/rocket.jpg",
    "sklearn/china.jpg",
    "sklearn/flower.jpg",
    "opencv/baboon.jpg",
    "opencv/fruits.jpg",
    "opencv/building.jpg",
    "opencv/messi5.jpg",
    "opencv/home.jpg",
    "opencv/aero1.jpg",
    "pixabay/airplane01.jpg",
    "pixabay/cat01.jpg",
    "pixabay/dog01.jpg",
    "pixabay/ship01.jpg",
    "pixabay/car01.jpg",
    "pixabay/horse01.jpg",
    "pixabay/bird01.jpg",
    "pixabay/truck01.jpg",
]

TINY_SIZE = 64


# Every process the suite starts (subprocesses, Ray's raylet and workers, servers) inherits this
# variable; any such process still alive when the suite ends is a leak: killed, and the run fails.
SESSION_MARK = "VGG_RETRIEVAL_TEST_SESSION"
LEFTOVER_GRACE_S = 20.0


def pytest_configure(config):
    if not DATA.is_dir():
        raise pytest.UsageError(f"shared test data not found at {DATA} (set VGG_RETRIEVAL_DATA)")
    os.environ.setdefault("TQDM_DISABLE", "1")
    if not hasattr(config, "workerinput"):  # the controlling pytest process marks its session
        os.environ[SESSION_MARK] = f"{os.getpid()}-{time.time_ns()}"


# multiprocessing's helpers of this process: they end with it, by design
_ENDS_WITH_US = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _marked_processes() -> list:
    """Live processes (not this one) that carry this test session's mark in their environment,
    other than multiprocessing's own helpers of this process."""
    import psutil

    mark, me, found = os.environ.get(SESSION_MARK), os.getpid(), []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.pid == me or p.status() == psutil.STATUS_ZOMBIE or p.environ().get(SESSION_MARK) != mark:
                continue
            if p.ppid() == me and any(h in " ".join(p.cmdline()) for h in _ENDS_WITH_US):
                continue
            found.append(p)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
    return found


def reap_ray_processes(grace_s: float = 10.0) -> list[str]:
    """After ``ray.shutdown()``: wait up to ``grace_s`` for this session's Ray processes (raylet, GCS,
    ``ray::`` workers and actors) to exit, then kill the rest; returns what had to be killed."""
    import psutil

    def ray_processes():
        out = []
        for p in _marked_processes():
            try:
                line = " ".join(p.cmdline())
            except psutil.Error:
                continue
            if line.startswith("ray::") or "/ray/" in line or "raylet" in line or "gcs_server" in line:
                out.append((p, line))
        return out

    deadline = time.monotonic() + grace_s
    left = ray_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = ray_processes()
    killed = []
    for p, line in left:
        try:
            p.kill()
            killed.append(f"{p.pid} {line[:100]}")
        except psutil.Error:
            pass
    return killed


def pytest_sessionfinish(session, exitstatus):
    """Tests leave nothing running: wait a little for processes that are shutting down (Ray takes
    seconds), then kill whatever the suite started and still runs, and fail the run naming them."""
    import psutil

    if not os.environ.get(SESSION_MARK):
        return
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    left = _marked_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _marked_processes()
    if not left:
        return
    names = []
    for p in left:
        try:
            names.append(f"{p.pid} {' '.join(p.cmdline())[:120] or p.name()}")
            p.kill()
        except psutil.Error:
            pass
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(
            f"\nFAILED: {len(left)} process(es) started by the tests outlived the suite "
            f"(killed now): " + "; ".join(names),
            red=True,
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory):
    """``tmp_path_factory.mktemp`` for one test module's fixtures: what it makes is removed when the
    module ends. With pytest's per-test folders removed too (``tmp_path_retention_policy`` in
    pyproject.toml), the suite's exported models and indexes never pile up; kept, they once filled a
    CI machine's disk (about 15 GB by the end of the suite)."""
    made = []

    def mktemp(name: str) -> Path:
        made.append(tmp_path_factory.mktemp(name))
        return made[-1]

    yield mktemp
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(spec, net, model_dir): VGG11 with seeded random weights at 64 px, exported once."""
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    spec, net = build("vgg11", "random", input_size=TINY_SIZE)
    model_dir = export_model(spec, net, tmp_path_factory.mktemp("tiny") / "model")
    return spec, net, model_dir


@pytest.fixture(scope="session")
def vgg16_model(tmp_path_factory):
    """(spec, net, model_dir): the shared VGG16 trunk at the default input size, exported once."""
    from retrieval.engines.export import export_model
    from retrieval.nets.builder import build

    spec, net = build("vgg16", str(VGG16_WEIGHTS))
    model_dir = export_model(spec, net, tmp_path_factory.mktemp("vgg16") / "model")
    return spec, net, model_dir


# --- PostgreSQL: the storage tests run on SQLite and on a real PostgreSQL server -------------------------
ENV_PG_URL = "VGG_RETRIEVAL_TEST_PG_URL"  # a server's URL (.ci/run starts one and sets this)
ENV_REQUIRE_PG = "VGG_RETRIEVAL_REQUIRE_PG"  # 1: no server is a failure, not a skip (CI)
BOTH_DATABASES = {"test_index", "test_reliability", "test_watch"}  # make_index runs on both


def pytest_generate_tests(metafunc):
    if "index_db" in metafunc.fixturenames and metafunc.module.__name__ in BOTH_DATABASES:
        metafunc.parametrize("index_db", ["sqlite", "postgresql"], indirect=True)


_PG_FAILED: list[str] = []


def _no_postgres(reason: str):
    if os.environ.get(ENV_REQUIRE_PG) == "1":
        pytest.fail(f"PostgreSQL is required ({ENV_REQUIRE_PG}=1) but {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason}")


@pytest.fixture(scope="session")
def pg_server():
    """URL of a PostgreSQL server for tests: $VGG_RETRIEVAL_TEST_PG_URL, else a throwaway one started
    with .ci/postgres.sh when this machine has the server binaries (else skipped, or failed in CI)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_postgres("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    url = os.environ.get(ENV_PG_URL)
    if url:
        yield url
        return
    if _PG_FAILED:  # tried once this session already
        _no_postgres(_PG_FAILED[0])
    folder = Path(tempfile.mkdtemp(prefix="vgg-pg-")) / "cluster"
    os.chmod(folder.parent, 0o755)  # the cluster's owner (postgres, when we are root) must reach it
    script = ROOT / ".ci" / "postgres.sh"
    r = subprocess.run(["bash", str(script), "start", str(folder)], capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(folder.parent, ignore_errors=True)
        _PG_FAILED.append(
            f"{script.name} could not start a server: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
        )
        _no_postgres(_PG_FAILED[0])
    try:
        yield r.stdout.strip()
    finally:
        subprocess.run(["bash", str(script), "stop", str(folder)], capture_output=True)
        shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server, monkeypatch):
    """new_database() -> URL of a new, empty PostgreSQL database (dropped after the test). The URLs
    hold no password: it is in PGPASSWORD, as a user would keep it (index folders never store it)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    server = make_url(pg_server).set(drivername="postgresql+psycopg")
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    if server.password:
        monkeypatch.setenv("PGPASSWORD", server.password)
    server = server._replace(password=None)
    made = []

    def new_database() -> str:
        name = f"t{os.getpid()}_{len(made)}_{os.urandom(3).hex()}"
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return server.set(database=name).render_as_string(hide_password=False)

    yield new_database
    with admin.connect() as c:
        for name in made:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def index_db(request):
    """Which metadata database make_index uses: "sqlite" (the default) or "postgresql"
    (parametrised for the modules in BOTH_DATABASES)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def make_index(tiny_model, index_db, request):
    """make_index(dir, **options) -> a new Index over the tiny model (no re-export); on the
    "postgresql" run each one gets a new PostgreSQL database (remembered by its folder)."""
    from indexer import Index

    spec, net, model_dir = tiny_model
    opened = []
    new_database = request.getfixturevalue("pg_database") if index_db == "postgresql" else None
    made: dict = {}

    def make(directory, **options):
        if new_database is not None and "db_url" not in options:
            key = str(directory)
            if key not in made:  # the same folder again: the same database
                made[key] = new_database()
            options["db_url"] = made[key]
        idx = Index.create(directory, spec, model_dir=model_dir, **options)
        opened.append(idx)
        return idx

    yield make
    for idx in opened:
        idx.close()


def copy_photos(dest: Path, names, flat: bool = False) -> list[Path]:
    out = []
    for name in names:
        src = SAMPLES / name
        target = dest / (src.name if flat else name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        out.append(target)
    return out


@pytest.fixture
def photos(tmp_path):
    """A small folder of real photos in two sub-folders, safe to modify."""
    folder = tmp_path / "photos"
    copy_photos(
        folder,
        [
            "skimage/astronaut.png",
            "skimage/coffee.png",
            "skimage/chelsea.png",
            "pixabay/cat01.jpg",
            "pixabay/dog01.jpg",
            "sklearn/china.jpg",
        ],
    )
    return folder


@pytest.fixture(autouse=True)
def _restore_sigchld():
    """A torch DataLoader with worker processes installs a process-wide SIGCHLD handler and never
    removes it. Left in the pytest process, it crashed the interpreter (SIGSEGV in the eval loop,
    seen in a core dump) when a later test's unrelated subprocess exited. Each test starts and ends
    with the handler it found."""
    import signal

    before = signal.getsignal(signal.SIGCHLD)
    yield
    if signal.getsignal(signal.SIGCHLD) is not before:
        signal.signal(signal.SIGCHLD, before)


# --- shared helpers that tests in several folders use ---------------------------------------------
FLOWERS = DATA / "photos" / "flowers5"
WIDTHS = (8, 16, 16, 16, 32, 32, 32, 32)  # a tiny vgg11


def tiny_net(classes, size=32, head="gap-linear", seed=0):
    """(spec, net) of a tiny random VGG11 with a classifier head over ``classes`` (needs torch)."""
    import torch

    from retrieval.nets.model import build_descriptor_net
    from retrieval.spec import ModelSpec

    spec = ModelSpec(
        arch="vgg11",
        input_size=size,
        weights="random",
        widths=WIDTHS,
        descriptor_dim=WIDTHS[-1],
        head=head,
        class_names=tuple(classes),
    )
    torch.manual_seed(seed)
    return spec, build_descriptor_net(spec, None)


def png_bomb(width=30000, height=30000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def keystoned(im):
    """``im`` with its corners pulled in, as a projective map (a photo of a print, a keystone fix)."""
    import numpy as np
    from PIL import Image

    w, h = im.size
    outs = [(0, 0), (0, h), (w, h), (w, 0)]
    ins = [(-0.08 * w, -0.06 * h), (0.04 * w, 1.08 * h), (1.06 * w, 1.02 * h), (1.08 * w, -0.04 * h)]
    rows, rhs = [], []
    for (x, y), (u, v) in zip(outs, ins):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    coeffs = np.linalg.solve(np.array(rows, float), np.array(rhs, float))
    return im.transform((w, h), Image.PERSPECTIVE, tuple(coeffs), Image.BICUBIC, fillcolor=(255, 255, 255))
