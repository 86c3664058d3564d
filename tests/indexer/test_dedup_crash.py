"""SIGKILL at each step of ``dedup apply`` and ``dedup undo`` (indexer.faults.APPLY_POINTS and
UNDO_POINTS): after the next run (``index``), every file is in exactly one place with its bytes, the
index names only files that exist and checks out; then ``dedup undo`` brings everything back.

The kills run the real CLI in a subprocess; the next runs are the CLI in-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_undo_log import library

from indexer import Index
from indexer.cli import main
from indexer.dedup import find_duplicates
from indexer.dedup.apply import apply_report
from indexer.faults import APPLY_POINTS, ENV, UNDO_POINTS
from indexer.storage.store import ImageRow

ROOT = Path(__file__).resolve().parents[1]
COPIES = ("astronaut.png", "dog01.jpg")


def cli(*args, point=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1"}
    env.pop(ENV, None)
    if point:
        env[ENV] = point
    return subprocess.run(
        [sys.executable, "-m", "indexer", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture
def setup(tmp_path, make_index):
    lib, idx = library(tmp_path, make_index)
    idx.close()
    with Index.open(tmp_path / "index") as opened:
        find_duplicates(opened, near=False).save_json(tmp_path / "report.json")
    originals = {name: (lib / "copies" / name).read_bytes() for name in COPIES}
    return tmp_path, lib, originals


def indexed_paths(ix) -> set[str]:
    with Index.open(ix) as idx:
        assert idx.check().ok
        with idx.store.session() as s:
            return {r.path for r in s.query(ImageRow)}


def consistent(tmp, lib, originals) -> set[str]:
    """Each copy in exactly one place (original path or quarantine) with its bytes; the index names
    every file of the library and nothing else (``check`` passes); the copies in the quarantine."""
    q = tmp / "q" / "copies"
    quarantined = set()
    for name, data in originals.items():
        here, there = lib / "copies" / name, q / name
        assert here.exists() != there.exists(), name
        assert (here if here.exists() else there).read_bytes() == data
        if there.exists():
            quarantined.add(name)
    on_disk = {str(p) for p in lib.rglob("*") if p.is_file()}
    assert indexed_paths(tmp / "index") == on_disk
    assert not (tmp / "index" / "dedup.journal").exists()
    assert not list(q.glob("*.partial")) if q.exists() else True
    return quarantined


def index_again(tmp, capsys):
    capsys.readouterr()
    assert main(["index", "--index", str(tmp / "index"), "--workers", "0", "-q"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("point", APPLY_POINTS)
def test_sigkill_at_each_step_of_apply_is_recoverable(setup, capsys, point):
    tmp, lib, originals = setup
    log = tmp / "undo.json"
    r = cli("dedup", "apply", tmp / "report.json", "--move-to", tmp / "q", "--log", log, "--yes", point=point)
    assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-800:])
    journal = (tmp / "index" / "dedup.journal").exists()
    assert journal == (point not in ("apply_locked",)), point
    out = index_again(tmp, capsys)
    assert ("finished an interrupted dedup apply" in out) == journal, out
    moved = consistent(tmp, lib, originals)
    expected = {"apply_locked": 0, "apply_journal_written": 0, "apply_half_moved": 1, "apply_moved_one": 1}
    assert len(moved) == expected.get(point, 2), (point, moved)
    if "removed" in out and moved:  # the index forgot them in the recovery, not as vanished files
        assert ", 0 removed" in out, out
    if not log.exists():
        return
    assert main(["dedup", "undo", str(log), "--yes"]) == 0, capsys.readouterr().err
    assert consistent(tmp, lib, originals) == set()


@pytest.mark.parametrize("point", UNDO_POINTS)
def test_sigkill_at_each_step_of_undo_is_recoverable(setup, capsys, point):
    tmp, lib, originals = setup
    log = tmp / "undo.json"
    from indexer.dedup import DedupReport

    apply_report(
        DedupReport.load(tmp / "report.json"), tmp / "q", execute=True, log=log, echo=lambda *_: None
    )
    assert consistent(tmp, lib, originals) == set(COPIES)
    r = cli("dedup", "undo", log, "--yes", point=point)
    assert r.returncode == -signal.SIGKILL, (point, r.returncode, r.stderr[-800:])
    out = index_again(tmp, capsys)
    assert ("an interrupted dedup undo" in out) == (point != "undo_locked"), out
    back = set(COPIES) - consistent(tmp, lib, originals)  # the restored files are indexed again
    expected = {"undo_locked": 0, "undo_journal_written": 0, "undo_half_moved": 1, "undo_moved_one": 1}
    assert len(back) == expected.get(point, 2), (point, back)
    assert main(["dedup", "undo", str(log), "--yes"]) == 0, capsys.readouterr().err
    assert consistent(tmp, lib, originals) == set()
